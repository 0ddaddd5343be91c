/**
 * `partscan worker`: takes score and fit jobs from a BullMQ queue on Redis.
 *
 * Delivery is at least once: a job whose worker dies (SIGKILL, power loss) is found stalled when its
 * lock expires and is handed to another worker. Everything a job writes is therefore idempotent —
 * exports and the result record are written atomically (temp file + rename) under names fixed by the
 * job, so a job done twice leaves the same single set of files. Image errors (undecodable, too large)
 * are properties of the input: they are recorded as the job's failure at once, never retried.
 */

import os from 'node:os';
import path from 'node:path';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { BackboneSpec } from '../backbone/registry.js';
import { PartscanError } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { exportScoredImage, failureOf, isImageError } from '../export/score-run.js';
import { fit } from '../model/fit.js';
import type { ScoreInput } from '../model/model.js';
import type { FitOptions } from '../model/fit-options.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { isOnnxPath } from '../backbone/registry.js';
import {
  DEFAULT_QUEUE_NAME,
  JOB_FIT,
  JOB_ID_PATTERN,
  JOB_SCORE,
  RECORDS_DIR,
  fitJobSchema,
  parseJob,
  scoreJobSchema,
  type FitJobResult,
  type ScoreJobRecord,
} from './jobs.js';
import { realRoots, resolveJobPaths } from './job-paths.js';
import { signRecord } from './records.js';
import { DEFAULT_MODEL_CACHE_BYTES, ModelCache, fileSha256 } from './model-cache.js';
import { connectRedis, waitForRedis } from './redis.js';

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  /** Redis URL, e.g. redis://127.0.0.1:6379. */
  redis: string;
  /** Queue name (default 'partscan'). */
  queue?: string;
  /** Jobs in progress at once (default 16): the jobs a batch can form from. */
  concurrency?: number;
  /** Most images per backbone batch (default: the model's default). */
  maxBatch?: number;
  /** Memory budget of the loaded models in bytes (default 4 GiB). */
  modelCacheBytes?: number;
  /** ONNX Runtime intra-op threads per model. */
  threads?: number;
  /**
   * Milliseconds a job's lock lasts without renewal (default 30 000): after a worker dies its jobs go
   * to another worker within about this time.
   */
  lockDuration?: number;
  /**
   * Folders jobs may name (default: any). When given, every path in a job — model, image, run
   * directory, fit data and output — must lie inside one of them, or the job fails with a 'QUEUE'
   * error: someone who can write to Redis cannot make the worker read or write elsewhere.
   */
  allowedRoots?: string[];
  /** Called with each finished job (for logs and tests). */
  onJob?: (e: { id: string; name: string; ok: boolean; ms: number; error?: string }) => void;
}

const workerOptionsSchema = z.strictObject({
  redis: z.string().min(1),
  queue: z.string().regex(/^[\w.-]{1,100}$/).optional(),
  concurrency: z.int().min(1).max(1024).optional(),
  maxBatch: z.int().min(1).max(1024).optional(),
  modelCacheBytes: z.number().int().min(1).optional(),
  threads: z.int().min(1).max(1024).optional(),
  lockDuration: z.int().min(1000).max(3_600_000).optional(),
  allowedRoots: z.array(z.string().min(1)).min(1).optional(),
  onJob: z.function().optional(),
});

/** A running worker. */
export interface PartscanWorker {
  /** The BullMQ worker (events, pause/resume). */
  readonly worker: Worker;
  /** Models loaded now (sha256, least recently used first). */
  readonly loadedModels: () => string[];
  /** Score batches run so far (score jobs / batches = images per batch). */
  readonly batches: () => number;
  /**
   * Stops taking jobs and waits for the ones in progress to finish (graceful; what SIGTERM does), then
   * disconnects. With `force`, in-progress jobs are abandoned: their locks expire and other workers
   * take them again, so nothing is lost.
   */
  close(force?: boolean): Promise<void>;
}

/** host:pid of this process, recorded with each result. */
const WHO = `${os.hostname()}:${process.pid}`;

/**
 * Starts a worker on `opts.queue` and resolves once it is connected and taking jobs.
 *
 * @example
 * const w = await startWorker({ redis: 'redis://127.0.0.1:6379', concurrency: 16 });
 * process.once('SIGTERM', () => void w.close());
 */
