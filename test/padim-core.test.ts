import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { GaussianAccumulator, fitGaussiansLowRank, lowRankSampleLimit, packedSize, unpackSymmetric } from '../src/stats/gaussian-stats.js';
import { StripedInverse } from '../src/stats/striped-inverse.js';
import { StatsKernels } from '../src/stats/ort-kernels.js';
import { gatherEmbedding, selectChannels, channelSources } from '../src/embedding/embedding.js';
import type { Tensor4D } from '../src/types.js';

let kernels: StatsKernels;
const D = 6;
beforeAll(async () => {
  kernels = await StatsKernels.create(D, 1);
});
afterAll(async () => {
  await kernels.dispose();
});

/** Reference statistics in float64, straight from the definition. */
function referenceStats(samples: number[][][], P: number, d: number) {
  const n = samples.length;
  const mean = new Float64Array(P * d);
  const cov = new Float64Array(P * d * d);
  for (let p = 0; p < P; p++) {
    for (const s of samples) for (let j = 0; j < d; j++) mean[p * d + j]! += s[p]![j]! / n;
    for (const s of samples)
      for (let i = 0; i < d; i++)
        for (let j = 0; j < d; j++)
          cov[(p * d + i) * d + j]! += ((s[p]![i]! - mean[p * d + i]!) * (s[p]![j]! - mean[p * d + j]!)) / (n - 1);
  }
  return { mean, cov };
}

function toBatch(samples: number[][][], P: number, d: number): Float32Array {
  const B = samples.length;
  const x = new Float32Array(P * B * d);
  for (let p = 0; p < P; p++) for (let b = 0; b < B; b++) for (let j = 0; j < d; j++) x[(p * B + b) * d + j] = samples[b]![p]![j]!;
  return x;
}

const sampleArb = (P: number, d: number) =>
  fc.array(fc.array(fc.array(fc.double({ min: -5, max: 5, noNaN: true }), { minLength: d, maxLength: d }), { minLength: P, maxLength: P }), {
    minLength: 3,
    maxLength: 12,
  });

describe('streaming Gaussian statistics', () => {
  it('streaming fit in any batch split equals the batch (float64) fit', async () => {
    const P = 3;
    await fc.assert(
      fc.asyncProperty(sampleArb(P, D), fc.integer({ min: 1, max: 5 }), async (samples, step) => {
        const acc = new GaussianAccumulator(P, D);
        for (let i = 0; i < samples.length; i += step) {
          const part = samples.slice(i, i + step);
          await acc.add(toBatch(part, P, D), part.length, kernels);
        }
        const ref = referenceStats(samples, P, D);
        expect(acc.count).toBe(samples.length);
        for (let k = 0; k < ref.mean.length; k++) expect(acc.mean[k]).toBeCloseTo(ref.mean[k]!, 4);
        const full = new Float32Array(D * D);
        for (let p = 0; p < P; p++) {
          unpackSymmetric(acc.m2, p * packedSize(D), D, full, 0, 1 / (samples.length - 1));
          for (let k = 0; k < D * D; k++) expect(Math.abs(full[k]! - ref.cov[p * D * D + k]!)).toBeLessThan(1e-3 * (1 + Math.abs(ref.cov[p * D * D + k]!)));
        }
      }),
      { numRuns: 25 },
    );
  });

  it('is invariant to the order of training images', async () => {
    const P = 2;
    await fc.assert(
      fc.asyncProperty(sampleArb(P, D), async (samples) => {
        const a = new GaussianAccumulator(P, D);
        await a.add(toBatch(samples, P, D), samples.length, kernels);
        const b = new GaussianAccumulator(P, D);
        const rev = [...samples].reverse();
        for (const s of rev) await b.add(toBatch([s], P, D), 1, kernels);
        for (let k = 0; k < a.mean.length; k++) expect(a.mean[k]).toBeCloseTo(b.mean[k]!, 4);
        for (let k = 0; k < a.m2.length; k++) expect(Math.abs(a.m2[k]! - b.m2[k]!)).toBeLessThan(1e-3 * (1 + Math.abs(a.m2[k]!)));
      }),
      { numRuns: 15 },
    );
  });

  it('covariance + εI is symmetric positive definite, its inverse is symmetric, Mahalanobis ≥ 0 and 0 at the mean', async () => {
    const P = 2;
    await fc.assert(
      fc.asyncProperty(sampleArb(P, D), async (samples) => {
        const acc = new GaussianAccumulator(P, D);
        await acc.add(toBatch(samples, P, D), samples.length, kernels);
        const inv = await acc.inverseCovariances(kernels, 0.01);
        const full = new Float32Array(P * D * D);
        for (let p = 0; p < P; p++) unpackSymmetric(inv, p * packedSize(D), D, full, p * D * D);
        // Σ·Σ⁻¹ = I (checks the inverse of the regularised covariance).
        for (let p = 0; p < P; p++) {
          const cov = new Float32Array(D * D);
          unpackSymmetric(acc.m2, p * packedSize(D), D, cov, 0, 1 / (samples.length - 1), 0.01);
          for (let i = 0; i < D; i++)
            for (let j = 0; j < D; j++) {
              let s = 0;
              for (let k = 0; k < D; k++) s += cov[i * D + k]! * full[p * D * D + k * D + j]!;
              expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(2e-2);
            }
        }
        // Distances: zero at the mean, positive elsewhere (random directions).
        const diff = new Float32Array(P * 2 * D);
        for (let p = 0; p < P; p++) for (let j = 0; j < D; j++) diff[(p * 2 + 1) * D + j] = Math.sin(7 * j + p + 1);
        // The kernel centres on the mean itself: feed x = μ + Δ with a non-zero μ.
        const mu = Float32Array.from({ length: P * D }, (_, k) => Math.round(10 * Math.cos(k)) / 4);
        const x = Float32Array.from(diff, (v, k) => v + mu[Math.floor(k / (2 * D)) * D + (k % D)]!);
        const d2 = await kernels.mahalanobisSquared(x, mu, StripedInverse.fromPacked(inv, P, D), 0, P, 2);
        for (let p = 0; p < P; p++) {
          expect(Math.abs(d2[p * 2]!)).toBeLessThan(1e-9);
          expect(d2[p * 2 + 1]!).toBeGreaterThan(0);
        }
      }),
      { numRuns: 10 },
    );
  });

  it('a single image gives Σ = ε·I (still invertible)', async () => {
    const acc = new GaussianAccumulator(1, D);
    await acc.add(new Float32Array(D).fill(3), 1, kernels);
    const inv = await acc.inverseCovariances(kernels, 0.01);
    const full = new Float32Array(D * D);
    unpackSymmetric(inv, 0, D, full, 0);
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) expect(full[i * D + j]).toBeCloseTo(i === j ? 100 : 0, 2);
  });
});

