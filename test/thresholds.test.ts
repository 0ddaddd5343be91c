import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPartscanError, type PartscanError } from '../src/errors.js';
import { normalizeScore } from '../src/postprocess/normalize.js';
import {
  DEFAULT_GOOD_RULE,
  f1AdaptiveThreshold,
  pixelF1Threshold,
  pixelThresholdFromGood,
  quantileSorted,
  thresholdFromGood,
} from '../src/postprocess/threshold-rules.js';
import { selectThresholds } from '../src/postprocess/operating-point.js';
import { imageNormalization, verdict } from '../src/postprocess/thresholds.js';

/** Brute force: F1 of the rule "score > t" for every candidate t. */
function f1At(scores: number[], labels: number[], t: number): number {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  scores.forEach((s, i) => {
    const pred = s > t;
    if (pred && labels[i]) tp++;
    else if (pred) fp++;
    else if (labels[i]) fn++;
  });
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

function bruteBestF1(scores: number[], labels: number[]): number {
  const cuts = [...new Set(scores)].sort((a, b) => a - b);
  let best = 0;
  // Predict positive for all scores ≥ each distinct value (cut just below it).
  for (const c of cuts) best = Math.max(best, f1At(scores, labels, c - 1e-9));
  return best;
}

function thrown(fn: () => unknown): PartscanError {
  try {
    fn();
  } catch (e) {
    return e as PartscanError;
  }
  throw new Error('expected a throw');
}

describe('thresholdFromGood', () => {
  it('default rule: max(mean + 3σ, worst good score)', () => {
    expect(DEFAULT_GOOD_RULE).toEqual({ kind: 'sigma', k: 3, floorAtMax: true });
    // Well-behaved: mean + 3σ lies above the max (11).
    expect(thresholdFromGood([9, 10, 11, 9, 10, 11, 10, 10], DEFAULT_GOOD_RULE)).toBeGreaterThan(11);
    const scores = [9, 11];
    expect(thresholdFromGood(scores)).toBeCloseTo(10 + 3 * Math.SQRT2, 12);
    // Skewed small set with one outlier: mean + 3σ would be below the outlier → floor at the max.
    const skewed = [...Array(29).fill(1), 100];
    const sigmaOnly = thresholdFromGood(skewed, { kind: 'sigma', k: 3, floorAtMax: false });
    expect(sigmaOnly).toBeLessThan(100);
    expect(thresholdFromGood(skewed)).toBe(100);
  });

  it('quantile rule interpolates between order statistics (type 7)', () => {
    expect(thresholdFromGood([4, 1, 3, 2], { kind: 'quantile', q: 0.5 })).toBe(2.5);
    expect(thresholdFromGood([4, 1, 3, 2], { kind: 'quantile', q: 1 })).toBe(4);
    expect(thresholdFromGood([5], { kind: 'quantile', q: 0.99 })).toBe(5);
    expect(quantileSorted([0, 10], 0.99)).toBeCloseTo(9.9, 12);
  });

  it('refuses no scores, non-finite scores and bad rules', () => {
    expect(thrown(() => thresholdFromGood([])).code).toBe('THRESHOLD');
    expect(thrown(() => thresholdFromGood([1, Number.NaN])).code).toBe('THRESHOLD');
    expect(thrown(() => thresholdFromGood([1], { kind: 'quantile', q: 1.5 })).code).toBe('OPTIONS');
    expect(thrown(() => thresholdFromGood([1], { kind: 'sigma', k: -1 })).code).toBe('OPTIONS');
  });

  it('property: the default rule never rejects a good calibration part', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1e3, max: 1e3, noNaN: true }), { minLength: 1, maxLength: 60 }), (scores) => {
        const t = thresholdFromGood(scores);
        for (const s of scores) expect(s > t).toBe(false);
      }),
    );
  });
});

