/**
 * The queue's public entry points. They load BullMQ and ioredis on first call, so importing partscan
 * does not (they take a noticeable share of start-up for programs that never use a queue), and a site
 * without them (they are optional peer dependencies) gets a typed 'QUEUE' error naming
 * `npm install bullmq ioredis` only when it uses a queue.
 */

import type * as Producer from './producer.js';
import type * as Worker from './worker.js';
import { loadQueueModule } from './load.js';

export type { QueueConnectionOptions, QueueFitOptions, QueueScoreOptions } from './producer.js';
export type { PartscanWorker, QueueWorkerHandle, WorkerOptions } from './worker.js';
export type { FitJobData, FitJobResult, ScoreJobData, ScoreJobRecord } from './jobs.js';

/**
 * Scores images on queue workers into a run directory, exactly as a local score writes it.
 * See docs/WORKERS.md.
 *
 * @example
 * const manifest = await scoreOnQueue('/shared/bottle.partscan', files, '/shared/runs/0042', {
 *   redis: 'redis://broker:6379',
 * });
 * console.log(manifest.results.length, manifest.failures);
 */
export async function scoreOnQueue(...args: Parameters<typeof Producer.scoreOnQueue>): ReturnType<typeof Producer.scoreOnQueue> {
  return (await loadQueueModule(() => import('./producer.js'))).scoreOnQueue(...args);
}

/**
 * Fits a model on a queue worker; resolves once the model file is written. Fit jobs: docs/WORKERS.md.
 *
 * @example
 * const r = await fitOnQueue('/shared/bottle', '/shared/models/bottle.partscan', {
 *   redis: 'redis://broker:6379', options: { channels: 100 },
 * });
 * console.log(r.sha256);
 */
export async function fitOnQueue(...args: Parameters<typeof Producer.fitOnQueue>): ReturnType<typeof Producer.fitOnQueue> {
  return (await loadQueueModule(() => import('./producer.js'))).fitOnQueue(...args);
}

/**
 * Starts a worker taking score and fit jobs from the queue. Options and guarantees: docs/WORKERS.md.
 *
 * @example
 * const w = await startWorker({ redis: 'redis://127.0.0.1:6379', concurrency: 16 });
 * process.once('SIGTERM', () => void w.close()); // finishes the jobs in progress
 */
export async function startWorker(...args: Parameters<typeof Worker.startWorker>): ReturnType<typeof Worker.startWorker> {
  return (await loadQueueModule(() => import('./worker.js'))).startWorker(...args);
}
