/**
 * `calibrate` / `partscan calibrate` (issue 22): moving a fitted model's operating point without
 * refitting. Scores stay identical, the file round-trips, labelled images join the pool once, a model
 * without stored scores is a typed error, and hostile options are refused before any image is read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { calibrate, fit, Model } from '../src/index.js';
import { listImages } from '../src/data/loaders.js';
import { cli } from './helpers/cli.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const opts = { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 20, imageSize: 96, seed: 1 } as const;
let tmp: string;
let modelFile: string;
let defectsRoot: string;
let extraGood: string;
const probes = ['good/000.png', 'broken_large/001.png', 'contamination/002.png'].map((f) => path.join(BOTTLE, 'test', f));

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-calibrate-'));
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  const model = await fit(all.slice(0, 30), opts);
  modelFile = path.join(tmp, 'm.partscan');
  await model.save(modelFile);
  await model.dispose();
  // An MVTec-style root with 5 labelled defects (and one good test image, ignored as a defect).
  defectsRoot = path.join(tmp, 'defects');
  for (const d of ['train/good', 'test/good', 'test/broken_small']) await fs.mkdir(path.join(defectsRoot, d), { recursive: true });
  await fs.symlink(all[40]!, path.join(defectsRoot, 'train', 'good', '000.png'));
  await fs.symlink(path.join(BOTTLE, 'test', 'good', '005.png'), path.join(defectsRoot, 'test', 'good', '005.png'));
  for (const i of ['000', '001', '002', '003', '004']) await fs.symlink(path.join(BOTTLE, 'test', 'broken_small', `${i}.png`), path.join(defectsRoot, 'test', 'broken_small', `${i}.png`));
  extraGood = path.join(tmp, 'more-good');
  await fs.mkdir(extraGood);
  for (const f of all.slice(30, 36)) await fs.symlink(f, path.join(extraGood, path.basename(f)));
}, 300_000);

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('calibrate (API)', () => {
  it('moves the threshold to a new false-reject target; every score stays identical; the file round-trips', async () => {
    const model = await Model.load(modelFile);
    try {
      const before = await model.score(probes);
      const thresholds0 = structuredClone(model.header.thresholds!);
      expect(thresholds0.operatingPoint!.falseRejectTarget).toBe(0.01);
      const r = await calibrate(model, { falseRejectTarget: 0.1 });
      expect(r.previous).toEqual(thresholds0);
      expect(model.header.thresholds).toEqual(r.thresholds);
      expect(r.thresholds.image).toBeLessThan(r.previous!.image);
      expect(r.thresholds.operatingPoint!.falseRejectTarget).toBe(0.1);
      expect(r.thresholds.operatingPoint!.image.rate).toBeCloseTo(0.1, 6);
      expect(r.added).toEqual({ good: 0, defect: 0 });
      const after = await model.score(probes);
      after.forEach((a, i) => {
        expect(a.imageScore).toBe(before[i]!.imageScore);
        expect(a.mapMax).toBe(before[i]!.mapMax);
        expect(a.anomalyMap).toEqual(before[i]!.anomalyMap);
      });
      const out = path.join(tmp, 'moved.partscan');
      await model.save(out);
      const back = await Model.load(out);
      expect(back.header.thresholds).toEqual(model.header.thresholds);
      expect((await back.calibrationScores())!.scores()).toEqual((await model.calibrationScores())!.scores());
      expect((await back.score(probes[1]!)).imageScore).toBe(before[1]!.imageScore);
      await back.dispose();
    } finally {
      await model.dispose();
    }
  });

  it('labelled defects and new good images join the pool once, however often they are given', async () => {
    const model = await Model.load(modelFile);
    try {
      const good0 = model.header.calibration!.good;
      const r1 = await calibrate(model, { defects: defectsRoot, good: extraGood });
      expect(r1.added).toEqual({ good: 6, defect: 5 });
      expect(model.header.calibration).toMatchObject({ good: good0 + 6, defect: 5, sources: { added: 6 } });
      const esc = r1.thresholds.operatingPoint!.escape!;
      expect(esc.defects).toBe(5);
      expect(esc.lower95).toBeLessThanOrEqual(esc.rate);
      expect(esc.upper95).toBeGreaterThanOrEqual(esc.rate);
      // Again: the same images replace their rows (keyed by the sha256 of their bytes).
      await calibrate(model, { defects: defectsRoot, good: extraGood });
      expect(model.header.calibration).toMatchObject({ good: good0 + 6, defect: 5 });
      // The stored defects now allow the F1 rule without giving them again.
      const f1 = await calibrate(model, { thresholdRule: 'f1' });
      expect(f1.thresholds.method.image).toBe('f1-adaptive');
    } finally {
      await model.dispose();
    }
  });

  it('a model that stores no out-of-sample scores is a typed THRESHOLD error saying to fit again', async () => {
    const model = await Model.load(modelFile);
    model.setCalibrationScores(undefined);
    const old = path.join(tmp, 'no-pool.partscan');
    await model.save(old);
    await model.dispose();
    const loaded = await Model.load(old);
    try {
      await expect(calibrate(loaded, { falseRejectTarget: 0.02 })).rejects.toMatchObject({ code: 'THRESHOLD', remedy: expect.stringMatching(/fit/) });
    } finally {
      await loaded.dispose();
    }
  });

  it('refuses hostile options with OPTIONS before reading any image, and an aborted signal with CANCELLED', async () => {
    const model = await Model.load(modelFile);
    try {
      const missing = path.join(tmp, 'does-not-exist');
      const bad: Record<string, unknown>[] = [
        { falseRejectTarget: 0 },
        { falseRejectTarget: 1 },
        { falseRejectTarget: Number.NaN },
        { falseRejectTarget: -0.5 },
        { falseRejectTarget: '0.01' },
        { reviewBand: 0.005 },
        { falseRejectTarget: 0.05, reviewBand: 0.02 },
        { thresholdRule: 'median' },
        { thresholdRule: 'f1' }, // no labelled defects stored or given
        { defects: [] },
        { good: '' },
        { signal: 'stop' },
      ];
      for (const o of bad) {
        await expect(calibrate(model, { ...o, ...(o.defects === undefined && !('thresholdRule' in o) ? { defects: missing } : {}) } as never), JSON.stringify(o)).rejects.toMatchObject({ code: 'OPTIONS' });
      }
      const thresholds = structuredClone(model.header.thresholds);
      const ac = new AbortController();
      ac.abort();
      await expect(calibrate(model, { good: extraGood, signal: ac.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
      expect(model.header.thresholds).toEqual(thresholds);
    } finally {
      await model.dispose();
    }
  });
});

describe('partscan calibrate (CLI)', () => {
  it('writes the recalibrated model atomically, in place if asked, and info shows the new operating point', async () => {
    const inPlace = path.join(tmp, 'cli.partscan');
    await fs.copyFile(modelFile, inPlace);
    const r = await cli(['calibrate', inPlace, '--false-reject', '0.02', '--review-band', '0.1', '--defects', defectsRoot, '--out', inPlace, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.thresholds.operatingPoint).toMatchObject({ falseRejectTarget: 0.02, reviewBand: { falseRejectRate: 0.1 }, escape: { defects: 5 } });
    expect(j.added).toEqual({ good: 0, defect: 5 });
    const info = await cli(['info', inPlace]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/target 2\.0%/);
    expect(info.stdout).toMatch(/escapes on 5 labelled defects/);
    const bad = await cli(['calibrate', inPlace, '--false-reject', '1.5', '--out', inPlace]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--false-reject must be a rate in \(0, 1\)/);
  });
});
