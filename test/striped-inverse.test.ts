/**
 * The compact forms of the inverse covariances: float16 with per-row power-of-two scales (the file),
 * and the symmetric stripes (memory and scoring). Property tests against plain references.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { fromHalfBits, fromScaledHalfRow, toHalfBits, toScaledHalfRow } from '../src/util/float16.js';
import { StripedInverse, stripeLayout, stripeSize } from '../src/stats/striped-inverse.js';
import { StatsKernels } from '../src/stats/ort-kernels.js';
import { packedSize, unpackSymmetric } from '../src/stats/gaussian-stats.js';

const f32 = (x: number) => Math.fround(x);

describe('float16', () => {
  it('every half value decodes and encodes back to its own bits', () => {
    for (let h = 0; h < 65536; h++) {
      const v = fromHalfBits(h);
      if (Number.isNaN(v)) expect((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0).toBe(true);
      else expect(toHalfBits(v)).toBe(h);
    }
    expect(fromHalfBits(0x3c00)).toBe(1);
    expect(fromHalfBits(0x7bff)).toBe(65504);
    expect(fromHalfBits(0x0001)).toBe(2 ** -24);
    expect(Object.is(fromHalfBits(0x8000), -0)).toBe(true);
  });

  it('rounds float32 to the nearest half, ties to even, overflow to ±Infinity', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (x) => {
        const h = toHalfBits(x);
        const v = fromHalfBits(h);
        if (Math.abs(x) >= 65520) {
          expect(v).toBe(x > 0 ? Infinity : -Infinity);
          return;
        }
        // No half value lies closer to x (neighbours by bit pattern, same sign).
        const err = Math.abs(v - x);
        for (const n of [h - 1, h + 1]) {
          if ((n & 0x7fff) > 0x7bff || n < 0 || (n & 0x8000) !== (h & 0x8000)) continue;
          const other = Math.abs(fromHalfBits(n) - x);
          expect(err).toBeLessThanOrEqual(other);
          if (err === other) expect(h & 1).toBe(0);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('scaled rows: within a half ulp of each value, any magnitude; re-encoding decoded values gives the same bits', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -60, max: 60 }),
        fc.array(fc.float({ min: -1, max: 1, noNaN: true }), { minLength: 1, maxLength: 40 }),
        (e, xs) => {
          const src = Float32Array.from(xs, (x) => f32(x * 2 ** e));
          const half = new Uint16Array(src.length);
          const scale = toScaledHalfRow(src, 0, src.length, half, 0);
          expect(Number.isInteger(Math.log2(scale))).toBe(true);
          const out = new Float32Array(src.length);
          fromScaledHalfRow(half, 0, src.length, scale, out, 0);
          const max = src.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
          // Relative to each value for normal halves; the row's scale bounds the rest (tiny values), and
          // rows whose largest value is below 2^-100 lose what lies below 2^-124 (the scales stay normal floats).
          src.forEach((x, i) => expect(Math.abs(out[i]! - x)).toBeLessThanOrEqual(Math.max(Math.abs(x) * 2 ** -11, max * 2 ** -25, 2 ** -124)));
          const again = new Uint16Array(src.length);
          expect(toScaledHalfRow(out, 0, out.length, again, 0)).toBe(scale);
          expect(again).toEqual(half);
        },
      ),
      { numRuns: 300 },
    );
    const half = new Uint16Array(2);
    expect(toScaledHalfRow(Float32Array.of(0, 0), 0, 2, half, 0)).toBe(2 ** -100); // any scale fits an all-zero row: the largest
    const big = toScaledHalfRow(Float32Array.of(1e6, -3), 0, 2, half, 0);
    expect(fromHalfBits(half[0]!) * big).toBe(999936); // 1e6 to 11 significant bits
  });
});

/** A random symmetric matrix set [P, d, d] as packed lower triangles, entries of mixed magnitude. */
const packedArb = (P: number, d: number) =>
  fc
    .array(fc.float({ min: -50, max: 50, noNaN: true, noDefaultInfinity: true }), { minLength: P * packedSize(d), maxLength: P * packedSize(d) })
    .map((xs) => Float32Array.from(xs));