export async function startWorker(opts: WorkerOptions): Promise<PartscanWorker> {
  parseOptions(workerOptionsSchema, opts, 'worker', 'fix the worker options');
  const connection = connectRedis(opts.redis);
  try {
    await waitForRedis(connection, opts.redis);
  } catch (e) {
    connection.disconnect();
    throw e;
  }
  const cache = new ModelCache({
    maxBytes: opts.modelCacheBytes ?? DEFAULT_MODEL_CACHE_BYTES,
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
  });
  const roots = await realRoots(opts.allowedRoots);
  const processor = async (job: Job): Promise<ScoreJobRecord | FitJobResult> => {
    const t0 = performance.now();
    try {
      const out = await processJob(job, cache, roots);
      opts.onJob?.({ id: job.id ?? '?', name: job.name, ok: true, ms: performance.now() - t0 });
      return out;
    } catch (e) {
      opts.onJob?.({ id: job.id ?? '?', name: job.name, ok: false, ms: performance.now() - t0, error: e instanceof Error ? e.message : String(e) });
      throw toJobError(e);
    }
  };
  const worker = new Worker(opts.queue ?? DEFAULT_QUEUE_NAME, processor, {
    connection: connection as never,
    concurrency: opts.concurrency ?? 16,
    lockDuration: opts.lockDuration ?? 30_000,
    // A job may be found stalled once or twice (its worker died) before it counts as failed.
    maxStalledCount: 2,
    stalledInterval: Math.max(1000, Math.round((opts.lockDuration ?? 30_000) / 2)),
    autorun: true,
  });
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  let closing: Promise<void> | undefined;
  let forceNow: () => void = () => undefined;
  const forced = new Promise<void>((resolve) => (forceNow = resolve));
  return {
    worker,
    loadedModels: () => cache.loaded,
    batches: () => cache.batches,
    close: (force = false) => {
      // Without Redis, BullMQ can neither hand jobs back nor mark them done, and a graceful close would
      // wait for it for ever: abandon them instead (their locks expire; other workers redo them).
      if (force || connection.status !== 'ready') forceNow();
      // Redis may also go away while the jobs in progress finish.
      if (!closing) connection.once('close', forceNow);
      return (closing ??= (async () => {
        const abandon = forced.then(() => Promise.race([worker.close(true).catch(() => undefined), sleep(5000)]));
        await Promise.race([worker.close(false).catch(() => undefined), abandon]);
        connection.off('close', forceNow);
        await cache.dispose();
        if (connection.status === 'ready') await quit(connection);
        else connection.disconnect();
      })());
    },
  };
}

/** A pause that does not keep the process alive by itself. */
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Typed errors that retrying cannot cure: a malformed job, a wrong model file, bad options or data. */
const FINAL_CODES = new Set(['QUEUE', 'OPTIONS', 'MODEL_FORMAT', 'MODEL_VERSION', 'MODEL_CHECKSUM', 'DATASET', 'TRAINING_SET', 'BACKBONE_UNKNOWN', 'BACKBONE_MISMATCH', 'MASK']);

/**
 * The error BullMQ records: "CODE: message" for typed errors (the producer turns it back into a
 * failure with its code), final for errors no retry can cure; anything else is retried.
 */
function toJobError(e: unknown): Error {
  if (!(e instanceof PartscanError)) return e instanceof Error ? e : new Error(String(e));
  const message = `${e.code}: ${e.message}`;
  return FINAL_CODES.has(e.code) ? new UnrecoverableError(message) : new Error(message);
}

async function quit(c: Redis): Promise<void> {
  await c.quit().catch(() => c.disconnect());
}

function jobIdOf(job: WorkerJob): string {
  const id = job.id ?? '';
  if (!JOB_ID_PATTERN.test(id)) {
    throw new PartscanError('QUEUE', `Job id "${id.slice(0, 60)}" is not a plain name.`, { remedy: 'use job ids of letters, digits, ".", "-" and "_"' });
  }
  return id;
}

/** The job the worker takes, as far as processing it needs. */
export type WorkerJob = Pick<Job, 'id' | 'name' | 'data' | 'updateProgress'>;

/**
 * Runs one job as a worker does (validation, path resolution and roots, then the score or fit),
 * without the queue around it: the worker's processor, and the payload fuzz test. Throws what the job
 * fails with (typed errors for everything a payload can cause).
 */
export async function processJob(job: WorkerJob, cache: ModelCache, roots: string[] | undefined): Promise<ScoreJobRecord | FitJobResult> {
  return job.name === JOB_FIT ? runFitJob(job, roots) : runScoreJob(job, cache, roots);
}

