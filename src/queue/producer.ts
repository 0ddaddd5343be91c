/**
 * The producer side of the queue: {@link scoreOnQueue} enqueues one score job per image and collects
 * the results into the same run directory a local `score` writes; {@link fitOnQueue} enqueues a fit.
 *
 * Results come back through the run directory, not through Redis: each worker writes one record per
 * job (atomically, named by the job id) next to the exports, so a job done twice leaves one record,
 * and a Redis restart loses nothing the producer needs. The producer only polls that folder, plus the
 * queue's failed set for jobs that ran out of attempts. Jobs have fixed ids (run id + input index), so
 * enqueuing again is a no-op for jobs that exist: after a long stall (e.g. Redis came back without its
 * data) the outstanding jobs are simply added again.
 */

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Job, Queue, type JobsOptions } from 'bullmq';
import { PartscanError } from '../errors.js';
import type { ImageResult } from '../export/results.js';
import { uniqueStems, writeScoredRun, type RunExports, type ScoreRunFailure, type ScoredRunManifest } from '../export/score-run.js';
import { Model, type ProgressEvent } from '../model/model.js';
import { ensureOutputDir } from '../util/atomic-write.js';
import {
  DEFAULT_QUEUE_NAME,
  JOB_FIT,
  JOB_SCORE,
  RECORDS_DIR,
  fitJobSchema,
  scoreJobSchema,
  type FitJobData,
  type FitJobResult,
  type ScoreJobData,
  type ScoreJobRecord,
} from './jobs.js';
import { cachedFileSha256 } from './model-cache.js';
import { readRecord, recordKey } from './records.js';
import { checkRedisUrl, connectRedis, waitForRedis } from './redis.js';
import { parseOptions } from '../options/parse.js';
import { queueFitOptionsSchema, queueScoreOptionsSchema } from '../options/schemas.js';

/** Options shared by the producer functions. */
export interface QueueConnectionOptions {
  /** Redis URL, e.g. redis://127.0.0.1:6379. */
  redis: string;
  /** Queue name (default 'partscan'). */
  queue?: string;
  /** Attempts per job before it counts as failed (default 3; image errors are never retried). */
  attempts?: number;
  /** Give up (typed 'QUEUE' error) when no job finished for this long, in ms (default: wait for ever). */
  idleTimeoutMs?: number;
}

/** Options of {@link scoreOnQueue}. */
export interface QueueScoreOptions extends QueueConnectionOptions {
  /** The loaded model, for the manifest (thresholds, backbone); loaded from `modelFile` when absent. */
  model?: Model;
  /** Minimum region area in pixels at model resolution. */
  minArea?: number;
  /** Which files to write per image (default: all, as a local score). */
  exports?: RunExports;
  /** Longest side of exported images. */
  maxSide?: number;
  /** Model path recorded in the manifest (default: `modelFile` as given). */
  modelPath?: string;
  /** Progress: one 'score' unit per finished job. */
  onProgress?: (e: ProgressEvent) => void;
}

const POLL_MS = 200;
const FAILED_CHECK_MS = 2000;
/** Without progress for this long, the run's outstanding jobs are looked up one by one. */
const IDLE_CHECK_MS = 10_000;
/** Without progress for this long, outstanding jobs are added again (a no-op for jobs Redis still has). */
const REENQUEUE_AFTER_MS = 30_000;

/**
 * Scores `inputs` (image paths on storage the workers share) on queue workers and writes the run into
 * `outDir` exactly as `scoreToRunDir` does: exports per image (written by the workers), then
 * `results.csv` and `results.json` through the same run writer. An image that cannot be scored ends
 * in `failures`; it never blocks the run. `outDir` must be on the shared storage too.
 *
 * @example
 * const manifest = await scoreOnQueue('/shared/bottle.partscan', files, '/shared/runs/0042', {
 *   redis: 'redis://broker:6379',
 * });
 * console.log(manifest.results.length, manifest.failures);
 */