describe('StripedInverse', () => {
  it('lays out k ≤ 10 stripes covering the rows, about (k+1)/2k of d² per position', () => {
    for (const d of [1, 7, 16, 17, 24, 100, 152, 550]) {
      const s = stripeLayout(d);
      expect(s.length).toBeLessThanOrEqual(10);
      expect(s[0]!.r0).toBe(0);
      expect(s.at(-1)!.r1).toBe(d);
      for (let a = 1; a < s.length; a++) expect(s[a]!.r0).toBe(s[a - 1]!.r1);
      const per = s.reduce((n, x) => n + stripeSize(x), 0);
      expect(per).toBeGreaterThanOrEqual(packedSize(d));
      expect(per).toBeLessThanOrEqual(d * d);
      if (d >= 152) expect(per / (d * d)).toBeLessThan(0.56);
    }
  });

  it('packed → stripes → packed and dense are exact, for any d', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }).chain((d) => fc.tuple(fc.constant(d), packedArb(2, d))),
        ([d, packed]) => {
          const s = StripedInverse.fromPacked(packed, 2, d);
          // Bit for bit, signed zeros included.
          s.toPacked().forEach((v, i) => expect(Object.is(v, packed[i])).toBe(true));
          const dense = new Float32Array(d * d);
          const want = new Float32Array(d * d);
          for (let p = 0; p < 2; p++) {
            s.writeDense(p, dense, 0);
            // (unpackSymmetric adds a zero diagonal term, which turns −0 into +0: compare values.)
            unpackSymmetric(packed, p * packedSize(d), d, want, 0);
            dense.forEach((v, i) => expect(v === want[i]).toBe(true));
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('decoding float16 triangles straight into stripes equals decoding then striping, bit for bit', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: -90, max: 90 }),
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 1 }),
        (d, k, [seed]) => {
          const T = packedSize(d);
          // Every kind of half: zeros, subnormals, normals, ±Infinity (NaN left out: NaN ≠ NaN).
          const half = Uint16Array.from({ length: T }, (_, i) => {
            const h = ((seed! * 2654435761 + i * 40503) >>> 7) & 0xffff;
            return (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 ? h & 0xfc00 : h;
          });
          const scale = 2 ** k;
          const fast = new StripedInverse(1, d);
          fast.setPositionFromHalf(0, half, 0, scale, fromHalfBits);
          const row = new Float32Array(T);
          fromScaledHalfRow(half, 0, T, scale, row, 0);
          const ref = StripedInverse.fromPacked(row, 1, d);
          fast.data.forEach((x, a) => x.forEach((v, i) => expect(Object.is(v, ref.data[a]![i])).toBe(true)));
        },
      ),
      { numRuns: 200 },
    );
  });

  describe('Mahalanobis through the stripes', () => {
    let kernels: Map<number, StatsKernels>;
    beforeAll(() => {
      kernels = new Map();
    });
    afterAll(async () => {
      for (const k of kernels.values()) await k.dispose();
    });

    it('equals (x − μ)ᵀ A (x − μ) of the dense matrix (float64 reference) for any d and N', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(1, 5, 16, 17, 33, 64),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 0, max: 1e6 }),
          async (d, n, P, seed) => {
            let k = kernels.get(d);
            if (!k) kernels.set(d, (k = await StatsKernels.create(d, 1)));
            const rnd = (i: number) => Math.sin(seed * 0.001 + i * 12.9898) * 2;
            const T = packedSize(d);
            const packed = Float32Array.from({ length: P * T }, (_, i) => rnd(i));
            const x = Float32Array.from({ length: P * n * d }, (_, i) => rnd(i + 7e5));
            const mean = Float32Array.from({ length: P * d }, (_, i) => rnd(i + 9e5));
            const got = await k.mahalanobisSquared(x, mean, StripedInverse.fromPacked(packed, P, d), 0, P, n);
            const A = new Float32Array(d * d);
            for (let p = 0; p < P; p++) {
              unpackSymmetric(packed, p * T, d, A, 0);
              for (let m = 0; m < n; m++) {
                const o = (p * n + m) * d;
                let want = 0;
                let scale = 0;
                for (let i = 0; i < d; i++) {
                  for (let j = 0; j < d; j++) {
                    const t = (x[o + i]! - mean[p * d + i]!) * A[i * d + j]! * (x[o + j]! - mean[p * d + j]!);
                    want += t;
                    scale += Math.abs(t);
                  }
                }
                // Float32 sums in another order: error relative to the sum of |terms|.
                expect(Math.abs(got[p * n + m]! - want)).toBeLessThanOrEqual(1e-5 * scale + 1e-6);
              }
            }
          },
        ),
        { numRuns: 40 },
      );
    });
  });
});