/** Float64 Gauss–Jordan inverse with partial pivoting (reference only). */
function inverse64(a: Float64Array, d: number): Float64Array {
  const w = 2 * d;
  const m = new Float64Array(d * w);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) m[i * w + j] = a[i * d + j]!;
    m[i * w + d + i] = 1;
  }
  for (let c = 0; c < d; c++) {
    let piv = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(m[r * w + c]!) > Math.abs(m[piv * w + c]!)) piv = r;
    for (let j = 0; j < w; j++) [m[c * w + j], m[piv * w + j]] = [m[piv * w + j]!, m[c * w + j]!];
    const pv = m[c * w + c]!;
    for (let j = 0; j < w; j++) m[c * w + j]! /= pv;
    for (let r = 0; r < d; r++) {
      const f = m[r * w + c]!;
      if (r !== c && f !== 0) for (let j = c; j < w; j++) m[r * w + j]! -= f * m[c * w + j]!;
    }
  }
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) out[i * d + j] = m[i * w + d + j]!;
  return out;
}

describe('inverse covariances', () => {
  it('match float64 on rank-deficient data whose channel scales span five orders of magnitude', async () => {
    // Like PaDiM at d=550 with ~200 images: fewer images than channels (Σ rests on ε·I in the null
    // space), channels of very different variance, some dead (constant) channels.
    const d = 120;
    const n = 40;
    const P = 3;
    const k = await StatsKernels.create(d, 1);
    try {
      let seed = 7;
      const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
      const scales = Array.from({ length: d }, (_, j) => (j % 17 === 0 ? 0 : 10 ** (-2 + (4 * j) / d)));
      const latent = 15;
      const samples = Array.from({ length: n }, () =>
        Array.from({ length: P }, () => {
          const z = Array.from({ length: latent }, rand);
          return scales.map((s, j) => s * (z[j % latent]! + 0.3 * z[(j * 7) % latent]! + 0.05 * rand()));
        }),
      );
      const acc = new GaussianAccumulator(P, d);
      await acc.add(toBatch(samples.slice(0, 25), P, d), 25, k);
      await acc.add(toBatch(samples.slice(25), P, d), n - 25, k);
      const inv = await acc.inverseCovariances(k, 0.01);
      // The same data through the low-rank (Woodbury) fit: n = 40 ≤ d/2 = 60.
      expect(n).toBeLessThanOrEqual(lowRankSampleLimit(d));
      const x = toBatch(samples, P, d);
      const before = x.slice();
      const lowRank = await fitGaussiansLowRank(x, n, P, d, k, 0.01);
      expect(x).toEqual(before); // the samples are kept (resumable models store them): not modified
      expect(lowRank.count).toBe(n);
      const { mean, cov } = referenceStats(samples, P, d);
      for (let i = 0; i < mean.length; i++) expect(Math.abs(lowRank.mean[i]! - mean[i]!)).toBeLessThan(1e-6 * (1 + Math.abs(mean[i]!)));
      const tri = packedSize(d);
      const relativeError = (packed: Float32Array, p: number, ref: Float64Array): number => {
        const got = new Float32Array(d * d);
        unpackSymmetric(packed, p * tri, d, got, 0);
        let num = 0;
        let den = 0;
        for (let i = 0; i < d * d; i++) {
          num += (got[i]! - ref[i]!) ** 2;
          den += ref[i]! ** 2;
        }
        return Math.sqrt(num / den);
      };
      for (let p = 0; p < P; p++) {
        const sigma = cov.slice(p * d * d, (p + 1) * d * d);
        for (let i = 0; i < d; i++) sigma[i * d + i]! += 0.01;
        const ref = inverse64(sigma, d);
        expect(relativeError(inv, p, ref)).toBeLessThan(1e-3);
        expect(relativeError(lowRank.invCov, p, ref)).toBeLessThan(1e-4);
      }
    } finally {
      await k.dispose();
    }
  });
});

