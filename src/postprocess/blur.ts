/**
 * Gaussian smoothing of upsampled score maps, matching the reference (anomalib's PaDiM uses kornia's
 * `GaussianBlur2d(kernel_size = 2·⌊4σ + 0.5⌋ + 1, sigma = σ, border_type = 'reflect')`, σ = 4).
 */

import { PartscanError } from '../errors.js';
import { assertMapShape } from './shape.js';

/** The σ the reference implementation blurs anomaly maps with. */
export const DEFAULT_BLUR_SIGMA = 4;

/**
 * A normalised 1-D Gaussian kernel of size `2·⌊4σ + 0.5⌋ + 1` (σ = 4 → 33 taps), centred, summing
 * to 1 — the same taps kornia's `get_gaussian_kernel1d` produces for that size.
 */
export function gaussianKernel1d(sigma: number): Float32Array {
  return Float32Array.from(gaussianWeights(sigma));
}

/** {@link gaussianKernel1d} in double precision (the blur convolves with these, so sums stay exact to ~1e-16). */
function gaussianWeights(sigma: number): Float64Array {
  if (!Number.isFinite(sigma) || sigma <= 0) {
    throw new PartscanError('OPTIONS', `Gaussian blur sigma must be a positive number, got ${sigma}.`, {
      remedy: 'use a sigma > 0 (the reference uses 4), or skip the blur',
    });
  }
  const radius = Math.floor(4 * sigma + 0.5);
  const size = 2 * radius + 1;
  const weights = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const x = i - radius;
    // The centre tap is exactly 1 (e⁰), also when 2σ² underflows to 0 (σ ≈ 1e-160 or below), where the
    // formula would give 0/0 = NaN and the whole map NaN.
    weights[i] = x === 0 ? 1 : Math.exp(-(x * x) / (2 * sigma * sigma));
    sum += weights[i]!;
  }
  for (let i = 0; i < size; i++) weights[i] = weights[i]! / sum;
  return weights;
}

/**
 * PyTorch 'reflect' index: mirrors at the edge without repeating the edge sample
 * (`… 2 1 | 0 1 2 … n−1 | n−2 n−3 …`). PyTorch refuses pads ≥ n; here the reflection simply
 * continues (the mirrored sequence is periodic with period 2(n−1)), so maps narrower than the kernel
 * radius still blur sensibly and a constant map stays constant. A length-1 axis always reads index 0.
 */
export function reflectIndex(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  const m = ((i % period) + period) % period;
  return m < n ? m : period - m;
}

/**
 * Separable Gaussian blur of a row-major `h×w` map with reflect padding (see {@link reflectIndex}),
 * equivalent to kornia's `GaussianBlur2d(border_type='reflect')` for maps larger than the kernel
 * radius. Returns a new array. Every output value is a convex combination of input values, so a
 * constant map is unchanged and the input's min/max bound the output.
 */
export function gaussianBlur(src: ArrayLike<number>, w: number, h: number, sigma = DEFAULT_BLUR_SIGMA): Float32Array {
  assertMapShape(src, w, h, 'map to blur');
  const kernel = gaussianWeights(sigma);
  const radius = (kernel.length - 1) / 2;

  // Horizontal pass: pad each row by reflection into a scratch row, then convolve.
  const xIndex = new Int32Array(w + 2 * radius);
  for (let i = 0; i < xIndex.length; i++) xIndex[i] = reflectIndex(i - radius, w);
  const padded = new Float64Array(w + 2 * radius);
  const tmp = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let i = 0; i < padded.length; i++) padded[i] = src[row + xIndex[i]!]!;
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let k = 0; k < kernel.length; k++) acc += kernel[k]! * padded[x + k]!;
      tmp[row + x] = acc;
    }
  }

  // Vertical pass, a whole row at a time so memory is read sequentially.
  const out = new Float32Array(w * h);
  const acc = new Float64Array(w);
  for (let y = 0; y < h; y++) {
    acc.fill(0);
    for (let k = 0; k < kernel.length; k++) {
      const weight = kernel[k]!;
      const srcRow = reflectIndex(y + k - radius, h) * w;
      for (let x = 0; x < w; x++) acc[x] += weight * tmp[srcRow + x]!;
    }
    out.set(acc, y * w);
  }
  return out;
}