async function runScoreJob(job: WorkerJob, cache: ModelCache, roots: string[] | undefined): Promise<ScoreJobRecord> {
  if (job.name !== JOB_SCORE) {
    throw new PartscanError('QUEUE', `Job ${job.id} has unknown name "${String(job.name).slice(0, 40)}".`, { remedy: `enqueue "${JOB_SCORE}" or "${JOB_FIT}" jobs` });
  }
  const jobId = jobIdOf(job);
  const data = parseJob(scoreJobSchema, job.data, jobId);
  // The job works on the real paths it was checked on, not on the strings it sent.
  const p = await resolveJobPaths(jobId, roots, {
    model: data.model.path,
    image: 'path' in data.image ? data.image.path : undefined,
    run: data.run?.dir,
    records: data.run ? path.join(data.run.dir, RECORDS_DIR) : undefined,
  });
  const input: ScoreInput = p.image ?? Buffer.from((data.image as { bytes: string }).bytes, 'base64');
  const file = data.file ?? ('path' in data.image ? data.image.path : '<buffer>');
  if (data.run && !('path' in data.image) && Object.values({ overlay: true, heatmap: true, mask: true, original: true, ...data.run.exports }).some(Boolean)) {
    throw new PartscanError('QUEUE', `Job ${jobId}: exports need the image by path, not inline bytes.`, {
      remedy: 'send the image by path on shared storage, or set run.exports to false for all kinds',
    });
  }
  const held = await cache.acquire(p.model!, data.model.sha256);
  let record: ScoreJobRecord;
  try {
    try {
      const r = await held.scorer.score(input, data.options);
      const exported = await exportScoredImage(
        held.model,
        r,
        p.run ?? '',
        data.run?.stem ?? 'image',
        data.run
          ? { exports: data.run.exports, ...(data.run.maxSide !== undefined ? { maxSide: data.run.maxSide } : {}) }
          : { exports: { overlay: false, heatmap: false, mask: false, original: false } },
      );
      exported.file = file;
      record = { jobId, result: exported, worker: WHO };
    } catch (e) {
      // An image error is a property of the input: retrying cannot help, so it ends here as a failure.
      if (!isImageError(e)) throw e;
      record = { jobId, failure: failureOf(file, e), worker: WHO };
    }
  } finally {
    held.release();
  }
  if (data.run) await writeFileAtomic(path.join(p.records!, `${jobId}.json`), signRecord(record, data.run.recordKey));
  return record;
}

async function runFitJob(job: WorkerJob, roots: string[] | undefined): Promise<FitJobResult> {
  const jobId = jobIdOf(job);
  const data = parseJob(fitJobSchema, job.data, jobId);
  const o = data.options;
  // A backbone .onnx file, relative or absolute, is checked like every path.
  const backboneFile = o.backbone !== undefined && isOnnxPath(o.backbone) ? o.backbone : undefined;
  const dataPaths = Array.isArray(data.data) ? data.data : [data.data];
  const named: Record<string, string | undefined> = { out: data.out, weights: o.weights, calibration: o.calibration, roi: o.roi, backbone: backboneFile };
  dataPaths.forEach((f, i) => (named[`data${i}`] = f));
  const p = await resolveJobPaths(jobId, roots, named);
  const t0 = performance.now();
  const backbone: BackboneSpec = {};
  if (o.backbone !== undefined) backbone.backbone = p.backbone ?? o.backbone;
  if (o.layers) backbone.layers = o.layers;
  if (p.weights) backbone.weights = p.weights;
  const fo: FitOptions = { backbone };
  for (const k of ['channels', 'imageSize', 'seed', 'calibrationSplit', 'batchSize', 'band', 'tile'] as const) {
    if (o[k] !== undefined) (fo as Record<string, unknown>)[k] = o[k];
  }
  if (p.calibration) fo.calibration = p.calibration;
  if (p.roi) fo.roi = p.roi;
  const source = Array.isArray(data.data) ? dataPaths.map((_, i) => p[`data${i}`]!) : p.data0!;
  // The producer shows the fit's progress: forwarded to the job, at most twice a second.
  let last = 0;
  fo.onProgress = (e) => {
    const now = performance.now();
    if (now - last < 500 && e.done < e.total) return;
    last = now;
    void job.updateProgress({ stage: e.stage, done: e.done, total: e.total }).catch(() => undefined);
  };
  const model = await fit(source, fo);
  try {
    await model.save(p.out!, { embedBackbone: o.embedBackbone ?? true, resumable: !o.compact });
  } finally {
    await model.dispose();
  }
  return {
    model: data.out,
    sha256: await fileSha256(p.out!),
    images: model.header.gaussian.images,
    calibrationImages: model.header.fit.calibrationImages,
    warnings: (model.fitWarnings ?? []).map((w) => w.message),
    seconds: (performance.now() - t0) / 1000,
    worker: WHO,
  };
}
