import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import { gaussianBlur, gaussianKernel1d, reflectIndex } from '../src/postprocess/blur.js';
import { normalizeMap, normalizeScore } from '../src/postprocess/normalize.js';
import { mapToOriginal, resizeBilinear } from '../src/postprocess/resize.js';

/** A w×h map with values from fast-check (finite, moderate range). */
const mapArb = (maxSide = 12) =>
  fc
    .record({ w: fc.integer({ min: 1, max: maxSide }), h: fc.integer({ min: 1, max: maxSide }) })
    .chain(({ w, h }) =>
      fc
        .array(fc.float({ min: -100, max: 100, noNaN: true, noDefaultInfinity: true }), {
          minLength: w * h,
          maxLength: w * h,
        })
        .map((v) => ({ w, h, data: Float32Array.from(v) })),
    );

function minMax(a: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < a.length; i++) {
    lo = Math.min(lo, a[i]!);
    hi = Math.max(hi, a[i]!);
  }
  return [lo, hi];
}

function expectClose(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(actual[i]).toBeCloseTo(expected[i]!, -Math.log10(tol));
}

describe('resizeBilinear (PyTorch bilinear, align_corners=False)', () => {
  it('upsamples 2×2 → 4×4 to the values PyTorch gives', () => {
    // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4), mode='bilinear', align_corners=False)
    const out = resizeBilinear(Float32Array.from([1, 2, 3, 4]), 2, 2, 4, 4);
    expectClose(out, [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4]);
  });

  it('clamps the source coordinate at 0 and the upper index at the edge (2 → 3)', () => {
    // src x = (d + 0.5)·2/3 − 0.5 = −1/6 (clamped to 0), 0.5, 7/6 (i1 clamped to 1).
    expectClose(resizeBilinear(Float32Array.from([0, 6]), 2, 1, 3, 1), [0, 3, 6]);
  });

  it('downsamples without antialiasing (4 → 2 averages pairs, 3 → 2 samples at 0.25 and 1.75)', () => {
    expectClose(resizeBilinear(Float32Array.from([0, 1, 2, 3]), 4, 1, 2, 1), [0.5, 2.5]);
    expectClose(resizeBilinear(Float32Array.from([0, 10, 20]), 3, 1, 2, 1), [2.5, 17.5]);
    // 8 → 2 without antialias only sees samples 1..2 and 5..6, not the spike at 0.
    expectClose(resizeBilinear(Float32Array.from([100, 1, 1, 0, 0, 0, 0, 0]), 8, 1, 2, 1), [1, 0]);
  });

  it('resizes rows and columns independently (non-square, separable)', () => {
    const src = Float32Array.from([0, 2, 4, 10, 12, 14]); // 3×2
    const out = resizeBilinear(src, 3, 2, 3, 4);
    // columns 0,2,4 | 10,12,14 upsampled 2 → 4: weights 0, .25, .75, 1
    expectClose(out, [0, 2, 4, 2.5, 4.5, 6.5, 7.5, 9.5, 11.5, 10, 12, 14]);
  });

  it('returns a copy for equal sizes and rejects wrong shapes', () => {
    const src = Float32Array.from([1, 2, 3, 4]);
    const out = resizeBilinear(src, 2, 2, 2, 2);
    expect(Array.from(out)).toEqual([1, 2, 3, 4]);
    expect(out).not.toBe(src);
    expect(() => resizeBilinear(src, 3, 2, 4, 4)).toThrow(/holds 4 values but 3×2 = 6/);
    expect(() => resizeBilinear(src, 2, 2, 0, 4)).toThrow(/not a positive integer size/);
  });

  it('property: a constant map stays constant at any size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 20 }),
        fc.float({ min: -1e3, max: 1e3, noNaN: true }),
        (sw, sh, dw, dh, c) => {
          const out = resizeBilinear(new Float32Array(sw * sh).fill(c), sw, sh, dw, dh);
          for (const v of out) expect(v).toBeCloseTo(Math.fround(c), 3);
        },
      ),
    );
  });

  it('property: output stays within the input min/max', () => {
    fc.assert(
      fc.property(mapArb(), fc.integer({ min: 1, max: 25 }), fc.integer({ min: 1, max: 25 }), ({ w, h, data }, dw, dh) => {
        const [lo, hi] = minMax(data);
        const out = resizeBilinear(data, w, h, dw, dh);
        const [olo, ohi] = minMax(out);
        expect(olo).toBeGreaterThanOrEqual(lo - 1e-4);
        expect(ohi).toBeLessThanOrEqual(hi + 1e-4);
      }),
    );
  });

  it('mapToOriginal maps a square grid onto a non-square original', () => {
    const out = mapToOriginal(Float32Array.from([1, 2, 3, 4]), 2, 4, 2);
    expect(out.length).toBe(8);
    expectClose(out, [1, 1.25, 1.75, 2, 3, 3.25, 3.75, 4]);
  });
});

