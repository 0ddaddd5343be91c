/**
 * Many part types in one process: loaded models kept within a memory budget, least recently used
 * evicted first, a model in use never. An inspection PC holds one model per part type and switches at
 * changeover; with the pool the switch to a model already held costs nothing, and `preload` warms the
 * next one while the line stops. The queue worker's model LRU (src/queue/model-cache.ts) is one.
 */

import path from 'node:path';
import { parseOptions } from '../options/parse.js';
import { modelPoolOptionsSchema } from '../options/schemas.js';
import { Model } from './model.js';

/** Default memory budget of a {@link ModelPool}: 2 GiB (about six bundled-backbone models at 224 px). */
export const DEFAULT_MODEL_POOL_BYTES = 2 * 1024 ** 3;

/** Options of {@link ModelPool}. */
export interface ModelPoolOptions {
  /** Memory budget in bytes, counted with {@link Model.residentBytes} (default {@link DEFAULT_MODEL_POOL_BYTES}). */
  maxBytes?: number;
  /** ONNX Runtime intra-op threads of each model. */
  threads?: number;
  /** Build each model's scoring session when it is loaded ({@link Model.warmUp}; default true). */
  warmUp?: boolean;
  /** Called with a model the pool evicts, before it is disposed. */
  onEvict?: (key: string, model: Model) => void;
}

/** A model held for use; give it back with `release` (the pool may then evict it). */
export interface PooledModel {
  /** The loaded model. */
  model: Model;
  /** The pool's key for it. */
  key: string;
  /** Ends this use (idempotent). */
  release: () => void;
}

interface Entry {
  model: Model;
  users: number;
}

/**
 * A memory-bounded LRU of loaded models. Keys are the models' resolved paths unless the caller gives
 * its own (the queue worker keys by content sha256). Loads of the same key at the same time are one
 * load. The newest model is kept even when it alone exceeds the budget.
 *
 * @example
 * const pool = new ModelPool({ maxBytes: 1024 ** 3 });
 * const { model, release } = await pool.acquire('models/bottle.partscan');
 * try {
 *   console.log((await model.score('part.png')).verdict);
 * } finally {
 *   release();
 * }
 * await pool.preload('models/cap.partscan'); // the next part type, warm before the changeover
 * await pool.dispose();
 */
export class ModelPool {
  /** The memory budget in bytes. */
  readonly maxBytes: number;
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  private counts = { hits: 0, loads: 0, evictions: 0 };

  constructor(private readonly opts: ModelPoolOptions = {}) {
    parseOptions(modelPoolOptionsSchema, opts, 'ModelPool');
    this.maxBytes = opts.maxBytes ?? DEFAULT_MODEL_POOL_BYTES;
  }

  /** Keys of the models held, least recently used first. */
  get loaded(): string[] {
    return [...this.entries.keys()];
  }

  /** Sum of the held models' {@link Model.residentBytes}. */
  get residentBytes(): number {
    let n = 0;
    // Live: a model grows when its statistics for resuming are read.
    for (const e of this.entries.values()) n += e.model.residentBytes;
    return n;
  }

  /** Acquisitions served by a held model, loads, and evictions so far. */
  get stats(): { hits: number; loads: number; evictions: number } {
    return { ...this.counts };
  }

  /** The model at `file`, loaded (and warmed) on first use; call `release` when done with it. */
  async acquire(file: string, opts: { key?: string } = {}): Promise<PooledModel> {
    const key = opts.key ?? path.resolve(file);
    let entry = this.entries.get(key);
    if (entry) {
      this.counts.hits++;
      // Most recently used goes last.
      this.entries.delete(key);
      this.entries.set(key, entry);
    } else {
      let p = this.loading.get(key);
      if (!p) {
        p = this.load(file, key).finally(() => this.loading.delete(key));
        this.loading.set(key, p);
      }
      entry = await p;
    }
    entry.users++;
    const e = entry;
    let released = false;
    return {
      model: e.model,
      key,
      release: () => {
        if (released) return;
        released = true;
        e.users--;
        void this.evict();
      },
    };
  }

  /** Loads (and warms) the model at `file` without holding it, e.g. the next part type before a changeover. */
  async preload(file: string, opts: { key?: string } = {}): Promise<void> {
    (await this.acquire(file, opts)).release();
  }

  /** Disposes every model (waits for none: call once their uses have ended). */
  async dispose(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.model.dispose()));
  }

  private async load(file: string, key: string): Promise<Entry> {
    const model = await Model.load(file, {
      ...(this.opts.threads !== undefined ? { threads: this.opts.threads } : {}),
      warmUp: this.opts.warmUp ?? true,
    });
    this.counts.loads++;
    const entry: Entry = { model, users: 0 };
    this.entries.set(key, entry);
    await this.evict();
    return entry;
  }

  /** Evicts least recently used idle models while over budget (the newest is always kept). */
  private async evict(): Promise<void> {
    let total = this.residentBytes;
    const newest = [...this.entries.keys()].at(-1);
    for (const [key, e] of this.entries) {
      if (total <= this.maxBytes) break;
      if (e.users > 0 || key === newest) continue;
      this.entries.delete(key);
      this.counts.evictions++;
      total -= e.model.residentBytes;
      this.opts.onEvict?.(key, e.model);
      await e.model.dispose();
    }
  }
}
