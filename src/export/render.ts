/**
 * A scored result as pictures at the source image's size: the QA overlay (heatmap blended on the photo,
 * defect contours drawn), the colour heatmap and the binary mask. One way of placing the maps on the
 * image, shared by {@link renderResult} (in memory) and the run exports (files), for every input kind:
 * a path or encoded bytes are decoded again, a raw frame's pixels are read again, a tensor is shown as
 * the network saw it (its own size, the preprocessing undone).
 */

import { PartscanError } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { renderOptionsSchema } from '../options/schemas.js';
import { inputOf } from '../model/result-input.js';
import { classifyInput } from '../model/score-batch.js';
import type { ScoreInput, ScoreResult } from '../model/types.js';
import { fitInside, loadRgb } from '../preprocess/preprocess.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../preprocess/options.js';
import { mapOntoImage, resizeBilinear, type MapWindow } from '../postprocess/resize.js';
import type { PreprocessOptions, Tensor4D } from '../types.js';
import { applyColormap } from './colormap.js';
import { renderOverlay, type RgbImage } from './images.js';
import { maskBytes, rawImage } from './raw-image.js';

/** What {@link renderResult} draws. */
export type RenderKind = 'overlay' | 'heatmap' | 'mask';

/** Options of {@link renderResult}. */
export interface RenderOptions {
  /** Encoding (default 'png'). */
  format?: 'png' | 'jpeg';
  /** Longest side of the picture (default: the source image's size; larger images are downsized, never enlarged). */
  maxSide?: number;
  /** JPEG quality, 1..100 (default 90). */
  quality?: number;
  /**
   * The pixels the result was scored from, when the result no longer knows them (a result rebuilt from
   * JSON, or a camera buffer reused since): any score input. By default the input the result was scored
   * from is read again.
   */
  image?: ScoreInput;
}

/** A result's maps and photo at one export size. */
export interface ResultLayers {
  /** Export width. */
  width: number;
  /** Export height. */
  height: number;
  /** The photo (when asked for), interleaved RGB at the export size. */
  photo?: RgbImage;
  /** The normalised map (0.5 = threshold) at the export size; uncalibrated results are min–max normalised per image. */
  normMap: Float32Array;
  /** The defect mask (0/1) at the export size; empty for uncalibrated results. */
  mask: Uint8Array;
  /** Whether the result was judged against thresholds. */
  calibrated: boolean;
}

/**
 * The maps of a result placed on its source image at the export size (`maxSide`), and the photo when
 * `photo` is true. The photo is read from `image`, else from the input the result was scored from.
 * @throws PartscanError 'OPTIONS' when the photo is wanted and the result no longer knows its pixels.
 */
export async function resultLayers(r: ScoreResult, opts: { maxSide?: number; image?: ScoreInput; photo: boolean }): Promise<ResultLayers> {
  const calibrated = r.normalizedMap !== undefined && r.normalizedScore !== undefined && r.verdict !== undefined;
  const srcW = r.info?.width ?? r.mapWidth;
  const srcH = r.info?.height ?? r.mapHeight;
  let photo: RgbImage | undefined;
  let { width, height } = fitInside(srcW, srcH, opts.maxSide);
  if (opts.photo) {
    const known = opts.image !== undefined ? { input: opts.image } : inputOf(r);
    if (!known) {
      throw new PartscanError('OPTIONS', `${r.source}: this result no longer knows the pixels it was scored from.`, {
        remedy: 'pass them as the image option (the frame, bytes, path or tensor that was scored)',
      });
    }
    const kind = classifyInput(known.input);
    photo = 'tensor' in kind ? tensorPhoto(kind.tensor, known.preprocess, opts.maxSide) : await loadRgb(kind.image, opts.maxSide !== undefined ? { maxSide: opts.maxSide } : {});
    ({ width, height } = photo);
  }
  const norm = calibrated ? r.normalizedMap! : minMaxNormalize(r.anomalyMap);
  const window = scaleWindow(r.mapWindow, srcW, srcH, width, height);
  return {
    width,
    height,
    ...(photo ? { photo } : {}),
    normMap: mapOntoImage(norm, r.mapWidth, r.mapHeight, width, height, window),
    mask: calibrated && r.mask ? mapOntoImage(r.mask, r.mapWidth, r.mapHeight, width, height, window, true) : new Uint8Array(width * height),
    calibrated,
  };
}

