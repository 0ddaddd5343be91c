/**
 * The QA review loop on a real model (issue 25): the model's scoring identity (what a run records and a
 * review is checked against), `calibrate` with a review (recorded scores = scores computed again; counts
 * recorded once however often a review is applied; training images keep their out-of-sample rows), `fit
 * --resume` with a review (reviewed-good parts join the Gaussians, reviewed defects never do), and the
 * typed errors of a review of another model, an empty review, a review without a model to resume.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReview, calibrate, fit, Model, scoreToRunDir, type ReviewFile, type RunManifest } from '../src/index.js';
import { CalibrationPool, CALIBRATION_SECTIONS } from '../src/model/calibration-pool.js';
import { modelScoringSha256 } from '../src/model/model-identity.js';
import { readRunManifest } from '../src/export/results.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const opts = { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 20, imageSize: 96, seed: 1 } as const;
const roots = { imageRoots: [BOTTLE] };
let tmp: string;
let modelFile: string;
let fittedSha: string;
let train: string[];
let spare: string;
let run: RunManifest;
/** The run's parts: 3 good test parts, 3 defects, 1 training image. */
let parts: { good: string[]; defect: string[]; training: string };

function labelsOf(entries: [string, 'good' | 'defect'][]): Map<string, 'good' | 'defect'> {
  return new Map(entries);
}

function reviewOf(labels: Map<string, 'good' | 'defect'>, m: RunManifest = run): ReviewFile {
  return buildReview(m.model, { id: 'test-run' }, m.results, labels);
}

const fullReview = (): Map<string, 'good' | 'defect'> =>
  labelsOf([...parts.good.map((f) => [f, 'good'] as [string, 'good']), ...parts.defect.map((f) => [f, 'defect'] as [string, 'defect']), [parts.training, 'good']]);

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-review-loop-'));
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  train = all.slice(0, 30);
  spare = all[30]!;
  const model = await fit(train, opts);
  fittedSha = modelScoringSha256(model);
  modelFile = path.join(tmp, 'm.partscan');
  await model.save(modelFile);
  await model.dispose();
  parts = {
    good: ['000', '001', '002'].map((i) => path.join(BOTTLE, 'test', 'good', `${i}.png`)),
    defect: ['broken_large/000', 'broken_small/001', 'contamination/002'].map((i) => path.join(BOTTLE, 'test', `${i}.png`)),
    training: train[4]!,
  };
  const loaded = await Model.load(modelFile);
  await scoreToRunDir(loaded, [...parts.good, ...parts.defect, parts.training], path.join(tmp, 'run'), { exports: { overlay: false, heatmap: false, mask: false, original: false }, monitor: false });
  await loaded.dispose();
  run = await readRunManifest(path.join(tmp, 'run'));
}, 600_000);

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('scoring identity', () => {
  it('is what the run recorded; survives save/load and calibrate; fit --resume changes it', async () => {
    const model = await Model.load(modelFile);
    try {
      expect(modelScoringSha256(model)).toBe(fittedSha);
      expect(run.model.sha256).toBe(fittedSha);
      expect(run.results.every((r) => Number.isFinite(r.mapMin) && r.mapMin! <= r.mapMax!)).toBe(true);
      await calibrate(model, { falseRejectTarget: 0.05 });
      expect(modelScoringSha256(model)).toBe(fittedSha);
      const resumed = await fit([spare], { resume: model });
      expect(modelScoringSha256(resumed)).not.toBe(fittedSha);
      await resumed.dispose();
      const [seed1, seed2] = [await fit(train.slice(0, 10), opts), await fit(train.slice(0, 10), { ...opts, seed: 2 })];
      expect(modelScoringSha256(seed2)).not.toBe(modelScoringSha256(seed1));
      await seed1.dispose();
      await seed2.dispose();
    } finally {
      await model.dispose();
    }
  }, 300_000);
});

