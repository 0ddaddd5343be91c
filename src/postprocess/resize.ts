/**
 * Bilinear resampling of score maps with PyTorch's `F.interpolate(mode='bilinear',
 * align_corners=False)` semantics, so maps match the reference implementation value for value.
 */

import { centreCropOffset } from '../preprocess/crop.js';
import { assertMapShape, assertSize } from './shape.js';

/** Per-output-coordinate sampling plan along one axis: two source indices and the weight of the second. */
interface AxisPlan {
  i0: Int32Array;
  i1: Int32Array;
  lambda: Float64Array;
}

/**
 * PyTorch's `area_pixel_compute_source_index` for align_corners=False: half-pixel centres,
 * `src = (dst + 0.5)·(in/out) − 0.5`, clamped at 0 from below (the upper side is clamped by
 * taking `i1 = min(i0 + 1, in − 1)`). No antialiasing, also when downscaling, exactly like PyTorch.
 */
function axisPlan(srcSize: number, dstSize: number): AxisPlan {
  const scale = srcSize / dstSize;
  const i0 = new Int32Array(dstSize);
  const i1 = new Int32Array(dstSize);
  const lambda = new Float64Array(dstSize);
  for (let d = 0; d < dstSize; d++) {
    const s = Math.max((d + 0.5) * scale - 0.5, 0);
    const lo = Math.min(Math.floor(s), srcSize - 1);
    i0[d] = lo;
    i1[d] = lo < srcSize - 1 ? lo + 1 : lo;
    lambda[d] = s - lo;
  }
  return { i0, i1, lambda };
}

/**
 * Resizes a row-major `srcH×srcW` map to `dstH×dstW` by bilinear interpolation with PyTorch
 * `F.interpolate(mode='bilinear', align_corners=False)` semantics (half-pixel centres, source
 * coordinate clamped at 0, no antialiasing). Returns a new array; the input is not modified.
 * Every output value is a convex combination of input values, so the input's min/max bound it.
 */
export function resizeBilinear(
  src: ArrayLike<number>,
  srcW: number,
  srcH: number,
  dstW: number,
  dstH: number,
): Float32Array {
  assertMapShape(src, srcW, srcH, 'source map');
  assertSize(dstW, dstH, 'destination map');
  const out = new Float32Array(dstW * dstH);
  if (srcW === dstW && srcH === dstH) {
    for (let i = 0; i < out.length; i++) out[i] = src[i]!;
    return out;
  }
  const xs = axisPlan(srcW, dstW);
  const ys = axisPlan(srcH, dstH);
  for (let y = 0; y < dstH; y++) {
    const row0 = ys.i0[y]! * srcW;
    const row1 = ys.i1[y]! * srcW;
    const ly = ys.lambda[y]!;
    const oy = 1 - ly;
    const o = y * dstW;
    for (let x = 0; x < dstW; x++) {
      const x0 = xs.i0[x]!;
      const x1 = xs.i1[x]!;
      const lx = xs.lambda[x]!;
      const ox = 1 - lx;
      out[o + x] =
        oy * (ox * src[row0 + x0]! + lx * src[row0 + x1]!) + ly * (ox * src[row1 + x0]! + lx * src[row1 + x1]!);
    }
  }
  return out;
}

/**
 * Maps a square `size×size` score map (the network-input grid) back onto the original image of
 * `origW×origH` pixels by bilinear interpolation, for exports drawn on the original.
 *
 * The preprocessing resizes the whole image to a square (aspect ratio not kept), so the inverse is a
 * plain resize. With a centre crop the map covers only the cropped part of the image: see
 * {@link cropWindow} and {@link mapOntoImage}.
 */
export function mapToOriginal(map: ArrayLike<number>, size: number, origW: number, origH: number): Float32Array {
  return resizeBilinear(map, size, size, origW, origH);
}

/**
 * Nearest-neighbour resize of a mask (0/1 or any labels), sampling at pixel centres, so values stay
 * exactly as they were (a binary mask stays binary). Returns `mask` itself when the size is unchanged.
 */
export function resizeNearest(mask: Uint8Array, sw: number, sh: number, dw: number, dh: number): Uint8Array {
  if (sw === dw && sh === dh) return mask;
  const out = new Uint8Array(dw * dh);
  for (let y = 0; y < dh; y++) {
    const sy = Math.min(sh - 1, Math.floor(((y + 0.5) * sh) / dh));
    for (let x = 0; x < dw; x++) {
      const sx = Math.min(sw - 1, Math.floor(((x + 0.5) * sw) / dw));
      out[y * dw + x] = mask[sy * sw + sx]!;
    }
  }
  return out;
}

/** The part of an image, in its pixels, that a score map covers. */
export interface MapWindow {
  /** Left edge. */
  x: number;
  /** Top edge. */
  y: number;
  /** Width. */
  width: number;
  /** Height. */
  height: number;
}

/**
 * The window of a `width`×`height` image that the model's map covers: the whole image, or with a centre
 * crop (`cropSize` < `imageSize`) the crop's part of it, rounded to whole pixels.
 */
export function cropWindow(imageSize: number, cropSize: number | undefined, width: number, height: number): MapWindow {
  if (cropSize === undefined || cropSize >= imageSize) return { x: 0, y: 0, width, height };
  const off = centreCropOffset(imageSize, cropSize);
  const x = Math.min(width - 1, Math.round((off * width) / imageSize));
  const y = Math.min(height - 1, Math.round((off * height) / imageSize));
  return {
    x,
    y,
    width: Math.max(1, Math.min(width - x, Math.round((cropSize * width) / imageSize))),
    height: Math.max(1, Math.min(height - y, Math.round((cropSize * height) / imageSize))),
  };
}

/**
 * A `mapW`×`mapH` map (bilinear) or mask (nearest, `mask: true`) onto a `width`×`height` image whose
 * `window` it covers (default: all of it); outside the window the result is 0.
 */
export function mapOntoImage(map: Float32Array, mapW: number, mapH: number, width: number, height: number, window?: MapWindow): Float32Array;
export function mapOntoImage(map: Uint8Array, mapW: number, mapH: number, width: number, height: number, window: MapWindow | undefined, mask: true): Uint8Array;
export function mapOntoImage(
  map: Float32Array | Uint8Array,
  mapW: number,
  mapH: number,
  width: number,
  height: number,
  window: MapWindow = { x: 0, y: 0, width, height },
  mask = false,
): Float32Array | Uint8Array {
  const inner = mask ? resizeNearest(map as Uint8Array, mapW, mapH, window.width, window.height) : resizeBilinear(map, mapW, mapH, window.width, window.height);
  if (window.width === width && window.height === height) return inner;
  const out = mask ? new Uint8Array(width * height) : new Float32Array(width * height);
  for (let y = 0; y < window.height; y++) out.set(inner.subarray(y * window.width, (y + 1) * window.width), (window.y + y) * width + window.x);
  return out;
}