/**
 * Renders a scored result as an image at the source image's size (or `maxSide`): `'overlay'` the
 * heatmap blended on the photo with the defect contours drawn, `'heatmap'` the normalised map in the
 * turbo colour map (0.5, the threshold, is the middle), `'mask'` the defect mask (white = defect). Works
 * for results of every input kind: paths, encoded bytes, raw frames (their pixels are read when this is
 * called: render before the camera reuses the buffer, or pass `image`) and tensors.
 *
 * @example
 * const r = await model.score({ data: frame, width: 1280, height: 1024, channels: 3 });
 * if (r.verdict !== 'OK') await fs.writeFile('ng.jpg', await renderResult(r, 'overlay', { format: 'jpeg' }));
 */
export async function renderResult(result: ScoreResult, kind: RenderKind, opts: RenderOptions = {}): Promise<Buffer> {
  parseOptions(renderOptionsSchema, opts, 'renderResult');
  if (kind !== 'overlay' && kind !== 'heatmap' && kind !== 'mask') {
    throw new PartscanError('OPTIONS', `Invalid renderResult kind ${JSON.stringify(kind)}.`, { remedy: "use 'overlay', 'heatmap' or 'mask'" });
  }
  const layers = await resultLayers(result, {
    photo: kind === 'overlay',
    ...(opts.maxSide !== undefined ? { maxSide: opts.maxSide } : {}),
    ...(opts.image !== undefined ? { image: opts.image } : {}),
  });
  const { width, height } = layers;
  let pixels: Uint8Array;
  let channels: 1 | 3;
  if (kind === 'overlay') {
    pixels = renderOverlay(layers.photo!, layers.normMap, layers.mask);
    channels = 3;
  } else if (kind === 'heatmap') {
    pixels = applyColormap(layers.normMap, 'turbo');
    channels = 3;
  } else {
    pixels = maskBytes(layers.mask, width * height);
    channels = 1;
  }
  const img = rawImage(pixels, width, height, channels);
  return opts.format === 'jpeg' ? img.jpeg({ quality: opts.quality ?? 90 }).toBuffer() : img.png().toBuffer();
}

/** A map window in source pixels, at an export size. */
function scaleWindow(w: MapWindow | undefined, srcW: number, srcH: number, width: number, height: number): MapWindow | undefined {
  if (!w) return undefined;
  const sx = width / srcW;
  const sy = height / srcH;
  const x = Math.min(width - 1, Math.round(w.x * sx));
  const y = Math.min(height - 1, Math.round(w.y * sy));
  return { x, y, width: Math.max(1, Math.min(width - x, Math.round(w.width * sx))), height: Math.max(1, Math.min(height - y, Math.round(w.height * sy))) };
}

/** A [1,3,S,S] network input shown as the image the network saw: the normalisation undone (ImageNet's when unknown). */
function tensorPhoto(t: Tensor4D, preprocess: PreprocessOptions | undefined, maxSide: number | undefined): RgbImage {
  const [, , h, w] = t.dims;
  const mean = preprocess?.mean ?? IMAGENET_MEAN;
  const std = preprocess?.std ?? IMAGENET_STD;
  const plane = w * h;
  const data = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.round((t.data[c * plane + i]! * std[c]! + mean[c]!) * 255);
      data[i * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  const size = fitInside(w, h, maxSide);
  if (size.width === w && size.height === h) return { data, width: w, height: h };
  // Downsized channel by channel (rare: a tensor is small).
  const out = new Uint8Array(size.width * size.height * 3);
  for (let c = 0; c < 3; c++) {
    const ch = new Float32Array(plane);
    for (let i = 0; i < plane; i++) ch[i] = data[i * 3 + c]!;
    const small = resizeBilinear(ch, w, h, size.width, size.height);
    for (let i = 0; i < small.length; i++) out[i * 3 + c] = Math.round(small[i]!);
  }
  return { data: out, ...size };
}

/** Min–max normalisation of one map (uncalibrated results): its own range to 0..1. */
function minMaxNormalize(map: Float32Array): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of map) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const out = new Float32Array(map.length);
  const span = hi - lo;
  if (span > 0) for (let i = 0; i < map.length; i++) out[i] = (map[i]! - lo) / span;
  return out;
}
