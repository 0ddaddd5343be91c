/**
 * The outlier rule behind the contamination check (leave-one-out training scores) and the calibration
 * outlier exclusion: a robust z on log scores (z > 5, or z > 3 with a gap ≥ 1.5 to the next score), so
 * that a right-skewed but clean score sample is not flagged while a planted defect still is.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CONTAMINATION_Z, contaminationSuspects, logRobustZ, scoreOutliers } from '../src/advanced.js';
import { robustZ } from '../src/guards/robust-stats.js';

/** Seeded log-normal sample: exp(mu + sigma·N(0,1)), Box–Muller on a mulberry32 stream. */
function lognormal(n: number, seed: number, mu: number, sigma: number): number[] {
  let a = seed >>> 0;
  const u = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.exp(mu + sigma * Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u())));
  return out;
}

const count = (xs: boolean[]): number => xs.filter(Boolean).length;

describe('contamination outlier rule (robust z on log scores, plus a gap rule)', () => {
  it('flags ≈0 images in clean log-normal samples of 200 and 25, whatever the level and skew', () => {
    // Deterministic seeds. A clean sample may rarely show a gap-separated top score, more often in small
    // samples where the MAD is noisy (simulated: ≈0.01 flags per sample of 200, ≈0.05 per 25).
    for (const n of [200, 25]) {
      let flags = 0;
      for (let seed = 1; seed <= 300; seed++) {
        const k = count(scoreOutliers(lognormal(n, seed * 7919, (seed % 6) - 1, 0.05 + (seed % 8) * 0.1)).outlier);
        expect(k).toBeLessThanOrEqual(n === 200 ? 1 : 3);
        flags += k;
      }
      expect(flags / 300).toBeLessThan(n === 200 ? 0.03 : 0.12);
    }
  });

  it('where the raw-scale robust z over-flags the same skewed sample', () => {
    // Skewed like measured leave-one-out scores (bottle: median 13, 90th percentile ~25, max of the good bulk ~48).
    const xs = lognormal(200, 12345, Math.log(13), 0.45);
    expect(count(robustZ(xs).map((z) => z > CONTAMINATION_Z))).toBeGreaterThan(0);
    expect(count(scoreOutliers(xs).outlier)).toBe(0);
  });

  it('still flags a clearly planted outlier (a defect among the good images)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.double({ min: 0.05, max: 0.5, noNaN: true }), fc.integer({ min: 0, max: 199 }), (seed, sigma, at) => {
        const xs = lognormal(200, seed, Math.log(13), sigma);
        // 10 spreads of the log scores above the median: far outside any clean sample.
        xs[at] = 13 * Math.exp(10 * sigma);
        const { outlier, z } = scoreOutliers(xs);
        expect(outlier[at]).toBe(true);
        expect(z[at]!).toBeGreaterThan(CONTAMINATION_Z);
        expect(count(outlier)).toBeLessThanOrEqual(2); // rarely, a clean sample's own gap-separated top score
      }),
      { numRuns: 100 },
    );
  });

  it('concrete cases: a small training set with one broken part; identical scores; zero scores', () => {
    const scores = [11.2, 12.9, 10.4, 13.8, 12.1, 11.7, 14.6, 12.4, 10.9, 13.1, 15.2, 12.0, 95.0];
    const { outlier } = scoreOutliers(scores);
    expect(outlier.map((o, i) => (o ? i : -1)).filter((i) => i >= 0)).toEqual([12]);
    expect(scoreOutliers([5, 5, 5, 5, 5]).outlier).toEqual([false, false, false, false, false]);
    expect(logRobustZ([0, 1, 1, 1, 1]).every(Number.isFinite)).toBe(true);
  });

  it('is scale-free: multiplying all scores by a constant changes nothing', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0.1, max: 1000, noNaN: true }), { minLength: 5, maxLength: 60 }), fc.double({ min: 1e-3, max: 1e3, noNaN: true }), (xs, k) => {
        const a = logRobustZ(xs);
        const b = logRobustZ(xs.map((x) => x * k));
        a.forEach((z, i) => expect(b[i]!).toBeCloseTo(z, 6));
      }),
    );
  });

  it('a defect in a small tight set is caught by its gap; the continuous tail of a large set is not', () => {
    // Measured leave-one-out scores (fit-guards setup: 24 good bottle images + broken_large/000, d=10, 128 px).
    const small = [6.8, 4.7, 6.1, 4.3, 7.5, 22.7, 6.3, 4.6, 5.7, 4.3, 5.3, 5.2, 5.9, 4.5, 4.2, 6.8, 4.8, 5.5, 5.5, 6.0, 4.8, 7.4, 5.5, 5.2, 11.6];
    const s = scoreOutliers(small);
    expect(s.z[24]!).toBeLessThan(CONTAMINATION_Z); // the broken part is only ~2× the median...
    expect(s.outlier.map((o, i) => (o ? i : -1)).filter((i) => i >= 0)).toEqual([5, 24]); // ...but stands apart
    // A long continuous tail (log z 3.2 … 4.6 in steps of 0.2) above a log-normal bulk: no gap ≥ 1.5
    // and nothing above 5, so nothing is flagged (the raw-scale z would flag all eight).
    const bulk = lognormal(190, 99, Math.log(13), 0.3);
    const zb = logRobustZ(bulk);
    const [i0, i1] = [0, 1];
    const sd = (Math.log(bulk[i0]!) - Math.log(bulk[i1]!)) / (zb[i0]! - zb[i1]!);
    const median = Math.log(bulk[i0]!) - sd * zb[i0]!;
    const tail = Array.from({ length: 8 }, (_, i) => Math.exp(median + sd * (3.2 + 0.2 * i)));
    const pooled = scoreOutliers([...bulk.filter((_, i) => zb[i]! < 3), ...tail]);
    expect(Math.max(...pooled.z)).toBeLessThan(CONTAMINATION_Z);
    expect(count(pooled.outlier)).toBe(0);
    expect(count(robustZ([...bulk.filter((_, i) => zb[i]! < 3), ...tail]).map((v) => v > CONTAMINATION_Z))).toBeGreaterThan(0);
  });

  it('contaminationSuspects names the outliers, highest score first, with their z', () => {
    const files = Array.from({ length: 30 }, (_, i) => `img-${i}.png`);
    const scores = lognormal(30, 3, Math.log(13), 0.2);
    scores[4] = 400;
    scores[17] = 250;
    const s = contaminationSuspects(files, scores);
    expect(s.map((x) => x.file)).toEqual(['img-4.png', 'img-17.png']);
    expect(s[0]!.score).toBe(400);
    expect(s.every((x) => x.z > CONTAMINATION_Z)).toBe(true);
  });
});