export async function scoreOnQueue(
  modelFile: string,
  inputs: string[],
  outDir: string,
  opts: QueueScoreOptions,
): Promise<ScoredRunManifest> {
  // Everything the caller gave is checked before Redis is contacted or a folder created.
  parseOptions(queueScoreOptionsSchema, { modelFile, inputs, outDir, ...opts }, 'scoreOnQueue');
  checkRedisUrl(opts.redis);
  const modelAbs = path.resolve(modelFile);
  const dir = path.resolve(outDir);
  const runId = randomBytes(6).toString('hex');
  // Kept here: each job gets only its own key, derived from it, to sign its result record.
  const runSecret = randomBytes(32);
  const keys = inputs.map((_, i) => recordKey(runSecret, `${runId}.${i}`));
  const stems = uniqueStems(inputs);
  const payload = (i: number, sha256: string): ScoreJobData => ({
    model: { path: modelAbs, sha256 },
    image: { path: path.resolve(inputs[i]!) },
    file: inputs[i]!,
    options: opts.minArea !== undefined ? { minArea: opts.minArea } : {},
    run: { dir, stem: stems[i]!, exports: opts.exports ?? {}, ...(opts.maxSide !== undefined ? { maxSide: opts.maxSide } : {}), recordKey: keys[i]! },
  });
  if (inputs.length) parseOptions(scoreJobSchema, payload(0, '0'.repeat(64)), 'scoreOnQueue');
  await ensureOutputDir(outDir);
  const sha256 = await cachedFileSha256(modelAbs);
  const records = path.join(dir, RECORDS_DIR);
  await fs.mkdir(records, { recursive: true });
  const jobs = inputs.map((_, i) => ({ name: JOB_SCORE, data: payload(i, sha256), opts: jobOptions(`${runId}.${i}`, opts.attempts) }));
  const connection = connectRedis(opts.redis);
  const queue = new Queue(opts.queue ?? DEFAULT_QUEUE_NAME, { connection: connection as never });
  queue.on('error', () => undefined);
  const ownModel = opts.model === undefined;
  let model = opts.model;
  try {
    await waitForRedis(connection, opts.redis);
    for (let i = 0; i < jobs.length; i += 500) await queue.addBulk(jobs.slice(i, i + 500));
    const done = new Map<number, ScoreJobRecord>();
    const failed = new Map<number, ScoreRunFailure>();
    const progress = () => opts.onProgress?.({ stage: 'score', done: done.size + failed.size, total: inputs.length });
    progress();
    let lastProgress = Date.now();
    let lastFailedCheck = 0;
    let lastIdleCheck = 0;
    let lastReenqueue = 0;
    const outstanding = () => jobs.map((_, i) => i).filter((i) => !done.has(i) && !failed.has(i));
    const noteFailed = (job: Job | undefined) => {
      const i = job?.id ? indexOf(job.id, runId, '') : undefined;
      if (i === undefined || done.has(i) || failed.has(i)) return;
      // Out of attempts (retries exhausted, or its worker kept dying on it).
      if (job!.finishedOn !== undefined && job!.failedReason !== undefined) failed.set(i, failureFromReason(inputs[i]!, job!.failedReason));
    };
    while (done.size + failed.size < inputs.length) {
      const before = done.size + failed.size;
      for (const name of await fs.readdir(records)) {
        const i = indexOf(name, runId, '.json');
        if (i === undefined) continue;
        const file = path.join(records, name);
        if (!done.has(i) && !failed.has(i)) {
          // A record that is garbled, forged or another job's fails this image only.
          const rec = await readRecord(file, `${runId}.${i}`, keys[i]!).catch((e: PartscanError) => ({ failure: { file: '', code: e.code, message: e.message } }) as ScoreJobRecord);
          if (rec.failure) failed.set(i, { ...rec.failure, file: inputs[i]! });
          else done.set(i, rec);
        }
        // Read records go, so the folder lists only new ones (a job redone later writes its record
        // again; it is skipped, then removed).
        await fs.rm(file, { force: true });
      }
      const now = Date.now();
      if (now - lastFailedCheck > FAILED_CHECK_MS) {
        lastFailedCheck = now;
        for (const job of await queue.getFailed(0, 999)) noteFailed(job);
      }
      const idle = now - lastProgress;
      if (idle > IDLE_CHECK_MS && now - lastIdleCheck > IDLE_CHECK_MS) {
        // Nothing moved for a while: ask for this run's outstanding jobs one by one (the failed-set
        // scan above sees only the newest failures of the whole queue).
        lastIdleCheck = now;
        for (const i of outstanding().slice(0, 2000)) noteFailed(await Job.fromId(queue, `${runId}.${i}`));
      }
      if (done.size + failed.size > before) {
        lastProgress = Date.now();
        progress();
        continue;
      }
      if (opts.idleTimeoutMs !== undefined && idle > opts.idleTimeoutMs) {
        throw new PartscanError('QUEUE', `No queue job finished for ${Math.round(idle / 1000)} s (${done.size + failed.size}/${inputs.length} done).`, {
          remedy: 'start workers on this queue (partscan worker --redis …), and check they can read the model, images and run directory',
        });
      }
      if (idle > REENQUEUE_AFTER_MS && now - lastReenqueue > REENQUEUE_AFTER_MS) {
        lastReenqueue = now;
        const missing = outstanding().map((i) => jobs[i]!);
        for (let k = 0; k < missing.length; k += 500) await queue.addBulk(missing.slice(k, k + 500));
      }
      await sleep(POLL_MS);
    }
    model ??= await Model.load(modelAbs);
    const results: ImageResult[] = [];
    const inputIndices: number[] = [];
    for (let i = 0; i < inputs.length; i++) {
      const r = done.get(i)?.result;
      if (r) {
        results.push(r);
        inputIndices.push(i);
      }
    }
    const failures = [...failed.entries()].sort((a, b) => a[0] - b[0]).map(([, f]) => f);
    // Line monitoring sees the images in input order, whichever worker scored which.
    const manifest = await writeScoredRun(model, results, dir, { failures, inputIndices, modelPath: opts.modelPath ?? modelFile });
    await fs.rm(records, { recursive: true, force: true });
    return manifest;
  } catch (e) {
    // The run is abandoned: take its jobs off the queue (best effort: Redis may be what failed) and
    // leave no records behind.
    const removal = Promise.all(jobs.map((j) => queue.remove(j.opts.jobId!).catch(() => 0)));
    await Promise.race([removal, sleep(5000)]);
    await fs.rm(records, { recursive: true, force: true });
    throw e;
  } finally {
    if (ownModel) await model?.dispose();
    await queue.close().catch(() => undefined);
    await connection.quit().catch(() => connection.disconnect());
  }
}

