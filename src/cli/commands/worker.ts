/**
 * The CLI's queue side: the `partscan worker` command, and `fit --queue` (score --queue is a branch of
 * the score command, which writes its run like a local score). The queue modules (BullMQ, ioredis)
 * are imported when a queue command runs, so other commands do not load them.
 */

import path from 'node:path';
import type { Command } from 'commander';
import { PartscanError } from '../../errors.js';
import { EXIT_OK } from '../exit-codes.js';
import { toJson, type CliIo } from '../format.js';
import { expandImageArgs } from '../inputs.js';
import { intArg, type FitFlags } from '../options.js';
import { createProgress } from '../progress.js';

interface WorkerFlags {
  redis: string;
  queue?: string;
  concurrency?: number;
  maxBatch?: number;
  threads?: number;
  modelCacheMb?: number;
  lockMs?: number;
  allowRoot?: string[];
  verbose?: boolean;
  json?: boolean;
}

/**
 * Runs a worker until SIGTERM or SIGINT: the first signal stops taking jobs and lets the ones in
 * progress finish (their exports and records complete), a second abandons them to other workers
 * (their locks expire; nothing half-written remains, every file is written by rename).
 */
async function workerCommand(f: WorkerFlags, io: CliIo): Promise<number> {
  const t0 = performance.now();
  let jobs = 0;
  let failed = 0;
  const { startWorker } = await import('../../queue/index.js');
  const w = await startWorker({
    redis: f.redis,
    ...(f.queue !== undefined ? { queue: f.queue } : {}),
    ...(f.concurrency !== undefined ? { concurrency: f.concurrency } : {}),
    ...(f.maxBatch !== undefined ? { maxBatch: f.maxBatch } : {}),
    ...(f.threads !== undefined ? { threads: f.threads } : {}),
    ...(f.modelCacheMb !== undefined ? { modelCacheBytes: f.modelCacheMb * 1024 * 1024 } : {}),
    ...(f.lockMs !== undefined ? { lockDuration: f.lockMs } : {}),
    ...(f.allowRoot?.length ? { allowedRoots: f.allowRoot } : {}),
    onJob: (e) => {
      jobs++;
      if (!e.ok) failed++;
      if (f.verbose) io.err(`${e.ok ? 'done' : 'FAILED'} ${e.name} ${e.id} ${e.ms.toFixed(0)} ms${e.error ? `: ${e.error}` : ''}\n`);
    },
  });
  if (f.verbose) w.worker.on('active', (job) => io.err(`start ${job.name} ${job.id}\n`));
  io.err(`partscan worker ${process.pid} on queue "${f.queue ?? 'partscan'}" — SIGTERM finishes the jobs in progress and exits\n`);
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        io.err(`partscan worker: ${sig}: finishing the jobs in progress\n`);
        void w.close(false).then(resolve, resolve);
      } else {
        io.err(`partscan worker: ${sig} again: leaving the jobs in progress to other workers\n`);
        void w.close(true).then(resolve, resolve);
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // An abandoned close may leave BullMQ timers behind: they must not keep the process alive.
  setTimeout(() => process.exit(), 2000).unref();
  const summary = { jobs, failed, batches: w.batches(), seconds: (performance.now() - t0) / 1000 };
  io.out(f.json ? toJson(summary) + '\n' : `${jobs} jobs (${failed} failed, ${summary.batches} score batches) in ${summary.seconds.toFixed(0)} s\n`);
  return EXIT_OK;
}

/** Registers `partscan worker` on the program. */
export function registerWorkerCommand(program: Command, io: CliIo, run: (fn: (f: WorkerFlags) => Promise<number>) => (...a: unknown[]) => Promise<void>): void {
  program
    .command('worker')
    .description('take score and fit jobs from a Redis queue (BullMQ) until SIGTERM')
    .requiredOption('--redis <url>', 'Redis URL, e.g. redis://127.0.0.1:6379')
    .option('--queue <name>', 'queue name (default partscan)')
    .option('--concurrency <n>', 'jobs in progress at once; batches form from them (default 16)', intArg('--concurrency', 1))
    .option('--max-batch <n>', 'most images per backbone batch (default: the model\'s)', intArg('--max-batch', 1))
    .option('--threads <n>', 'ONNX Runtime threads per model', intArg('--threads', 1))
    .option('--model-cache-mb <n>', 'memory budget of loaded models (default 4096)', intArg('--model-cache-mb', 1))
    .option('--lock-ms <n>', 'job lock; a dead worker\'s jobs move on after about this long (default 30000)', intArg('--lock-ms', 1000))
    .option('--allow-root <dir...>', 'only serve jobs whose paths lie inside these folders (default: any path)')
    .option('--verbose', 'a line per job on stderr when it starts and when it ends')
    .option('--json', 'print one JSON object (jobs done) on exit')
    .action(run((f: WorkerFlags) => workerCommand(f, io)));
}

