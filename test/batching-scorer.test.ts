import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchingScorer } from '../src/model/batching-scorer.js';
import { fit } from '../src/model/fit.js';
import type { Model, ScoreInput, ScoreOptions } from '../src/model/model.js';
import { isPartscanError } from '../src/errors.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

let model: Model;
let images: string[];
let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-batching-'));
  const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 10);
  const calibration = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(10, 14);
  model = await fit(train, { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 24, imageSize: 128, seed: 1, calibration });
  images = [
    ...(await listImages(path.join(BOTTLE, 'test', 'broken_large'))).slice(0, 4),
    ...(await listImages(path.join(BOTTLE, 'test', 'good'))).slice(0, 4),
  ];
});
afterAll(async () => {
  await model?.dispose();
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Counts the model.score calls and the images they carried. */
function countCalls(m: Model): { calls: number[]; restore: () => void } {
  const calls: number[] = [];
  const original = m.score.bind(m);
  const spy = (input: ScoreInput | ScoreInput[], opts?: ScoreOptions) => {
    calls.push(Array.isArray(input) ? input.length : 1);
    return original(input as ScoreInput[], opts);
  };
  (m as unknown as { score: typeof spy }).score = spy;
  return { calls, restore: () => delete (m as unknown as { score?: unknown }).score };
}

describe('BatchingScorer', () => {
  it('batches concurrent requests and gives each caller the result of scoring it alone', async () => {
    const alone = [];
    for (const f of images) alone.push(await model.score(f));
    const scorer = new BatchingScorer(model, { maxBatch: 4 });
    const { calls, restore } = countCalls(model);
    try {
      const results = await Promise.all(images.map((f) => scorer.score(f)));
      // The first request starts alone (the scorer was idle); the other 7 waited and went in ≤ 4s.
      expect(calls).toEqual([1, 4, 3]);
      expect(scorer.batches).toBe(3);
      results.forEach((r, i) => {
        expect(r.source).toBe(images[i]);
        expect(r.imageScore).toBeCloseTo(alone[i]!.imageScore, 4);
        expect(r.verdict).toBe(alone[i]!.verdict);
        expect(r.mask).toEqual(alone[i]!.mask);
      });
    } finally {
      restore();
    }
  });

  it('an undecodable image fails only its own request', async () => {
    const bad = path.join(tmp, 'truncated.png');
    const bytes = await fs.readFile(images[0]!);
    await fs.writeFile(bad, bytes.subarray(0, bytes.length >> 1));
    const scorer = new BatchingScorer(model);
    const inputs = [images[0]!, images[1]!, bad, images[2]!, Buffer.from('not an image'), images[3]!];
    const settled = await Promise.allSettled(inputs.map((f) => scorer.score(f)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    for (const k of [2, 4]) {
      const reason = (settled[k] as PromiseRejectedResult).reason;
      expect(isPartscanError(reason) && reason.code).toBe('IMAGE_DECODE');
    }
    expect((settled[3] as PromiseFulfilledResult<{ source: string }>).value.source).toBe(images[2]);
  });

  it('batches only requests with the same options; a caller\'s batchSize does not split them', async () => {
    const scorer = new BatchingScorer(model, { maxBatch: 8 });
    const { calls, restore } = countCalls(model);
    try {
      const a = [images[0]!, images[1]!, images[2]!].map((f) => scorer.score(f, { minArea: 1e9, batchSize: 1 }));
      const b = [images[3]!, images[4]!].map((f) => scorer.score(f));
      const [ra, rb] = [await Promise.all(a), await Promise.all(b)];
      expect(calls).toEqual([1, 2, 2]);
      for (const r of ra) expect(r.regions).toEqual([]); // every region is below minArea
      expect(rb.some((r) => (r.regions?.length ?? 0) > 0)).toBe(true);
    } finally {
      restore();
    }
  });

  it('refuses a bad maxBatch with a typed OPTIONS error naming it', () => {
    for (const maxBatch of [0, 1.5]) {
      let err: unknown;
      try {
        new BatchingScorer(model, { maxBatch });
      } catch (e) {
        err = e;
      }
      expect(isPartscanError(err, 'OPTIONS')).toBe(true);
      expect((err as Error).message).toContain('maxBatch');
    }
  });
});
