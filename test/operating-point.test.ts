/**
 * The operating point (src/postprocess/operating-point.ts): thresholds at a stated false-reject rate,
 * the review band, labelled defects (escape interval, F1), manual thresholds, and hostile options.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clopperPearson } from '../src/metrics/intervals.js';
import { normalizeScore } from '../src/postprocess/normalize.js';
import { selectThresholds, type CalibrationScores } from '../src/postprocess/operating-point.js';
import { tailExceedance, fitExponentialTail } from '../src/postprocess/tail-model.js';
import { imageNormalization, verdict } from '../src/postprocess/thresholds.js';

/** Good scores 1..n (a uniform body) with maps whose maxima are twice the score. */
function goodScores(n: number, offset = 0): CalibrationScores['good'] {
  const imageScores = Float64Array.from({ length: n }, (_, i) => offset + 1 + i / n);
  return { imageScores, mapMaxima: imageScores.map((s) => 2 * s), mapMinima: imageScores.map(() => 0.1) };
}

describe('selectThresholds (false-reject rule)', () => {
  it('sets the image threshold where the tail of the good scores estimates the target rate, and records it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 10, max: 500 }), fc.double({ min: 0.001, max: 0.2, noNaN: true }), (n, target) => {
        const good = goodScores(n);
        const { thresholds } = selectThresholds({ good }, { falseRejectTarget: target });
        const op = thresholds.operatingPoint!;
        expect(thresholds.method).toEqual({ image: 'false-reject', pixel: 'false-reject' });
        expect(op.falseRejectTarget).toBe(target);
        expect(op.image.rate).toBeCloseTo(tailExceedance(fitExponentialTail(good.imageScores), thresholds.image), 12);
        // The estimate meets the target (the body's empirical rate may undershoot by one image).
        expect(op.image.rate).toBeLessThanOrEqual(target + 1e-9);
        expect(op.image.rate).toBeGreaterThanOrEqual(Math.min(target, 0.2) - 1 / n - 1e-9);
        expect(op.image.upper95).toBeGreaterThanOrEqual(op.image.rate);
        expect(op.pixel.rate).toBeLessThanOrEqual(target + 1e-9);
        expect(op.goodScores.used).toBe(n);
        // A lower target never lowers the threshold.
        const stricter = selectThresholds({ good }, { falseRejectTarget: target / 2 }).thresholds;
        expect(stricter.image).toBeGreaterThanOrEqual(thresholds.image);
      }),
      { seed: 22, numRuns: 100 },
    );
  });

  it('with labelled defects: the same threshold (fewest escapes at the target) and the escape rate with its Clopper–Pearson interval', () => {
    const good = goodScores(200);
    const alone = selectThresholds({ good }).thresholds;
    const defects = Float64Array.from({ length: 40 }, (_, i) => 1.5 + i / 10);
    const { thresholds } = selectThresholds({ good, defect: { imageScores: defects } });
    expect(thresholds.image).toBe(alone.image);
    const escapes = defects.filter((d) => !(d > thresholds.image)).length;
    const ci = clopperPearson(escapes, 40);
    expect(thresholds.operatingPoint!.escape).toEqual({ rate: ci.rate, lower95: ci.lower, upper95: ci.upper, defects: 40 });
    expect(thresholds.imageStats.max).toBe(defects[39]);
  });

  it("'f1' picks the F1-best cut on labelled defects; without defects it is an OPTIONS error", () => {
    const good = goodScores(50);
    const defects = Float64Array.from({ length: 20 }, (_, i) => 2.05 + i);
    const f1 = selectThresholds({ good, defect: { imageScores: defects } }, { rule: 'f1' }).thresholds;
    expect(f1.method.image).toBe('f1-adaptive');
    expect(f1.image).toBeGreaterThan(good.imageScores[49]! - 1e-9);
    expect(f1.image).toBeLessThan(defects[0]!);
    expect(() => selectThresholds({ good }, { rule: 'f1' })).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
  });

  it('the review band makes parts between the band rate and the target UNCERTAIN', () => {
    const good = goodScores(300);
    const { thresholds } = selectThresholds({ good }, { falseRejectTarget: 0.01, reviewBand: 0.05 });
    const band = thresholds.band!;
    const low = thresholds.operatingPoint!.reviewBand!.threshold;
    expect(low).toBeLessThan(thresholds.image);
    expect(band.high).toBe(0.5);
    const norm = (x: number) => normalizeScore(x, imageNormalization(thresholds));
    expect(verdict(norm((low + thresholds.image) / 2), band)).toBe('UNCERTAIN');
    expect(verdict(norm(low - 0.01), band)).toBe('OK');
    expect(verdict(norm(thresholds.image + 0.01), band)).toBe('NG');
  });

  it('manual thresholds win, and the rates at them are still estimated', () => {
    const good = goodScores(100);
    const { thresholds } = selectThresholds({ good }, { manual: { image: 1.5, pixel: 100 } });
    expect(thresholds.image).toBe(1.5);
    expect(thresholds.method).toEqual({ image: 'manual', pixel: 'manual' });
    expect(thresholds.operatingPoint!.image.rate).toBeCloseTo(0.5, 1);
    expect(thresholds.operatingPoint!.pixel.rate).toBeLessThan(1e-12);
  });

  it('refuses hostile options with typed OPTIONS errors before choosing anything', () => {
    const good = goodScores(30);
    const bad: Parameters<typeof selectThresholds>[1][] = [
      { falseRejectTarget: 0 },
      { falseRejectTarget: 1 },
      { falseRejectTarget: -0.01 },
      { falseRejectTarget: Number.NaN },
      { falseRejectTarget: Infinity },
      { reviewBand: 0.005 }, // below the default 1 % target
      { falseRejectTarget: 0.05, reviewBand: 0.05 },
      { reviewBand: 1.5 },
      { manual: { image: Number.NaN } },
      { band: { low: 0.6, high: 0.7 } },
    ];
    for (const opts of bad) expect(() => selectThresholds({ good }, opts), JSON.stringify(opts)).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
  });

  it('refuses empty or non-finite score sets with THRESHOLD', () => {
    const empty = { imageScores: [], mapMaxima: [], mapMinima: [] };
    expect(() => selectThresholds({ good: empty })).toThrow(expect.objectContaining({ code: 'THRESHOLD' }));
    const nan = { ...goodScores(10), imageScores: [1, 2, Number.NaN, 4, 5, 6, 7, 8, 9, 10] };
    expect(() => selectThresholds({ good: nan })).toThrow(expect.objectContaining({ code: 'THRESHOLD' }));
  });

  it('warns when the good scores are too few for the target', () => {
    const few = selectThresholds({ good: goodScores(12) });
    expect(few.warnings.map((w) => w.code)).toContain('FEW_CALIBRATION_IMAGES');
    const many = selectThresholds({ good: goodScores(2000) });
    expect(many.warnings.map((w) => w.code)).not.toContain('FEW_CALIBRATION_IMAGES');
  });
});
