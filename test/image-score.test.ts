/**
 * The per-position standardised image score (issue 28) on real data: its definition, the two scoring
 * paths and the file agree; the anomaly map (pixel metrics, masks) is the same as with the map-maximum
 * score; `imageScore: 'max'` and files older than format 1.3 score by the map's maximum; tiling.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit, Model } from '../src/index.js';
import { listImages } from '../src/data/loaders.js';
import { readModelFile, writeModelFile } from '../src/model/model-file.js';
import { gaussianBlur } from '../src/postprocess/blur.js';
import { resizeBilinear } from '../src/postprocess/resize.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { cli } from './helpers/cli.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const opts = { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 20, imageSize: 96, seed: 5 } as const;
const probes = ['good/001.png', 'broken_large/002.png', 'broken_small/004.png', 'contamination/003.png'].map((f) => path.join(BOTTLE, 'test', f));
let tmp: string;
let train: string[];
let model: Model;
let maxModel: Model;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-image-score-'));
  train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 30);
  model = await fit(train, opts);
  maxModel = await fit(train, { ...opts, imageScore: 'max' });
}, 300_000);

afterAll(async () => {
  await model?.dispose();
  await maxModel?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(1e-6, Math.abs(b));

describe('standardised image score', () => {
  it('is the maximum of the blurred map of (distance − centre) / spread; mapMax stays the raw map maximum', async () => {
    expect(model.header.imageScore).toEqual({ kind: 'standardized' });
    const s = model.standardization!;
    expect(s.centre).toHaveLength(model.positions);
    expect(Math.min(...s.spread)).toBeGreaterThan(0);
    const { tensor } = await preprocessBatch(probes, model.header.preprocess);
    const batch = { data: tensor, dims: [probes.length, 3, model.size, model.size] as [number, number, number, number] };
    const fused = await model.scoreMaps(batch);
    // A transform of the squared distances forces the session-by-session path, which hands them back.
    const stepwise = await model.scoreMaps(batch, (d2) => d2);
    const { gridW, gridH } = model.header.embedding;
    const S = model.size;
    const results = await model.score(probes);
    for (let k = 0; k < probes.length; k++) {
      const grid = Float32Array.from({ length: model.positions }, (_, p) => (Math.sqrt(Math.max(0, stepwise.d2![k * model.positions + p]!)) - s.centre[p]!) / s.spread[p]!);
      const blurred = gaussianBlur(resizeBilinear(grid, gridW, gridH, S, S), S, S, model.header.postprocess.blurSigma);
      const want = blurred.reduce((a, b) => Math.max(a, b), -Infinity);
      expect(rel(stepwise.imageScores![k]!, want)).toBeLessThan(1e-5);
      expect(rel(fused.imageScores![k]!, want)).toBeLessThan(1e-5);
      const r = results[k]!;
      expect(r.imageScore).toBe(fused.imageScores![k]);
      expect(r.mapMax).toBe(r.anomalyMap.reduce((a, b) => Math.max(a, b), -Infinity));
      expect(r.imageScore).not.toBe(r.mapMax);
    }
    expect(results[1]!.imageScore).toBeGreaterThan(results[0]!.imageScore);
  });

  it('leaves the anomaly map as it is: the same maps, masks input and pixel threshold source as the map-maximum model', async () => {
    expect(maxModel.header.imageScore).toEqual({ kind: 'max' });
    expect(maxModel.standardization).toBeUndefined();
    const [a, b] = [await model.score(probes), await maxModel.score(probes)];
    for (let k = 0; k < probes.length; k++) {
      expect(a[k]!.anomalyMap).toEqual(b[k]!.anomalyMap);
      expect(a[k]!.mapMax).toBe(b[k]!.mapMax);
      expect(b[k]!.imageScore).toBe(b[k]!.mapMax);
    }
    // Same out-of-sample map maxima, so the same pixel threshold.
    expect(model.header.thresholds!.pixel).toBeCloseTo(maxModel.header.thresholds!.pixel, 9);
  });

  it('round-trips through the file with identical scores', async () => {
    const f = path.join(tmp, 'std.partscan');
    await model.save(f);
    const info = await readModelFile(f);
    expect(info.header.sections.find((x) => x.name === 'imageScore.standardize')).toMatchObject({ dtype: 'float32', shape: [2, model.positions] });
    const loaded = await Model.load(f);
    const [a, b] = [await model.score(probes), await loaded.score(probes)];
    a.forEach((r, k) => {
      expect(b[k]!.imageScore).toBe(r.imageScore);
      expect(b[k]!.verdict).toBe(r.verdict);
    });
    await loaded.dispose();
  });

  it('a model file older than format 1.3 scores by the map maximum, and info says so', async () => {
    const f = path.join(tmp, 'new.partscan');
    await model.save(f);
    // Rebuild the file as format 1.2 wrote it: no standardisation, no calibration pool, no operating point.
    const c = await readModelFile(f);
    const { imageScore: _i, calibration: _c, sections: _s, ...rest } = c.header as Record<string, unknown> & { thresholds: Record<string, unknown> };
    const { operatingPoint: _o, ...thresholds } = rest.thresholds as Record<string, unknown>;
    const old = path.join(tmp, 'old.partscan');
    const keep = c.header.sections.filter((s) => !s.name.startsWith('imageScore.') && !s.name.startsWith('calibration.'));
    await writeModelFile(old, { ...rest, thresholds: { ...thresholds, method: { image: 'good-sigma', pixel: 'good-sigma' } }, formatVersion: [1, 2] }, keep.map((s) => ({ name: s.name, data: c.sections.get(s.name)!, shape: s.shape })));
    const loaded = await Model.load(old);
    expect(loaded.standardization).toBeUndefined();
    expect(loaded.header.imageScore).toBeUndefined();
    const [r, ref] = [await loaded.score(probes[1]!), await maxModel.score(probes[1]!)];
    expect(r.imageScore).toBe(r.mapMax);
    expect(r.anomalyMap).toEqual(ref.anomalyMap);
    await loaded.dispose();
    const info = await cli(['info', old]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/image score anomaly-map maximum \(format < 1\.3: re-fit/);
  });

  it('tiled models: the image score is the maximum over the tiles\' standardised scores', async () => {
    const tiled = await fit(train.slice(0, 8), { ...opts, imageSize: 64, tile: { size: 256, overlap: 32 } });
    try {
      expect(tiled.header.imageScore).toEqual({ kind: 'standardized' });
      expect(tiled.header.calibration!.sources.leaveOneOut).toBeGreaterThan(0);
      const [good, bad] = await tiled.score([probes[0]!, probes[1]!]);
      expect(good!.mapWidth).toBe(512);
      expect(bad!.imageScore).toBeGreaterThan(good!.imageScore);
      expect(good!.imageScore).not.toBe(good!.mapMax);
      expect(good!.verdict).toBeDefined();
    } finally {
      await tiled.dispose();
    }
  }, 300_000);
});