describe('calibrate with a review', () => {
  it("recorded scores give the same thresholds and pool as scoring the parts again; the model records the reviewed labels once", async () => {
    const review = reviewOf(fullReview());
    const stripped: ReviewFile = { ...review, items: review.items.map(({ imageScore: _s, mapMax: _x, mapMin: _n, ...i }) => i) };
    const a = await Model.load(modelFile);
    const b = await Model.load(modelFile);
    try {
      const good0 = a.header.calibration!.good;
      const ra = await calibrate(a, { review, ...roots });
      const rb = await calibrate(b, { review: stripped, ...roots });
      expect(ra.review).toEqual({ good: 4, defect: 3, inPool: 1, recorded: 6, scored: 0, fitted: 0 });
      expect(rb.review).toMatchObject({ inPool: 1, recorded: 0, scored: 6 });
      expect(rb.thresholds).toEqual(ra.thresholds);
      expect((await b.calibrationScores())!.scores()).toEqual((await a.calibrationScores())!.scores());
      expect(a.header.calibration).toMatchObject({ good: good0 + 3, defect: 3, reviewed: { good: 4, defect: 3 }, sources: { added: 3 } });
      expect(ra.thresholds.operatingPoint!.escape!.defects).toBe(3);
      // The training image keeps its leave-one-out row, flagged as reviewed.
      const { createHash } = await import('node:crypto');
      const key = createHash('sha256').update(await fs.readFile(parts.training)).digest('hex');
      expect((await a.calibrationScores())!.entryOf(key)).toMatchObject({ label: 'good', source: 'leaveOneOut', reviewed: true });
      // Applied again (or saved and applied again): nothing counts twice.
      await calibrate(a, { review, ...roots });
      expect(a.header.calibration).toMatchObject({ good: good0 + 3, defect: 3, reviewed: { good: 4, defect: 3 } });
      const saved = path.join(tmp, 'reviewed.partscan');
      await a.save(saved);
      const back = await Model.load(saved);
      expect(back.header.calibration).toEqual(a.header.calibration);
      await calibrate(back, { review, ...roots });
      expect(back.header.calibration).toEqual(a.header.calibration);
      await back.dispose();
    } finally {
      await a.dispose();
      await b.dispose();
    }
  }, 300_000);

  it('a training image labelled defective moves its out-of-sample row to the defects, with a warning', async () => {
    const model = await Model.load(modelFile);
    try {
      const r = await calibrate(model, { review: reviewOf(labelsOf([[parts.training, 'defect']])), ...roots });
      expect(r.review).toMatchObject({ defect: 1, inPool: 1 });
      expect(r.warnings.map((w) => w.code)).toContain('REVIEWED_DEFECT_IN_TRAINING');
      expect(model.header.calibration).toMatchObject({ defect: 1, reviewed: { good: 0, defect: 1 } });
      expect(model.header.calibration!.sources.leaveOneOut).toBe(model.header.calibration!.good);
    } finally {
      await model.dispose();
    }
  });

  it('a review of another model, an empty review, and hostile paths are typed REVIEW errors; the model is unchanged', async () => {
    const model = await Model.load(modelFile);
    try {
      const before = structuredClone(model.header.thresholds);
      const other = reviewOf(fullReview(), { ...run, model: { ...run.model, sha256: 'f'.repeat(64), path: 'other.partscan' } });
      await expect(calibrate(model, { review: other, ...roots })).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/another model \(other\.partscan\)/) });
      await expect(calibrate(model, { review: reviewOf(new Map()), ...roots })).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/labels no part/) });
      await expect(calibrate(model, { review: reviewOf(fullReview()) })).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/outside the allowed image folders/) });
      await expect(calibrate(model, { review: { ...reviewOf(fullReview()), items: [{ file: 7 }] } as never, ...roots })).rejects.toMatchObject({ code: 'REVIEW' });
      await expect(calibrate(model, { review: '', ...roots })).rejects.toMatchObject({ code: 'OPTIONS' });
      await expect(calibrate(model, { review: reviewOf(fullReview()), imageRoots: [] })).rejects.toMatchObject({ code: 'OPTIONS' });
      expect(model.header.thresholds).toEqual(before);
      // A run that did not record its model: every part is scored again, with a warning.
      const unknown = reviewOf(fullReview(), { ...run, model: { path: run.model.path, thresholds: run.model.thresholds } });
      const r = await calibrate(model, { review: unknown, ...roots });
      expect(r.review).toMatchObject({ recorded: 0, scored: 6 });
      expect(r.warnings.map((w) => w.code)).toContain('REVIEW_MODEL_UNKNOWN');
    } finally {
      await model.dispose();
    }
  });
});