describe('gaussianKernel1d', () => {
  it('has 2·⌊4σ+0.5⌋+1 taps, sums to 1, is symmetric and peaks in the middle', () => {
    expect(gaussianKernel1d(4).length).toBe(33);
    expect(gaussianKernel1d(1).length).toBe(9);
    expect(gaussianKernel1d(0.5).length).toBe(5);
    const k = gaussianKernel1d(4);
    expect(k.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    for (let i = 0; i < k.length; i++) expect(k[i]).toBeCloseTo(k[k.length - 1 - i]!, 7);
    // centre = 1 / Σ exp(−x²/32), x = −16..16
    let z = 0;
    for (let x = -16; x <= 16; x++) z += Math.exp(-(x * x) / 32);
    expect(k[16]).toBeCloseTo(1 / z, 7);
    expect(k[16]! / k[15]!).toBeCloseTo(Math.exp(1 / 32), 5);
  });

  it('a tiny sigma (2σ² underflows to 0) gives the identity kernel, not NaN (found by the model-header fuzz)', () => {
    for (const sigma of [5e-324, 1e-200, 1e-3]) expect(Array.from(gaussianKernel1d(sigma))).toEqual([1]);
  });

  it('rejects a non-positive sigma with a typed error', () => {
    expect(() => gaussianKernel1d(0)).toThrow(/sigma must be a positive number/);
    try {
      gaussianKernel1d(-1);
    } catch (e) {
      expect(isPartscanError(e, 'OPTIONS')).toBe(true);
    }
  });
});

describe('gaussianBlur (reflect padding)', () => {
  it('reflects without repeating the edge sample, also past one period', () => {
    expect([-3, -2, -1, 0, 1, 2, 3, 4, 5, 6].map((i) => reflectIndex(i, 4))).toEqual([3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    expect([-2, -1, 0, 1, 2, 3].map((i) => reflectIndex(i, 2))).toEqual([0, 1, 0, 1, 0, 1]);
    expect(reflectIndex(-7, 1)).toBe(0);
  });

  it('matches a hand computation at the border (reflect, not replicate or zero)', () => {
    const k = gaussianKernel1d(0.5); // 5 taps: k0 (centre), k1, k2
    const [k2, k1, k0] = [k[0]!, k[1]!, k[2]!];
    // 1-row impulse at x = 1 of width 5: out[0] sees x(−1) = x(1) (reflect) → 2·k1; out[1] sees
    // x(1) at the centre and x(−1) = x(1) two taps away → k0 + k2. (Replicate padding would give
    // out[0] = k1 and zero padding out[0] = k1 too; only reflect doubles it.)
    const out = gaussianBlur(Float32Array.from([0, 1, 0, 0, 0]), 5, 1, 0.5);
    expect(out[0]).toBeCloseTo(2 * k1, 6);
    expect(out[1]).toBeCloseTo(k0 + k2, 6);
    expect(out[2]).toBeCloseTo(k1, 6);
    expect(out[3]).toBeCloseTo(k2, 6);
    expect(out[4]).toBeCloseTo(0, 6); // x(5) = x(3) = 0 and x(6) = x(2) = 0
  });

  it('spreads an interior impulse into the separable kernel (mass preserved, σ = 4)', () => {
    const w = 41;
    const h = 41;
    const src = new Float32Array(w * h);
    src[20 * w + 20] = 1;
    const out = gaussianBlur(src, w, h);
    const k = gaussianKernel1d(4);
    let sum = 0;
    for (let i = 0; i < out.length; i++) sum += out[i]!;
    expect(sum).toBeCloseTo(1, 5);
    expect(out[20 * w + 20]).toBeCloseTo(k[16]! * k[16]!, 7);
    expect(out[(20 + 5) * w + 20 - 3]).toBeCloseTo(k[16 + 5]! * k[16 - 3]!, 7);
  });

  it('handles maps smaller than the kernel radius (reflecting repeatedly) and 1-pixel maps', () => {
    const two = gaussianBlur(Float32Array.from([0, 1, 1, 0]), 2, 2);
    for (const v of two) expect(v).toBeCloseTo(0.5, 2); // alternating columns/rows average out
    expect(Array.from(gaussianBlur(Float32Array.from([7]), 1, 1))).toEqual([7]);
  });

  it('property: a constant map is unchanged', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.float({ min: -1e3, max: 1e3, noNaN: true }),
        fc.double({ min: 0.3, max: 6, noNaN: true }),
        (w, h, c, sigma) => {
          const out = gaussianBlur(new Float32Array(w * h).fill(c), w, h, sigma);
          for (const v of out) expect(Math.abs(v - Math.fround(c))).toBeLessThanOrEqual(Math.abs(c) * 1e-6 + 1e-6);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('property: mirrored input gives mirrored output, and values stay within the input range', () => {
    fc.assert(
      fc.property(mapArb(16), fc.double({ min: 0.3, max: 4, noNaN: true }), ({ w, h, data }, sigma) => {
        const mirrored = new Float32Array(w * h);
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) mirrored[y * w + x] = data[y * w + (w - 1 - x)]!;
        const a = gaussianBlur(data, w, h, sigma);
        const b = gaussianBlur(mirrored, w, h, sigma);
        const [lo, hi] = minMax(data);
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            expect(a[y * w + x]).toBeCloseTo(b[y * w + (w - 1 - x)]!, 3);
            expect(a[y * w + x]).toBeGreaterThanOrEqual(lo - 1e-3);
            expect(a[y * w + x]).toBeLessThanOrEqual(hi + 1e-3);
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it('blurs a 256×256 map at σ = 4 quickly', () => {
    const src = new Float32Array(256 * 256).map((_, i) => (i * 2654435761) % 1000);
    const t0 = performance.now();
    gaussianBlur(src, 256, 256);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe('normalizeScore / normalizeMap', () => {
  const stats = { threshold: 10, min: 2, max: 22 };

  it('maps the threshold to 0.5 and one calibration span to a width of 1, clamped to 0..1', () => {
    expect(normalizeScore(10, stats)).toBe(0.5);
    expect(normalizeScore(15, stats)).toBeCloseTo(0.75, 12);
    expect(normalizeScore(6, stats)).toBeCloseTo(0.3, 12);
    expect(normalizeScore(100, stats)).toBe(1);
    expect(normalizeScore(-100, stats)).toBe(0);
    expect(Number.isNaN(normalizeScore(Number.NaN, stats))).toBe(true);
  });

  it('turns a degenerate calibration span into a monotone step around the threshold', () => {
    const flat = { threshold: 3, min: 3, max: 3 };
    expect([2.9, 3, 3.1].map((x) => normalizeScore(x, flat))).toEqual([0, 0.5, 1]);
    expect(Array.from(normalizeMap([2, 3, 4], flat))).toEqual([0, 0.5, 1]);
  });

  it('rejects broken statistics with a THRESHOLD error', () => {
    expect(() => normalizeScore(1, { threshold: Number.NaN, min: 0, max: 1 })).toThrow(/Invalid normalisation/);
    expect(() => normalizeMap([1], { threshold: 0, min: 2, max: 1 })).toThrow(/min ≤ max/);
  });

  it('normalizeMap returns a new Float32Array with the same values as normalizeScore', () => {
    const map = Float32Array.from([2, 10, 15, 30]);
    const out = normalizeMap(map, stats);
    expect(out).not.toBe(map);
    expect(Array.from(map)).toEqual([2, 10, 15, 30]);
    expect(Array.from(out)).toEqual([0.1, 0.5, 0.75, 1].map(Math.fround));
  });

  it('property: monotone non-decreasing and within 0..1', () => {
    fc.assert(
      fc.property(
        fc.double({ min: -1e4, max: 1e4, noNaN: true }),
        fc.double({ min: -1e4, max: 1e4, noNaN: true }),
        fc.double({ min: -1e3, max: 1e3, noNaN: true }),
        fc.double({ min: 0, max: 1e3, noNaN: true }),
        fc.double({ min: -1e3, max: 1e3, noNaN: true }),
        (a, b, min, span, threshold) => {
          const s = { threshold, min, max: min + span };
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          const nlo = normalizeScore(lo, s);
          const nhi = normalizeScore(hi, s);
          expect(nlo).toBeLessThanOrEqual(nhi);
          expect(nlo).toBeGreaterThanOrEqual(0);
          expect(nhi).toBeLessThanOrEqual(1);
        },
      ),
    );
  });
});

describe('upsample + blur as an ONNX graph (scoring and export)', () => {
  it('equals the JS reference (resizeBilinear + gaussianBlur), applies √max(0, d²), and gives the standardised image score', async () => {
    const { BlurredMaxSession, UpsampleBlurSession } = await import('../src/postprocess/upsample-blur-graph.js');
    const maxOf = (a: ArrayLike<number>): number => Array.prototype.reduce.call(a, (m: number, v: number) => Math.max(m, v), -Infinity) as number;
    for (const [gw, gh, S] of [
      [56, 56, 224],
      [14, 10, 64],
      [4, 3, 12], // smaller than the 33-tap kernel: periodic reflection, as the JS blur does
    ] as const) {
      const P = gw * gh;
      // A per-position standardisation: centres and (positive) spreads that vary over the grid.
      const centre = Float32Array.from({ length: P }, (_, p) => 1 + (p % 7) / 3);
      const spread = Float32Array.from({ length: P }, (_, p) => 0.5 + (p % 5) / 4);
      const session = await UpsampleBlurSession.create(gw, gh, S, 4, 1, { centre, spread });
      const maxSession = await BlurredMaxSession.create(gw, gh, S, 4, 1);
      try {
        const n = 3;
        const d2 = new Float32Array(n * P);
        for (let i = 0; i < d2.length; i++) d2[i] = ((Math.sin(i * 12.9898) * 43758.5453) % 1) * 50 - 5; // some negatives
        const { maps, scores } = await session.run(d2, n);
        expect(maps.length).toBe(n * S * S);
        expect(scores!.length).toBe(n);
        for (let k = 0; k < n; k++) {
          const g = Float32Array.from(d2.subarray(k * P, (k + 1) * P), (v) => Math.sqrt(Math.max(0, v)));
          const ref = gaussianBlur(resizeBilinear(g, gw, gh, S, S), S, S, 4);
          let maxErr = 0;
          let maxRef = 0;
          for (let i = 0; i < ref.length; i++) {
            maxErr = Math.max(maxErr, Math.abs(maps[k * S * S + i]! - ref[i]!));
            maxRef = Math.max(maxRef, Math.abs(ref[i]!));
          }
          expect(maxErr / maxRef).toBeLessThan(1e-5);
          // The standardised image score: max of the blurred map of (distance − centre) / spread.
          const z = Float32Array.from(g, (v, p) => (v - centre[p]!) / spread[p]!);
          const zRef = maxOf(gaussianBlur(resizeBilinear(z, gw, gh, S, S), S, S, 4));
          expect(Math.abs(scores![k]! - zRef)).toBeLessThan(1e-5 * Math.max(1, Math.abs(zRef)));
          // The blurred maximum of any grid (what the fit uses for its leave-one-out standardised scores).
          const [viaMax] = await maxSession.run(z, 1);
          expect(Math.abs(viaMax! - zRef)).toBeLessThan(1e-5 * Math.max(1, Math.abs(zRef)));
        }
      } finally {
        await session.dispose();
        await maxSession.dispose();
      }
    }
  });
});

describe('resizeNearest', () => {
  it('upsampling by an integer factor repeats each pixel as a block; downsampling back restores the mask', async () => {
    const { resizeNearest } = await import('../src/postprocess/resize.js');
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (w, h, k, seed) => {
        const mask = Uint8Array.from({ length: w * h }, (_, i) => ((seed >>> (i % 31)) & 1) * (1 + (i % 3)));
        const up = resizeNearest(mask, w, h, w * k, h * k);
        for (let y = 0; y < h * k; y++) for (let x = 0; x < w * k; x++) expect(up[y * w * k + x]).toBe(mask[Math.floor(y / k) * w + Math.floor(x / k)]);
        expect(resizeNearest(up, w * k, h * k, w, h)).toEqual(mask);
        expect(resizeNearest(mask, w, h, w, h)).toBe(mask);
      }),
      { numRuns: 200 },
    );
  });
});