/** The fit flags `fit --queue` understands (the rest of FitFlags have no meaning on a worker). */
export type QueueFitFlags = Pick<
  FitFlags,
  | 'out' | 'queue' | 'queueName' | 'backbone' | 'layers' | 'weights' | 'channels' | 'imageSize' | 'seed' | 'calibrationSplit'
  | 'calibration' | 'batchSize' | 'roi' | 'band' | 'tile' | 'tileOverlap' | 'embedBackbone' | 'compact' | 'defects' | 'resume' | 'json'
>;

/** `partscan fit <data> --out m --queue redis://…`: the fit runs on a worker; paths must be shared. */
export async function fitQueueCommand(data: string[], f: QueueFitFlags, io: CliIo): Promise<number> {
  for (const flag of ['defects', 'resume'] as const) {
    if (f[flag] !== undefined) {
      throw new PartscanError('OPTIONS', `--${flag} is not supported with --queue.`, { remedy: `fit locally for --${flag}, or drop it` });
    }
  }
  const abs = (p: string) => path.resolve(p);
  const options = {
    ...(f.backbone !== undefined ? { backbone: /\.onnx$/i.test(f.backbone) ? abs(f.backbone) : f.backbone } : {}),
    ...(f.layers ? { layers: f.layers } : {}),
    ...(f.weights ? { weights: abs(f.weights) } : {}),
    ...(f.channels !== undefined ? { channels: f.channels } : {}),
    ...(f.imageSize !== undefined ? { imageSize: f.imageSize } : {}),
    ...(f.seed !== undefined ? { seed: f.seed } : {}),
    ...(f.calibrationSplit !== undefined ? { calibrationSplit: f.calibrationSplit } : {}),
    ...(f.calibration ? { calibration: abs(f.calibration) } : {}),
    ...(f.batchSize !== undefined ? { batchSize: f.batchSize } : {}),
    ...(f.roi ? { roi: abs(f.roi) } : {}),
    ...(f.band ? { band: f.band } : {}),
    ...(f.tile !== undefined ? { tile: { size: f.tile, overlap: f.tileOverlap ?? Math.round(f.tile / 8) } } : {}),
    embedBackbone: f.embedBackbone,
    ...(f.compact ? { compact: true } : {}),
  };
  const t0 = performance.now();
  const { fitOnQueue } = await import('../../queue/index.js');
  const progress = createProgress();
  let r;
  try {
    // As a local fit: one argument is a data set root, folder or list file; several are images / globs.
    const source = data.length === 1 && !/[*?[{]/.test(data[0]!) ? data[0]! : await expandImageArgs(data);
    r = await fitOnQueue(source, f.out, {
      redis: f.queue!,
      ...(f.queueName ? { queue: f.queueName } : {}),
      options,
      onProgress: progress.onProgress,
      onState: (s) => {
        progress.stop();
        io.err(s === 'waiting' ? 'fit job enqueued, waiting for a worker\n' : 'fit job running on a worker\n');
      },
    });
  } finally {
    progress.stop();
  }
  const summary = { ...r, seconds: (performance.now() - t0) / 1000, workerSeconds: r.seconds };
  io.out(f.json ? toJson(summary) + '\n' : `model      ${r.model}\nimages     ${r.images} fitted, ${r.calibrationImages} for calibration\nworker     ${r.worker}\ntime       ${summary.seconds.toFixed(1)} s\n`);
  for (const w of r.warnings) io.err(`warning: ${w}\n`);
  return EXIT_OK;
}