describe('fit --resume with a review', () => {
  it('reviewed-good parts join the Gaussians (training images not twice), reviewed defects only the thresholds', async () => {
    const review = reviewOf(fullReview());
    const resumed = await fit([], { resume: modelFile, review, ...roots });
    try {
      expect(resumed.header.gaussian.images).toBe(30 + 3);
      expect(resumed.fitReport!.review).toEqual({ good: 4, defect: 3, inPool: 1, recorded: 0, scored: 3, fitted: 3 });
      const cal = resumed.header.calibration!;
      expect(cal).toMatchObject({ defect: 3, reviewed: { good: 4, defect: 3 } });
      expect(cal.sources.leaveOneOut).toBe(cal.good);
      expect(cal.good).toBeGreaterThanOrEqual(30);
      expect(resumed.header.thresholds!.operatingPoint!.escape!.defects).toBe(3);
      // The same as fitting the reviewed-good parts by hand and giving the defects (the statistics are exact).
      const byHand = await fit(parts.good, { resume: modelFile, defects: parts.defect.map((p) => ({ path: p, label: 'defect', anomalous: true })) });
      expect(Array.from(resumed.mean)).toEqual(Array.from(byHand.mean));
      expect(modelScoringSha256(resumed)).toBe(modelScoringSha256(byHand));
      expect(resumed.header.thresholds!.image).toBeCloseTo(byHand.header.thresholds!.image, 9);
      await byHand.dispose();
    } finally {
      await resumed.dispose();
    }
  }, 600_000);

  it('a review without a model to resume is OPTIONS; one with nothing new to fit says to calibrate instead', async () => {
    await expect(fit([], { review: reviewOf(fullReview()), ...roots })).rejects.toMatchObject({ code: 'OPTIONS', message: expect.stringMatching(/--resume/) });
    await expect(fit([], { resume: modelFile, review: reviewOf(labelsOf([[parts.training, 'good'], [parts.defect[0]!, 'defect']])), ...roots })).rejects.toMatchObject({
      code: 'REVIEW',
      message: expect.stringMatching(/nothing to add/),
      remedy: expect.stringMatching(/calibrate --review/),
    });
  });
});

describe('calibration pool row flags', () => {
  it('files before format 1.5 (no flag sections) read their sources from the row order', () => {
    const rows = 7;
    const sections = new Map<string, ArrayLike<number>>([
      [CALIBRATION_SECTIONS.good, new Float32Array(rows * 3).fill(1)],
      [CALIBRATION_SECTIONS.goodKeys, new Uint8Array(rows * 32).map((_, i) => Math.floor(i / 32))],
    ]);
    const pool = CalibrationPool.fromSections({ good: rows, defect: 0, sources: { leaveOneOut: 4, heldOut: 2, added: 1 }, excluded: 0 }, sections, 'old.partscan');
    expect(pool.summary()).toEqual({ good: 7, defect: 0, sources: { leaveOneOut: 4, heldOut: 2, added: 1 }, excluded: 0 });
    const key = (i: number): string => Buffer.alloc(32, i).toString('hex');
    expect([0, 4, 6].map((i) => pool.entryOf(key(i))?.source)).toEqual(['leaveOneOut', 'heldOut', 'added']);
    // With flags, a header whose counts disagree with them is refused.
    const flagged = CalibrationPool.merge(pool, { good: [], excluded: 0 });
    const withFlags = new Map(flagged.sections().map((s) => [s.name, s.data]));
    expect(() => CalibrationPool.fromSections({ ...flagged.summary(), sources: { leaveOneOut: 7, heldOut: 0, added: 0 } }, withFlags, 'edited.partscan')).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT' }));
    expect(CalibrationPool.fromSections(flagged.summary(), withFlags, 'ok.partscan').summary()).toEqual(pool.summary());
  });
});