describe('pixelThresholdFromGood', () => {
  const maps = [Float32Array.from([1, 2, 3, 4]), Float32Array.from([5, 6, 7, 8])];

  it('pools all pixels of all maps', () => {
    expect(pixelThresholdFromGood(maps, { kind: 'quantile', q: 0.5 })).toBe(4.5);
    expect(pixelThresholdFromGood(maps, { kind: 'quantile', q: 1 })).toBe(8);
    expect(pixelThresholdFromGood([maps[0]!], { kind: 'quantile', q: 0.5 })).toBe(2.5);
  });

  it('sigma rule streams: mean + kσ over the pool, floored at the max', () => {
    // pool 1..8: mean 4.5, sample σ = sqrt(6) → 4.5 + 3·2.449 = 11.85 > 8.
    expect(pixelThresholdFromGood(maps, { kind: 'sigma', k: 3 })).toBeCloseTo(4.5 + 3 * Math.sqrt(6), 10);
    expect(pixelThresholdFromGood(maps, { kind: 'sigma', k: 0, floorAtMax: false })).toBeCloseTo(4.5, 10);
    expect(pixelThresholdFromGood(maps, { kind: 'sigma', k: 0 })).toBe(8);
  });

  it('subsamples huge pools with a stride and stays close to the exact quantile', () => {
    const big = Array.from({ length: 30 }, (_, k) => new Float32Array(65536).map((_, i) => ((i * 7919 + k * 104729) % 65536) / 65536));
    const exact = pixelThresholdFromGood(big, { kind: 'quantile', q: 0.99 });
    const sub = pixelThresholdFromGood(big, { kind: 'quantile', q: 0.99 }, 100_000);
    expect(exact).toBeCloseTo(0.99, 2);
    expect(Math.abs(sub - exact)).toBeLessThan(0.01);
  });

  it('refuses an empty pool', () => {
    expect(thrown(() => pixelThresholdFromGood([])).code).toBe('THRESHOLD');
  });
});

