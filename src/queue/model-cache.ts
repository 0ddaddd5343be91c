/**
 * The models a worker keeps loaded: keyed by the model file's sha256, least recently used evicted
 * first once their total size passes a memory budget. A worker loads each model once (not once per
 * job) and scores it through one {@link BatchingScorer}, so jobs that wait together go through the
 * backbone together.
 */

import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { PartscanError } from '../errors.js';
import { openRegular } from '../util/regular-file.js';
import { BatchingScorer } from '../model/batching-scorer.js';
import { Model } from '../model/model.js';

/** Default memory budget of the loaded models: 4 GiB. */
export const DEFAULT_MODEL_CACHE_BYTES = 4 * 1024 ** 3;

/** A loaded model and the scorer that batches its jobs. */
export interface CachedModel {
  model: Model;
  scorer: BatchingScorer;
  sha256: string;
}

interface Entry extends CachedModel {
  bytes: number;
  users: number;
}

/** Options of {@link ModelCache}. */
export interface ModelCacheOptions {
  /** Memory budget in bytes (default {@link DEFAULT_MODEL_CACHE_BYTES}); a model's size is estimated by its file size. */
  maxBytes?: number;
  /** ONNX Runtime intra-op threads of each model. */
  threads?: number;
  /** Most images per backbone batch (default: the model's own default). */
  maxBatch?: number;
}

/** sha256 of a whole regular file, streamed; a special file (FIFO, /dev/zero) is refused with a 'QUEUE' error before it is read. */
export async function fileSha256(file: string): Promise<string> {
  const { handle } = await openRegular(file, (kind) => new PartscanError('QUEUE', `${file} is ${kind}, not a model file.`, { file, remedy: 'name a .partscan file' }));
  const h = createHash('sha256');
  try {
    for await (const chunk of handle.createReadStream({ autoClose: false })) h.update(chunk as Buffer);
  } finally {
    await handle.close();
  }
  return h.digest('hex');
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
 * A memory-bounded LRU of loaded models keyed by sha256. A model in use by a job is never disposed;
 * one over the budget is evicted as soon as its last job ends.
 */
export class ModelCache {
  readonly maxBytes: number;
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();

  constructor(private readonly opts: ModelCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MODEL_CACHE_BYTES;
  }

  /** Models loaded now, most recently used last. */
  get loaded(): string[] {
    return [...this.entries.keys()];
  }

  /** Backbone batches scored so far, all models together (jobs / batches = the batching achieved). */
  get batches(): number {
    let n = this.evictedBatches;
    for (const e of this.entries.values()) n += e.scorer.batches;
    return n;
  }
  private evictedBatches = 0;

  /**
   * The model at `file`, which must have the given sha256; loads it on first use. Call `release` when
   * the job is done with it. A file whose content differs gives a typed 'QUEUE' error.
   */
  async acquire(file: string, sha256: string): Promise<CachedModel & { release: () => void }> {
    await this.checkHash(file, sha256);
    let entry = this.entries.get(sha256);
    if (entry) {
      // Most recently used goes last.
      this.entries.delete(sha256);
      this.entries.set(sha256, entry);
    } else {
      let p = this.loading.get(sha256);
      if (!p) {
        p = this.load(file, sha256).finally(() => this.loading.delete(sha256));
        this.loading.set(sha256, p);
      }
      entry = await p;
    }
    entry.users++;
    const e = entry;
    let released = false;
    return {
      model: e.model,
      scorer: e.scorer,
      sha256,
      release: () => {
        if (released) return;
        released = true;
        e.users--;
        void this.evict();
      },
    };
  }

  /** Disposes every model (waits for none: call after the jobs have ended). */
  async dispose(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.model.dispose()));
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

  private async load(file: string, sha256: string): Promise<Entry> {
    const bytes = (await fs.stat(file)).size;
    const model = await Model.load(file, this.opts.threads !== undefined ? { threads: this.opts.threads } : {});
    const scorer = new BatchingScorer(model, this.opts.maxBatch !== undefined ? { maxBatch: this.opts.maxBatch } : {});
    const entry: Entry = { model, scorer, sha256, bytes, users: 0 };
    this.entries.set(sha256, entry);
    await this.evict();
    return entry;
  }

  /** Evicts least recently used idle models while over budget (the newest is always kept). */
  private async evict(): Promise<void> {
    let total = 0;
    for (const e of this.entries.values()) total += e.bytes;
    const newest = [...this.entries.keys()].at(-1);
    for (const [key, e] of this.entries) {
      if (total <= this.maxBytes) break;
      if (e.users > 0 || key === newest) continue;
      this.entries.delete(key);
      this.evictedBatches += e.scorer.batches;
      total -= e.bytes;
      await e.model.dispose();
    }
  }
}
