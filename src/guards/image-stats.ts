/**
 * Global per-image descriptors for drift detection: cheap statistics that move when the lighting,
 * the camera settings or the optics change for the whole image (which a per-position Gaussian model
 * turns into uniformly high anomaly scores — every part "defective" — rather than a clear error).
 */

import { PartscanError } from '../errors.js';
import { lumaFromInterleaved, resampleArea } from './resample.js';

/** Interleaved 8-bit pixels, as sharp's `.raw()` output produces them. */
export interface RawPixels {
  /** Interleaved samples, `width·height·channels` bytes. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (alpha is ignored). */
  channels: number;
}

/** Global descriptors of one image, on 0..255 values. */
export interface GlobalImageStats {
  /** Mean luma (Rec. 601). */
  brightness: number;
  /** Standard deviation of luma: global contrast. */
  contrast: number;
  /** Mean of the red channel. */
  mean_r: number;
  /** Mean of the green channel. */
  mean_g: number;
  /** Mean of the blue channel. */
  mean_b: number;
  /** Standard deviation of the red channel. */
  std_r: number;
  /** Standard deviation of the green channel. */
  std_g: number;
  /** Standard deviation of the blue channel. */
  std_b: number;
  /**
   * Colour-temperature proxy: (mean R + 1) / (mean B + 1). Warmer light raises it, cooler lowers it;
   * the +1 keeps it finite on images without blue. Exactly 1 for gray images.
   */
  r_b_ratio: number;
  /**
   * Sharpness: variance of the 4-neighbour Laplacian of the luma after area-downsampling to at most
   * {@link SHARPNESS_SIDE} pixels on the long side (so the value does not depend on resolution and
   * sensor noise is averaged out). Focus loss or motion blur lowers it sharply.
   */
  sharpness: number;
}

/** Descriptor names, in the order {@link statsToDescriptor} lays them out. */
export const GLOBAL_STATS_FEATURES = [
  'brightness',
  'contrast',
  'mean_r',
  'mean_g',
  'mean_b',
  'std_r',
  'std_g',
  'std_b',
  'r_b_ratio',
  'sharpness',
] as const satisfies readonly (keyof GlobalImageStats)[];

/** Long side the luma is downsampled to before the sharpness Laplacian. */
export const SHARPNESS_SIDE = 256;

/** Variance of the 4-neighbour Laplacian over interior pixels of a row-major gray image. */
export function laplacianVariance(gray: ArrayLike<number>, width: number, height: number): number {
  if (width < 3 || height < 3) return 0;
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      const l = gray[i - 1]! + gray[i + 1]! + gray[i - width]! + gray[i + width]! - 4 * gray[i]!;
      sum += l;
      sumSq += l * l;
      n++;
    }
  }
  const mean = sum / n;
  return Math.max(0, sumSq / n - mean * mean);
}

/**
 * Computes {@link GlobalImageStats} of one decoded image (pure; decode with sharp at the edge). `luma`,
 * when the caller already has it (`lumaFromInterleaved` of the same pixels), is not computed again.
 * Scalar accumulators, one branch per layout: this runs for every training image.
 */
export function globalImageStats(pixels: RawPixels, luma?: Float32Array): GlobalImageStats {
  const { data, width, height, channels } = pixels;
  const n = width * height;
  if (n === 0) {
    throw new PartscanError('IMAGE_TOO_SMALL', 'Cannot compute statistics of an empty image.', {
      remedy: 'check the decoded image size',
    });
  }
  const l8 = luma && luma.length === n ? luma : lumaFromInterleaved(data, width, height, channels);
  let r = 0;
  let g = 0;
  let b = 0;
  let rr = 0;
  let gg = 0;
  let bb = 0;
  let lumaSum = 0;
  let lumaSq = 0;
  if (channels >= 3) {
    for (let i = 0, p = 0; i < n; i++, p += channels) {
      const vr = data[p]!;
      const vg = data[p + 1]!;
      const vb = data[p + 2]!;
      r += vr;
      g += vg;
      b += vb;
      rr += vr * vr;
      gg += vg * vg;
      bb += vb * vb;
      const l = l8[i]!;
      lumaSum += l;
      lumaSq += l * l;
    }
  } else {
    for (let i = 0, p = 0; i < n; i++, p += channels) {
      const v = data[p]!;
      r += v;
      rr += v * v;
      const l = l8[i]!;
      lumaSum += l;
      lumaSq += l * l;
    }
    g = b = r;
    gg = bb = rr;
  }
  return statsFromSums({ sums: [r, g, b], squares: [rr, gg, bb], lumaSum, lumaSquares: lumaSq, n }, l8, width, height);
}

/** Running sums over the pixels of one image, on 0..255 values. */
export interface PixelSums {
  /** Per channel (R, G, B) sum of values. */
  sums: readonly number[];
  /** Per channel sum of squared values. */
  squares: readonly number[];
  /** Sum of luma. */
  lumaSum: number;
  /** Sum of squared luma. */
  lumaSquares: number;
  /** Pixels. */
  n: number;
}

/** {@link GlobalImageStats} from pixel sums and the luma plane (width×height, for the sharpness). */
export function statsFromSums(sums: PixelSums, luma: Float32Array, width: number, height: number): GlobalImageStats {
  const { n } = sums;
  const mean = sums.sums.map((s) => s / n);
  const std = sums.squares.map((s, c) => Math.sqrt(Math.max(0, s / n - mean[c]! * mean[c]!)));
  const brightness = sums.lumaSum / n;
  const scale = Math.min(1, SHARPNESS_SIDE / Math.max(width, height));
  const sw = Math.max(1, Math.round(width * scale));
  const sh = Math.max(1, Math.round(height * scale));
  const small = scale < 1 ? resampleArea(luma, width, height, sw, sh) : luma;
  return {
    brightness,
    contrast: Math.sqrt(Math.max(0, sums.lumaSquares / n - brightness * brightness)),
    mean_r: mean[0]!,
    mean_g: mean[1]!,
    mean_b: mean[2]!,
    std_r: std[0]!,
    std_g: std[1]!,
    std_b: std[2]!,
    r_b_ratio: (mean[0]! + 1) / (mean[2]! + 1),
    sharpness: laplacianVariance(small, sw, sh),
  };
}

/** The stats as a descriptor vector in {@link GLOBAL_STATS_FEATURES} order (the input `fitDriftModel` and `driftScore` take). */
export function statsToDescriptor(stats: GlobalImageStats): number[] {
  return GLOBAL_STATS_FEATURES.map((k) => stats[k]);
}