describe('f1AdaptiveThreshold', () => {
  it('finds a perfect separation and puts the cut halfway between the classes', () => {
    const r = f1AdaptiveThreshold([1, 2, 3, 10, 11, 12], [0, 0, 0, 1, 1, 1]);
    expect(r).toEqual({ threshold: 6.5, f1: 1, precision: 1, recall: 1 });
  });

  it('handles overlap and reports precision/recall at the best cut', () => {
    // scores:  1  2  3  4  5  6
    // labels:  0  1  0  1  1  0  → cutting between 3 and 4 gives tp 2, fp 1 (F1 0.667); between 1 and 2 tp 3, fp 2 (0.75)
    const r = f1AdaptiveThreshold([1, 2, 3, 4, 5, 6], [0, 1, 0, 1, 1, 0]);
    expect(r.f1).toBeCloseTo(0.75, 12);
    expect(r.threshold).toBe(1.5);
    expect(r.precision).toBeCloseTo(3 / 5, 12);
    expect(r.recall).toBe(1);
  });

  it('keeps tied scores on the same side of the cut', () => {
    // A good and a defective part with the same score 5: any cut includes both or neither.
    // Cut below 9: tp 1, fp 0 → F1 2/3. Cut below the 5s: tp 2, fp 1 → F1 0.8 (best), so the cut
    // goes between 1 and 5, never between the two 5s.
    const r = f1AdaptiveThreshold([1, 5, 5, 9], [0, 0, 1, 1]);
    expect(r.threshold).toBe(3);
    expect(r.f1).toBeCloseTo(0.8, 12);
    expect(r.precision).toBeCloseTo(2 / 3, 12);
  });

  it('places the cut below everything when predicting all as defective is best', () => {
    const r = f1AdaptiveThreshold([3, 3, 3], [1, 1, 0]);
    expect(r.threshold).toBeLessThan(3);
    expect(r.threshold).toBeGreaterThan(2.99);
    expect(r.f1).toBeCloseTo(0.8, 12);
  });

  it('throws a THRESHOLD error without positives and OPTIONS on length mismatch', () => {
    const e = thrown(() => f1AdaptiveThreshold([1, 2], [0, false]));
    expect(isPartscanError(e, 'THRESHOLD')).toBe(true);
    expect(e.message).toMatch(/at least one defective/);
    expect(thrown(() => f1AdaptiveThreshold([1, 2], [1])).code).toBe('OPTIONS');
    expect(thrown(() => f1AdaptiveThreshold([1, Number.POSITIVE_INFINITY], [1, 0])).code).toBe('THRESHOLD');
  });

  it('property: matches brute force over all cuts, and its threshold achieves the reported F1', () => {
    fc.assert(
      fc.property(
        fc
          .array(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.boolean()), { minLength: 1, maxLength: 40 })
          .filter((xs) => xs.some(([, l]) => l)),
        (pairs) => {
          const scores = pairs.map(([s]) => s / 2);
          const labels = pairs.map(([, l]) => (l ? 1 : 0));
          const r = f1AdaptiveThreshold(scores, labels);
          expect(r.f1).toBeCloseTo(bruteBestF1(scores, labels), 12);
          expect(f1At(scores, labels, r.threshold)).toBeCloseTo(r.f1, 12);
          expect(scores).not.toContain(r.threshold);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('is fast on a million scores', () => {
    const n = 1_000_000;
    const scores = new Float64Array(n).map((_, i) => Math.sin(i) * 10 + (i % 10 === 0 ? 5 : 0));
    const labels = Uint8Array.from({ length: n }, (_, i) => (i % 10 === 0 ? 1 : 0)) as unknown as ArrayLike<0 | 1>;
    const t0 = performance.now();
    const r = f1AdaptiveThreshold(scores, labels);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(r.f1).toBeGreaterThan(0.3);
  });
});

describe('pixelF1Threshold', () => {
  it('pools good maps as negatives and masked defect pixels as positives', () => {
    const good = [Float32Array.from([0.1, 0.2, 0.3, 0.2])];
    const defect = [Float32Array.from([0.2, 0.9, 0.8, 0.1])];
    const masks = [Uint8Array.from([0, 255, 1, 0])];
    const r = pixelF1Threshold(good, defect, masks);
    expect(r.f1).toBe(1);
    expect(r.threshold).toBeCloseTo((0.8 + 0.3) / 2, 6);
  });

  it('refuses masks of the wrong size and empty masks', () => {
    const good = [new Float32Array(4)];
    expect(thrown(() => pixelF1Threshold(good, [new Float32Array(4)], [new Uint8Array(3)])).code).toBe('MASK');
    expect(thrown(() => pixelF1Threshold(good, [new Float32Array(4)], [])).code).toBe('MASK');
    expect(thrown(() => pixelF1Threshold(good, [new Float32Array(4)], [new Uint8Array(4)])).code).toBe('THRESHOLD');
  });
});

describe('verdict', () => {
  it('is binary at 0.5 without a band (0.5 itself is OK)', () => {
    expect(verdict(0.5)).toBe('OK');
    expect(verdict(0.5000001)).toBe('NG');
    expect(verdict(0)).toBe('OK');
    expect(verdict(1)).toBe('NG');
    expect(verdict(Number.NaN)).toBe('NG');
  });

  it('has an UNCERTAIN band [low, high]', () => {
    const band = { low: 0.45, high: 0.55 };
    expect([0.2, 0.44, 0.45, 0.5, 0.55, 0.56, 0.9].map((s) => verdict(s, band))).toEqual([
      'OK',
      'OK',
      'UNCERTAIN',
      'UNCERTAIN',
      'UNCERTAIN',
      'NG',
      'NG',
    ]);
    expect(thrown(() => verdict(0.5, { low: 0.6, high: 0.7 })).code).toBe('OPTIONS');
  });

  it('property: monotone in the score (OK < UNCERTAIN < NG)', () => {
    const rank = { OK: 0, UNCERTAIN: 1, NG: 2 } as const;
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        fc.double({ min: 0.5, max: 1, noNaN: true }),
        (a, b, low, high) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          expect(rank[verdict(lo, { low, high })]).toBeLessThanOrEqual(rank[verdict(hi, { low, high })]);
          expect(rank[verdict(lo)]).toBeLessThanOrEqual(rank[verdict(hi)]);
        },
      ),
    );
  });
});

describe('selectThresholds with the F1 and good-only rules', () => {
  const goodScores = [10, 11, 12, 10.5, 11.5, 10, 11, 12, 10.5, 11.5];
  const goodMaps = goodScores.map((s) => Float32Array.from([s - 5, s - 4, s - 3, s]));
  const good = { imageScores: goodScores, mapMaxima: goodScores, mapMinima: goodScores.map((s) => s - 5), pixelMaps: goodMaps };

  it("'f1' uses F1-adaptive thresholds when defects (and masks) are given", () => {
    const defectScores = [20, 25, 30];
    const defectMaps = defectScores.map((s) => Float32Array.from([5, 6, s - 1, s]));
    const masks = defectScores.map(() => Uint8Array.from([0, 0, 1, 1]));
    const { thresholds, warnings } = selectThresholds({ good, defect: { imageScores: defectScores, pixelMaps: defectMaps, masks } }, { rule: 'f1' });
    expect(thresholds.method).toEqual({ image: 'f1-adaptive', pixel: 'f1-adaptive' });
    expect(thresholds.image).toBe(16); // between 12 and 20
    expect(thresholds.pixel).toBeCloseTo((12 + 19) / 2, 6); // between good max 12 and lowest defect pixel 19
    expect(thresholds.imageStats).toEqual({ min: 10, max: 30 });
    expect(thresholds.pixelStats).toEqual({ min: 5, max: 12 });
    expect(warnings.map((w) => w.code)).toEqual(['FEW_CALIBRATION_IMAGES']);
    expect(normalizeScore(16, imageNormalization(thresholds))).toBe(0.5);
    expect(thresholds.operatingPoint!.escape).toMatchObject({ rate: 0, defects: 3 });
  });

  it("partscan 0.1's good-only rule on image scores and map maxima, with a warning that says so", () => {
    const { thresholds, warnings } = selectThresholds({ good }, { rule: DEFAULT_GOOD_RULE });
    expect(thresholds.method).toEqual({ image: 'good-sigma', pixel: 'good-sigma' });
    expect(thresholds.image).toBeCloseTo(thresholdFromGood(goodScores), 12);
    expect(thresholds.pixel).toBeCloseTo(thresholdFromGood(good.mapMaxima), 12);
    expect(warnings.map((w) => w.code)).toContain('THRESHOLD_GOOD_ONLY');
  });

  it("'f1' without masks, or with empty masks, warns and sets the pixel threshold at the false-reject target", () => {
    const noMasks = selectThresholds({ good, defect: { imageScores: [30] } }, { rule: 'f1' });
    expect(noMasks.thresholds.method).toEqual({ image: 'f1-adaptive', pixel: 'false-reject' });
    expect(noMasks.warnings.map((w) => w.code)).toContain('PIXEL_THRESHOLD_GOOD_ONLY');
    const emptyMasks = selectThresholds({ good, defect: { imageScores: [30], pixelMaps: [new Float32Array(4)], masks: [new Uint8Array(4)] } }, { rule: 'f1' });
    expect(emptyMasks.thresholds.method.pixel).toBe('false-reject');
  });

  it('lets manual values win and stores the band', () => {
    const { thresholds } = selectThresholds({ good, defect: { imageScores: [30] } }, { manual: { image: 14, pixel: 9 }, band: { low: 0.4, high: 0.6 } });
    expect(thresholds).toMatchObject({ image: 14, pixel: 9, method: { image: 'manual', pixel: 'manual' }, band: { low: 0.4, high: 0.6 } });
  });

  it('refuses no good scores, and the false-reject rule on fewer than 3', () => {
    const none = thrown(() => selectThresholds({ good: { imageScores: [], mapMaxima: [], mapMinima: [] }, defect: { imageScores: [5] } }));
    expect(isPartscanError(none, 'THRESHOLD')).toBe(true);
    const two = thrown(() => selectThresholds({ good: { imageScores: [1, 2], mapMaxima: [1, 2], mapMinima: [0, 0] } }));
    expect(isPartscanError(two, 'THRESHOLD')).toBe(true);
    // F1 on two good scores works (no rates reported).
    const f1 = selectThresholds({ good: { imageScores: [1, 2], mapMaxima: [1, 2], mapMinima: [0, 0] }, defect: { imageScores: [5] } }, { rule: 'f1' });
    expect(f1.thresholds.operatingPoint).toBeUndefined();
  });
});

describe('one precision/recall sweep for eval and calibration', () => {
  it("eval's F1-max threshold is the F1-adaptive image threshold calibration stores for the same data", async () => {
    const { f1Max } = await import('../src/metrics/f1.js');
    const scores = fc.array(fc.double({ min: 0, max: 50, noNaN: true }), { minLength: 1, maxLength: 40 });
    fc.assert(
      fc.property(scores, scores, fc.boolean(), (good, defect, roundScores) => {
        // Rounded scores force ties across the classes.
        const [g, d] = roundScores ? [good.map(Math.round), defect.map(Math.round)] : [good, defect];
        const { thresholds } = selectThresholds({ good: { imageScores: g, mapMaxima: g, mapMinima: g }, defect: { imageScores: d } }, { rule: 'f1' });
        const evalCut = f1Max([...g, ...d], [...g.map(() => 0), ...d.map(() => 1)]);
        expect(thresholds.method.image).toBe('f1-adaptive');
        expect(thresholds.image).toBe(evalCut.threshold);
      }),
      { numRuns: 300 },
    );
  });
});