describe('low-rank (Woodbury) fit', () => {
  it('Σ·Σ⁻¹ = I and the means match float64, for any 2 … d/2 samples', async () => {
    const P = 2;
    const d = 2 * D;
    const k = await StatsKernels.create(d, 1);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(fc.array(fc.double({ min: -5, max: 5, noNaN: true }), { minLength: d, maxLength: d }), { minLength: P, maxLength: P }), {
            minLength: 2,
            maxLength: lowRankSampleLimit(d),
          }),
          async (samples) => {
            const n = samples.length;
            const fitted = await fitGaussiansLowRank(toBatch(samples, P, d), n, P, d, k, 0.01);
            const { mean, cov } = referenceStats(samples, P, d);
            for (let i = 0; i < mean.length; i++) expect(Math.abs(fitted.mean[i]! - mean[i]!)).toBeLessThan(1e-5);
            const inv = new Float32Array(d * d);
            for (let p = 0; p < P; p++) {
              unpackSymmetric(fitted.invCov, p * packedSize(d), d, inv, 0);
              for (let i = 0; i < d; i++)
                for (let j = 0; j < d; j++) {
                  let s = 0;
                  for (let m = 0; m < d; m++) s += (cov[(p * d + i) * d + m]! + (i === m ? 0.01 : 0)) * inv[m * d + j]!;
                  expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-3);
                }
            }
          },
        ),
        { numRuns: 20 },
      );
    } finally {
      await k.dispose();
    }
  });

  it('refuses fewer than 2 samples and a wrongly sized batch', async () => {
    await expect(fitGaussiansLowRank(new Float32Array(D), 1, 1, D, kernels)).rejects.toThrow(RangeError);
    await expect(fitGaussiansLowRank(new Float32Array(3 * D), 2, 1, D, kernels)).rejects.toThrow(RangeError);
  });
});

describe('embedding', () => {
  it('selectChannels is seeded, sorted, distinct and in range', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 1000 }), (d, seed) => {
        const a = selectChannels(1792, d, seed);
        expect(Array.from(a)).toEqual(Array.from(selectChannels(1792, d, seed)));
        expect(new Set(a).size).toBe(d);
        for (let i = 1; i < d; i++) expect(a[i]!).toBeGreaterThan(a[i - 1]!);
        expect(a[0]!).toBeGreaterThanOrEqual(0);
        expect(a[d - 1]!).toBeLessThan(1792);
      }),
    );
    expect(Array.from(selectChannels(1792, 100, 0))).not.toEqual(Array.from(selectChannels(1792, 100, 1)));
  });

  it('aligns deeper layers to the first grid by nearest neighbour and gathers the chosen channels', () => {
    // layer A: 2 channels on 4×4; layer B: 3 channels on 2×2. Values encode (layer, channel, y, x).
    const mk = (layer: number, C: number, H: number): Tensor4D => {
      const data = new Float32Array(C * H * H);
      for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let x = 0; x < H; x++) data[(c * H + y) * H + x] = layer * 1000 + c * 100 + y * 10 + x;
      return { data, dims: [1, C, H, H] };
    };
    const maps = [mk(0, 2, 4), mk(1, 3, 2)];
    const idx = Int32Array.from([1, 4]); // layer0 ch1, layer1 ch2
    const emb = gatherEmbedding(maps, channelSources(idx, [2, 3]));
    expect(emb.gridH).toBe(4);
    const at = (y: number, x: number, j: number) => emb.data[(y * 4 + x) * 2 + j];
    expect(at(3, 2, 0)).toBe(0 * 1000 + 1 * 100 + 3 * 10 + 2);
    expect(at(3, 2, 1)).toBe(1000 + 200 + 1 * 10 + 1); // (3,2) → (floor(3/2), floor(2/2))
    expect(at(0, 1, 1)).toBe(1000 + 200 + 0 + 0);
  });
});
