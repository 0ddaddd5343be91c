/**
 * The per-position standardisation of the image score (src/postprocess/standardize.ts): quantiles per
 * position, the floor, and the leave-one-out standardised distances checked against recomputing the
 * quantiles without each image.
 */
import fc from 'fast-check';
import { quantileSeq } from 'mathjs';
import { describe, expect, it } from 'vitest';
import { fitStandardization, MIN_SPREAD, MIN_STANDARDIZE_IMAGES, STANDARDIZE_QUANTILE } from '../src/postprocess/standardize.js';

/** Centre and raw spread of one column by mathjs's type-7 quantiles (the float64 oracle). */
function columnStats(col: number[]): { c: number; s: number } {
  const c = quantileSeq(col, 0.5) as number;
  return { c, s: (quantileSeq(col, STANDARDIZE_QUANTILE) as number) - c };
}

function medianOf(v: number[]): number {
  return quantileSeq(v, 0.5) as number;
}

const matrices = fc
  .record({ n: fc.integer({ min: MIN_STANDARDIZE_IMAGES + 1, max: MIN_STANDARDIZE_IMAGES + 10 }), P: fc.integer({ min: 1, max: 7 }) })
  .chain(({ n, P }) =>
    fc.record({
      n: fc.constant(n),
      P: fc.constant(P),
      // Float32 values on a coarse grid: ties happen, as they do for quantised scores.
      values: fc.array(fc.integer({ min: 0, max: 400 }).map((i) => Math.fround(i / 16)), { minLength: n * P, maxLength: n * P }),
      keep: fc.array(fc.integer({ min: 0, max: 9 }).map((v) => v !== 0), { minLength: n, maxLength: n }), // ~10 % left out
    }),
  );

describe('fitStandardization', () => {
  it('centre = median, spread = q95 − median floored at the median spread; kept images standardised leave-one-out', () => {
    fc.assert(
      fc.property(matrices, ({ n, P, values, keep }) => {
        const kept = keep.map((k, i) => (k ? i : -1)).filter((i) => i >= 0);
        fc.pre(kept.length >= MIN_STANDARDIZE_IMAGES + 1);
        const dist = Float32Array.from(values);
        const { standardization, standardized } = fitStandardization(dist, n, P, (i) => keep[i]!);
        const col = (p: number, without = -1) => kept.filter((i) => i !== without).map((i) => dist[i * P + p]!);
        const raw = Array.from({ length: P }, (_, p) => columnStats(col(p)));
        const floor = Math.max(medianOf(raw.map((r) => r.s)), MIN_SPREAD);
        for (let p = 0; p < P; p++) {
          expect(standardization.centre[p]).toBeCloseTo(raw[p]!.c, 5);
          expect(standardization.spread[p]).toBeCloseTo(Math.max(raw[p]!.s, floor), 5);
        }
        for (let i = 0; i < n; i++) {
          for (let p = 0; p < P; p++) {
            const x = dist[i * P + p]!;
            const { c, s } = keep[i] ? columnStats(col(p, i)) : { c: standardization.centre[p]!, s: standardization.spread[p]! };
            const want = (x - c) / Math.max(s, floor, MIN_SPREAD);
            expect(standardized[i * P + p]).toBeCloseTo(want, 4);
          }
        }
      }),
      { seed: 28, numRuns: 150 },
    );
  });

  it('never leaves a spread at 0: constant positions take the floor, and an all-constant grid MIN_SPREAD', () => {
    const n = MIN_STANDARDIZE_IMAGES + 4;
    const P = 3;
    const dist = new Float32Array(n * P);
    for (let i = 0; i < n; i++) {
      dist[i * P] = 5; // constant position
      dist[i * P + 1] = i;
      dist[i * P + 2] = 2 * i;
    }
    const { standardization } = fitStandardization(dist, n, P);
    expect(Math.min(...standardization.spread)).toBeGreaterThan(0);
    expect(standardization.spread[0]).toBe(standardization.spread[1]); // floored at the median spread
    const flat = fitStandardization(new Float32Array(n * P).fill(2), n, P);
    expect(flat.standardization.spread.every((s) => s === Math.fround(MIN_SPREAD))).toBe(true);
    expect(flat.standardized.every(Number.isFinite)).toBe(true);
  });

  it(`refuses fewer than ${MIN_STANDARDIZE_IMAGES} kept images (THRESHOLD) and a wrong size (INVALID_TENSOR)`, () => {
    expect(() => fitStandardization(new Float32Array(19 * 2), 19, 2)).toThrow(expect.objectContaining({ code: 'THRESHOLD' }));
    expect(() => fitStandardization(new Float32Array(30 * 2), 30, 2, (i) => i < 19)).toThrow(expect.objectContaining({ code: 'THRESHOLD' }));
    expect(() => fitStandardization(new Float32Array(7), 4, 2)).toThrow(expect.objectContaining({ code: 'INVALID_TENSOR' }));
  });
});
