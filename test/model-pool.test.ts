/**
 * ModelPool: many part types in one process within a memory budget (least recently used out first,
 * never a model in use), loads of one model at the same time shared, models warmed at load.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit } from '../src/model/fit.js';
import { ModelPool } from '../src/model/model-pool.js';
import { isPartscanError } from '../src/errors.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

let tmp: string;
let files: string[];
const image = path.join(BOTTLE, 'test', 'broken_large', '000.png');

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-pool-'));
  const train = await listImages(path.join(BOTTLE, 'train', 'good'));
  files = [];
  // Three "part types": the same images, different channel draws.
  for (const seed of [1, 2, 3]) {
    const m = await fit(train.slice(0, 6), { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 8, imageSize: 64, seed, guards: false, contaminationCheck: false, calibrationSplit: 0 });
    const f = path.join(tmp, `part-${seed}.partscan`);
    await m.save(f);
    await m.dispose();
    files.push(f);
  }
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('ModelPool', () => {
  it('keeps models within the budget, least recently used out first, never one in use', async () => {
    const evicted: string[] = [];
    const probe = new ModelPool({ warmUp: false });
    const one = (await probe.acquire(files[0]!)).model.residentBytes;
    await probe.dispose();
    expect(one).toBeGreaterThan(0);
    // Room for two models.
    const pool = new ModelPool({ maxBytes: Math.floor(2.5 * one), threads: 1, onEvict: (key) => evicted.push(key) });
    try {
      const a = await pool.acquire(files[0]!);
      const b = await pool.acquire(files[1]!);
      const c = await pool.acquire(files[2]!);
      // Over budget, but all three are in use.
      expect(pool.loaded).toEqual(files.map((f) => path.resolve(f)));
      a.release();
      await new Promise((r) => setTimeout(r, 20));
      expect(evicted).toEqual([path.resolve(files[0]!)]);
      expect(pool.loaded).toEqual([files[1]!, files[2]!].map((f) => path.resolve(f)));
      expect(pool.residentBytes).toBeLessThanOrEqual(pool.maxBytes);
      // Held models are served as they are (a hit), and scoring still works after the changeover.
      const again = await pool.acquire(files[1]!);
      expect(again.model === b.model).toBe(true); // (models are never handed to expect: formatting them is slow)
      expect((await again.model.score(image)).imageScore).toBeGreaterThan(0);
      expect(pool.stats).toEqual({ hits: 1, loads: 3, evictions: 1 });
      [b, c, again].forEach((x) => x.release());
      c.release(); // idempotent
      // Loading the first again evicts the least recently used idle one: part 3 (part 2 was used since).
      await pool.preload(files[0]!);
      expect(pool.loaded).toEqual([files[1]!, files[0]!].map((f) => path.resolve(f)));
    } finally {
      await pool.dispose();
    }
  });

  it('shares one load between concurrent acquisitions of a key, and keys by the caller’s key when given', async () => {
    const pool = new ModelPool({ threads: 1 });
    try {
      const [x, y] = await Promise.all([pool.acquire(files[0]!), pool.acquire(files[0]!)]);
      expect(x.model === y.model).toBe(true);
      expect(pool.stats.loads).toBe(1);
      const z = await pool.acquire(files[0]!, { key: 'bottle-v1' });
      expect(z.model === x.model).toBe(false);
      expect(pool.loaded).toEqual([path.resolve(files[0]!), 'bottle-v1']);
      [x, y, z].forEach((h) => h.release());
    } finally {
      await pool.dispose();
    }
  });

  it('a model that fails to load leaves nothing behind; bad options are typed errors', async () => {
    const pool = new ModelPool();
    try {
      await expect(pool.acquire(path.join(tmp, 'missing.partscan'))).rejects.toSatisfy((e: unknown) => isPartscanError(e, 'MODEL_FORMAT'));
      expect(pool.loaded).toEqual([]);
    } finally {
      await pool.dispose();
    }
    expect(() => new ModelPool({ maxBytes: 0 })).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
  });
});