/** Options of {@link fitOnQueue}. */
export interface QueueFitOptions extends QueueConnectionOptions {
  /** Fit options (those a worker accepts: backbone by name or file, channels, image size...). */
  options?: FitJobData['options'];
  /** Called once the job is enqueued, then when it starts on a worker. */
  onState?: (state: 'waiting' | 'active') => void;
  /** The fit's progress on the worker (fit, invert, calibrate stages). */
  onProgress?: (e: ProgressEvent) => void;
}

/**
 * Fits a model on a queue worker: `data` (data set root, folder, list file, or image files) and `out`
 * must be on storage the workers share. Resolves with the worker's summary once the model file is
 * written; a failed fit gives a typed 'QUEUE' error with the worker's message.
 *
 * @example
 * const r = await fitOnQueue('/shared/bottle', '/shared/models/bottle.partscan', {
 *   redis: 'redis://broker:6379', options: { channels: 100 },
 * });
 */
export async function fitOnQueue(data: string | string[], out: string, opts: QueueFitOptions): Promise<FitJobResult> {
  // Checked as a worker would check the job, before Redis is contacted.
  parseOptions(queueFitOptionsSchema, { data, out, ...opts }, 'fitOnQueue');
  checkRedisUrl(opts.redis);
  const payload: FitJobData = {
    data: Array.isArray(data) ? data.map((f) => path.resolve(f)) : path.resolve(data),
    out: path.resolve(out),
    options: opts.options ?? {},
  };
  parseOptions(fitJobSchema, payload, 'fitOnQueue');
  const connection = connectRedis(opts.redis);
  const queue = new Queue(opts.queue ?? DEFAULT_QUEUE_NAME, { connection: connection as never });
  queue.on('error', () => undefined);
  try {
    await waitForRedis(connection, opts.redis);
    const id = `fit.${randomBytes(6).toString('hex')}`;
    await queue.add(JOB_FIT, payload, { ...jobOptions(id, opts.attempts ?? 1), removeOnComplete: false });
    opts.onState?.('waiting');
    let announced = false;
    const t0 = Date.now();
    for (;;) {
      const job = await Job.fromId(queue, id);
      if (!job) {
        // Redis lost it (restarted without persistence): add it again.
        await queue.add(JOB_FIT, payload, { ...jobOptions(id, opts.attempts ?? 1), removeOnComplete: false });
      } else if (job.finishedOn !== undefined && job.failedReason === undefined) {
        const r = job.returnvalue as FitJobResult;
        await job.remove().catch(() => undefined);
        return r;
      } else if (job.finishedOn !== undefined) {
        const f = failureFromReason(payload.out as string, job.failedReason);
        throw new PartscanError(f.code === 'UNEXPECTED' ? 'QUEUE' : (f.code as 'QUEUE'), `Fit job ${id} failed on a worker: ${f.message}`, {
          remedy: 'fix the cause named above (data path, options) and enqueue the fit again',
        });
      } else if (job.processedOn !== undefined) {
        if (!announced) opts.onState?.('active');
        announced = true;
        const p = job.progress as Partial<ProgressEvent> | number;
        if (typeof p === 'object' && p && typeof p.done === 'number' && typeof p.total === 'number' && typeof p.stage === 'string') {
          opts.onProgress?.({ stage: p.stage, done: p.done, total: p.total });
        }
      }
      if (opts.idleTimeoutMs !== undefined && !announced && Date.now() - t0 > opts.idleTimeoutMs) {
        throw new PartscanError('QUEUE', `No worker took fit job ${id} within ${Math.round(opts.idleTimeoutMs / 1000)} s.`, {
          remedy: 'start a worker on this queue: partscan worker --redis …',
        });
      }
      await sleep(500);
    }
  } finally {
    await queue.close().catch(() => undefined);
    await connection.quit().catch(() => connection.disconnect());
  }
}

function jobOptions(jobId: string, attempts = 3): JobsOptions {
  return {
    jobId,
    attempts,
    backoff: { type: 'exponential', delay: 1000 },
    // Results travel through the run directory; finished jobs need not stay in Redis.
    removeOnComplete: true,
    removeOnFail: { age: 24 * 3600 },
  };
}

/** The input index of a record file or job id of this run, or undefined for anything else. */
function indexOf(name: string, runId: string, suffix: string): number | undefined {
  if (!name.startsWith(`${runId}.`) || !name.endsWith(suffix)) return undefined;
  const n = name.slice(runId.length + 1, name.length - suffix.length);
  return /^\d{1,9}$/.test(n) ? Number(n) : undefined;
}

/** A worker's error message ("IMAGE_DECODE: …" for typed errors) as a manifest failure. */
function failureFromReason(file: string, reason: string | undefined): ScoreRunFailure {
  const m = /^([A-Z_]{3,40}): ([\s\S]*)$/.exec(reason ?? '');
  return m ? { file, code: m[1]!, message: m[2]! } : { file, code: 'UNEXPECTED', message: reason ?? 'failed on a worker' };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
