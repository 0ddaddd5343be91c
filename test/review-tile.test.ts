/**
 * Issue 25's done-when on real data: magnetic tile, bundled backbone at its defaults, half of the test
 * set reviewed (per test folder, alternate files), judged on the other half at a 5 % false-reject
 * target — false-reject ≤ 8 % and escape ≤ 30 %, after `calibrate` with the review and after `fit
 * --resume` with it. The same experiment through the CLI, with bottle beside it, is `npm run
 * bench:review` (the README's figures). About a minute on an idle machine (the fit of 800 images).
 */
import { promises as fs, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReview, calibrate, fit, Model, scoreToRunDir, type ReviewFile } from '../src/index.js';
import { MAGNETIC_TILE } from './helpers/shared.js';

const TARGET = 0.05;
let tmp: string;
let model: Model;
let review: ReviewFile;
/** Half B: judged, never reviewed. */
let judged: { file: string; defect: boolean; score: number }[];

function halves(): { file: string; defect: boolean; half: 'A' | 'B' }[] {
  const test = path.join(MAGNETIC_TILE, 'test');
  return readdirSync(test)
    .sort()
    .flatMap((dir) =>
      readdirSync(path.join(test, dir))
        .filter((f) => f.endsWith('.jpg'))
        .sort()
        .map((f, i) => ({ file: path.join(test, dir, f), defect: dir !== 'good', half: i % 2 === 0 ? ('A' as const) : ('B' as const) })),
    );
}

function rates(parts: readonly { defect: boolean; score: number }[], threshold: number): { falseReject: number; escape: number } {
  const good = parts.filter((p) => !p.defect);
  const bad = parts.filter((p) => p.defect);
  return { falseReject: good.filter((p) => p.score > threshold).length / good.length, escape: bad.filter((p) => p.score <= threshold).length / bad.length };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-review-tile-'));
  model = await fit(path.join(MAGNETIC_TILE, 'train', 'good'), { backbone: { backbone: 'mobilenetv2-int8' } });
  const parts = halves();
  // The run QA reviews: every test part scored by this model, as `partscan score` records it.
  const run = await scoreToRunDir(model, parts.map((p) => p.file), path.join(tmp, 'run'), { exports: { overlay: false, heatmap: false, mask: false, original: false }, monitor: false });
  const labels = new Map(parts.filter((p) => p.half === 'A').map((p) => [p.file, p.defect ? ('defect' as const) : ('good' as const)]));
  review = buildReview(run.model, { id: 'tile-half-A' }, run.results, labels);
  const byFile = new Map(run.results.map((r) => [r.file, r.imageScore]));
  judged = parts.filter((p) => p.half === 'B').map((p) => ({ file: p.file, defect: p.defect, score: byFile.get(p.file)! }));
}, 900_000);

afterAll(async () => {
  await model?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('magnetic tile: half the test set reviewed, judged on the other half at a 5 % false-reject target', () => {
  it('calibrate with the review: false-reject ≤ 8 %, escape ≤ 30 %', async () => {
    expect(review.items.length).toBe(274);
    const r = await calibrate(model, { review, imageRoots: [MAGNETIC_TILE], falseRejectTarget: TARGET });
    expect(r.review).toMatchObject({ good: 76, defect: 198, recorded: 274 });
    const got = rates(judged, r.thresholds.image);
    console.log(`tile, calibrate --review: false-reject ${(100 * got.falseReject).toFixed(1)} %, escape ${(100 * got.escape).toFixed(1)} %`);
    expect(got.falseReject).toBeLessThanOrEqual(0.08);
    expect(got.escape).toBeLessThanOrEqual(0.3);
    // The escape rate the reviewed defects predict brackets the one measured on the other half.
    const esc = r.thresholds.operatingPoint!.escape!;
    expect(esc.defects).toBe(198);
    expect(got.escape).toBeGreaterThanOrEqual(esc.lower95 - 0.05);
    expect(got.escape).toBeLessThanOrEqual(esc.upper95 + 0.05);
  });

  it('fit --resume with the review: false-reject ≤ 8 %, escape ≤ 30 %', async () => {
    const resumed = await fit([], { resume: model, review, imageRoots: [MAGNETIC_TILE], falseRejectTarget: TARGET });
    try {
      // The model holds the reviewed parts already (the calibrate above): the defects keep their rows.
      expect(resumed.fitReport!.review).toMatchObject({ good: 76, defect: 198, fitted: 76, inPool: 198 });
      expect(resumed.header.gaussian.images).toBe(model.header.gaussian.images + 76);
      const scores = await resumed.score(judged.map((j) => j.file));
      const got = rates(judged.map((j, i) => ({ ...j, score: scores[i]!.imageScore })), resumed.header.thresholds!.image);
      console.log(`tile, fit --resume --review: false-reject ${(100 * got.falseReject).toFixed(1)} %, escape ${(100 * got.escape).toFixed(1)} %`);
      expect(got.falseReject).toBeLessThanOrEqual(0.08);
      expect(got.escape).toBeLessThanOrEqual(0.3);
    } finally {
      await resumed.dispose();
    }
  }, 600_000);
});
