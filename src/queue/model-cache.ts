/**
 * The models a worker keeps loaded: a {@link ModelPool} keyed by the model file's sha256 (least
 * recently used evicted first once their resident bytes pass a memory budget, never one in use), with
 * the hash check of each job's model file and one {@link BatchingScorer} per model, so jobs that wait
 * together go through the backbone together.
 */

import { promises as fs } from 'node:fs';
import { PartscanError } from '../errors.js';
import { regularFileSha256 } from '../util/regular-file.js';
import { BatchingScorer } from '../model/batching-scorer.js';
import type { Model } from '../model/model.js';
import { ModelPool } from '../model/model-pool.js';

/** Default memory budget of the loaded models: 4 GiB. */
export const DEFAULT_MODEL_CACHE_BYTES = 4 * 1024 ** 3;

/** A loaded model and the scorer that batches its jobs. */
export interface CachedModel {
  model: Model;
  scorer: BatchingScorer;
  sha256: string;
}

/** Options of {@link ModelCache}. */
export interface ModelCacheOptions {
  /** Memory budget in bytes (default {@link DEFAULT_MODEL_CACHE_BYTES}), counted with {@link Model.residentBytes}. */
  maxBytes?: number;
  /** ONNX Runtime intra-op threads of each model. */
  threads?: number;
  /** Most images per backbone batch (default: the model's own default). */
  maxBatch?: number;
}

/** sha256 of a whole regular file, streamed; a special file (FIFO, /dev/zero) is refused with a 'QUEUE' error before it is read. */
export async function fileSha256(file: string): Promise<string> {
  return regularFileSha256(file, (kind) => new PartscanError('QUEUE', `${file} is ${kind}, not a model file.`, { file, remedy: 'name a .partscan file' }));
}

/** Hashes already computed in this process, by path, valid while size, mtime and inode are unchanged. */
const knownHashes = new Map<string, { key: string; sha256: string }>();

/**
 * {@link fileSha256}, remembered per path while the file's size, mtime and inode stay the same: a model
 * file (hundreds of MB) is hashed once per process, not once per job or per run.
 */
export async function cachedFileSha256(file: string): Promise<string> {
  const st = await fs.stat(file);
  const key = `${st.size}:${st.mtimeMs}:${st.ino}`;
  const known = knownHashes.get(file);
  if (known?.key === key) return known.sha256;
  const sha256 = await fileSha256(file);
  knownHashes.set(file, { key, sha256 });
  return sha256;
}

/**
 * The worker's memory-bounded LRU of loaded models keyed by sha256 (a {@link ModelPool}). A model in
 * use by a job is never disposed; one over the budget is evicted as soon as its last job ends.
 */
export class ModelCache {
  readonly maxBytes: number;
  private readonly pool: ModelPool;
  private readonly scorers = new Map<string, BatchingScorer>();
  private evictedBatches = 0;

  constructor(private readonly opts: ModelCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MODEL_CACHE_BYTES;
    this.pool = new ModelPool({
      maxBytes: this.maxBytes,
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      onEvict: (key) => {
        this.evictedBatches += this.scorers.get(key)?.batches ?? 0;
        this.scorers.delete(key);
      },
    });
  }

  /** Models loaded now, most recently used last. */
  get loaded(): string[] {
    return this.pool.loaded;
  }

  /** Backbone batches scored so far, all models together (jobs / batches = the batching achieved). */
  get batches(): number {
    let n = this.evictedBatches;
    for (const s of this.scorers.values()) n += s.batches;
    return n;
  }

  /**
   * The model at `file`, which must have the given sha256; loads it on first use. Call `release` when
   * the job is done with it. A file whose content differs gives a typed 'QUEUE' error.
   */
  async acquire(file: string, sha256: string): Promise<CachedModel & { release: () => void }> {
    await this.checkHash(file, sha256);
    const { model, release } = await this.pool.acquire(file, { key: sha256 });
    let scorer = this.scorers.get(sha256);
    if (!scorer) {
      scorer = new BatchingScorer(model, this.opts.maxBatch !== undefined ? { maxBatch: this.opts.maxBatch } : {});
      this.scorers.set(sha256, scorer);
    }
    return { model, scorer, sha256, release };
  }

  /** Disposes every model (waits for none: call after the jobs have ended). */
  async dispose(): Promise<void> {
    this.scorers.clear();
    await this.pool.dispose();
  }

  private async checkHash(file: string, sha256: string): Promise<void> {
    let actual: string;
    try {
      actual = await cachedFileSha256(file);
    } catch (e) {
      if (e instanceof PartscanError) throw e;
      throw new PartscanError('QUEUE', `Model file ${file} is not readable on this worker.`, {
        file,
        cause: e,
        remedy: 'put models on storage every worker mounts at the same path',
      });
    }
    if (actual !== sha256) {
      throw new PartscanError('QUEUE', `Model file ${file} has sha256 ${actual.slice(0, 12)}…, the job expects ${sha256.slice(0, 12)}….`, {
        file,
        remedy: 'the file changed after the job was enqueued: enqueue again against the current file, or restore the expected one',
      });
    }
  }
}
