import path from 'node:path';
import { CholeskyDecomposition, Matrix } from 'ml-matrix';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBackbone } from '../src/backbone/registry.js';
import { listImages } from '../src/data/loaders.js';
import { channelSources, gatherEmbedding, selectChannels } from '../src/embedding/embedding.js';
import { defaultPreprocessOptions } from '../src/preprocess/options.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { fitGaussiansLowRank, GaussianAccumulator, packedSize, unpackSymmetric } from '../src/stats/gaussian-stats.js';
import { StatsKernels } from '../src/stats/ort-kernels.js';
import type { OrtBackbone } from '../src/backbone/ort-backbone.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

// Real ResNet50 features of bottle images (reference weights, 96 px: a 24×24 grid), d = 96 of 1792
// channels, 40 training images (≤ d/2: the low-rank fit's regime, covariances rank-deficient).
const SIZE = 96;
const D = 96;
let backbone: OrtBackbone;
let kernels: StatsKernels;
beforeAll(async () => {
  backbone = await loadBackbone({ backbone: 'resnet50', weights: REF_WEIGHTS }, { intraOpNumThreads: 2 });
  kernels = await StatsKernels.create(D, 2);
});
afterAll(async () => {
  await backbone?.dispose();
  await kernels?.dispose();
});

/** Position-major embeddings [P, N, d] of `files`. */
async function embed(files: string[]): Promise<{ data: Float32Array; P: number }> {
  const pre = defaultPreprocessOptions({ imageSize: SIZE });
  const { tensor } = await preprocessBatch(files, pre);
  const maps = await backbone.extract({ data: tensor, dims: [files.length, 3, SIZE, SIZE] });
  const total = backbone.identity.channels.reduce((a, b) => a + b, 0);
  const e = gatherEmbedding(maps, channelSources(selectChannels(total, D, 0), backbone.identity.channels));
  return { data: e.data, P: e.gridH * e.gridW };
}

describe('low-rank fit on real features', () => {
  it('gives the Mahalanobis distances of a float64 fit, as the streaming fit does (test images, every position)', async () => {
    const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 40);
    const test = [
      ...(await listImages(path.join(BOTTLE, 'test', 'broken_large'))).slice(0, 2),
      ...(await listImages(path.join(BOTTLE, 'test', 'good'))).slice(0, 2),
    ];
    const { data: x, P } = await embed(train);
    const n = train.length;
    const lowRank = await fitGaussiansLowRank(x, n, P, D, kernels, 0.01);
    const streaming = new GaussianAccumulator(P, D);
    await streaming.add(subset(x, P, n, 0, 25), 25, kernels);
    await streaming.add(subset(x, P, n, 25, n), n - 25, kernels);
    const inv = await streaming.inverseCovariances(kernels, 0.01);

    const t = (await embed(test)).data;
    const nt = test.length;
    const tri = packedSize(D);
    const a = new Float32Array(D * D);
    const b = new Float32Array(D * D);
    let worstLowRank = 0;
    let worstStreaming = 0;
    let meanGap = 0;
    for (let p = 0; p < P; p++) {
      unpackSymmetric(lowRank.invCov, p * tri, D, a, 0);
      unpackSymmetric(inv, p * tri, D, b, 0);
      const oracle = float64Gaussian(x, p, n, 0.01);
      for (let k = 0; k < D; k++) meanGap = Math.max(meanGap, Math.abs(lowRank.mean[p * D + k]! - streaming.mean[p * D + k]!));
      for (let s = 0; s < nt; s++) {
        const o = (p * nt + s) * D;
        const exact = Math.sqrt(oracle(t, o));
        const [da, db] = [quadratic(a, t, o, lowRank.mean, p * D), quadratic(b, t, o, streaming.mean, p * D)];
        worstLowRank = Math.max(worstLowRank, Math.abs(Math.sqrt(da) - exact) / exact);
        worstStreaming = Math.max(worstStreaming, Math.abs(Math.sqrt(db) - exact) / exact);
      }
    }
    console.log(`distance error vs float64: low-rank ${worstLowRank.toExponential(2)}, streaming ${worstStreaming.toExponential(2)}`);
    expect(meanGap).toBeLessThan(1e-4);
    // The README's claims: the low-rank fit within 5e-5 of a float64 fit, the float32 d×d LU path within 6e-5.
    expect(worstLowRank).toBeLessThan(5e-5);
    expect(worstStreaming).toBeLessThan(6e-5);
  });
});

/**
 * The float64 oracle at one position: mean and unbiased covariance + ε·I of the n samples, and a
 * function giving the squared Mahalanobis distance of a test embedding (Cholesky solve, ml-matrix).
 */
function float64Gaussian(x: Float32Array, p: number, n: number, eps: number): (t: Float32Array, o: number) => number {
  const mean = new Float64Array(D);
  for (let s = 0; s < n; s++) for (let k = 0; k < D; k++) mean[k]! += x[(p * n + s) * D + k]! / n;
  const cov = Matrix.zeros(D, D);
  for (let s = 0; s < n; s++) {
    const o = (p * n + s) * D;
    for (let i = 0; i < D; i++) {
      const di = x[o + i]! - mean[i]!;
      for (let j = 0; j <= i; j++) cov.set(i, j, cov.get(i, j) + di * (x[o + j]! - mean[j]!));
    }
  }
  for (let i = 0; i < D; i++) {
    for (let j = 0; j <= i; j++) {
      const v = cov.get(i, j) / (n - 1) + (i === j ? eps : 0);
      cov.set(i, j, v);
      cov.set(j, i, v);
    }
  }
  const chol = new CholeskyDecomposition(cov);
  return (t, o) => {
    const diff = Matrix.columnVector(Array.from({ length: D }, (_, k) => t[o + k]! - mean[k]!));
    const sol = chol.solve(diff);
    let s = 0;
    for (let k = 0; k < D; k++) s += diff.get(k, 0) * sol.get(k, 0);
    return s;
  };
}

/** Samples [from, to) of [P, n, d] embeddings, as [P, to − from, d]. */
function subset(x: Float32Array, P: number, n: number, from: number, to: number): Float32Array {
  const out = new Float32Array(P * (to - from) * D);
  for (let p = 0; p < P; p++) out.set(x.subarray((p * n + from) * D, (p * n + to) * D), p * (to - from) * D);
  return out;
}

/** (x − μ)ᵀ A (x − μ) in float64. */
function quadratic(a: Float32Array, x: Float32Array, xo: number, mean: Float64Array, mo: number): number {
  let s = 0;
  for (let i = 0; i < D; i++) {
    const xi = x[xo + i]! - mean[mo + i]!;
    let r = 0;
    for (let j = 0; j < D; j++) r += a[i * D + j]! * (x[xo + j]! - mean[mo + j]!);
    s += xi * r;
  }
  return s;
}
