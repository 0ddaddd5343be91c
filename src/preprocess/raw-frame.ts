/**
 * Raw camera frames: the pixel buffers camera SDKs hand over (8-bit mono, RGB/BGR or RGBA/BGRA,
 * row-major, interleaved, rows possibly padded to a stride), taken as they are, without encoding them
 * to PNG first. A frame goes through the same resize and normalisation as a decoded file, so it scores
 * like the same pixels saved as PNG.
 *
 * The frame's buffer is read, never written; it is copied only when libvips cannot read it in place
 * (padded rows, BGR order): one repack into contiguous RGB(A), the copy preprocessing needs anyway.
 */
import sharp, { type Sharp } from 'sharp';
import { PartscanError } from '../errors.js';
import type { ImageInfo } from '../types.js';
import { DEFAULT_MAX_PIXELS } from './options.js';

/** Label of raw frames in results and messages ({@link ImageInfo.source}). */
export const FRAME_SOURCE = '<frame>';

/**
 * A raw 8-bit frame, row-major and interleaved: `channels` bytes per pixel (1 mono, 3 colour,
 * 4 colour + alpha), `stride` bytes per row (default `width · channels`; larger when the camera pads rows).
 *
 * @example
 * // A BGR frame from a camera SDK, rows padded to 64 bytes:
 * const r = await model.score({ data: frame.buffer, width: 1280, height: 1024, channels: 3, stride: 3840, order: 'bgr' });
 */
export interface RawFrame {
  /** The pixels: at least `stride · (height − 1) + width · channels` bytes. */
  data: Uint8Array | Uint8ClampedArray;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Bytes per pixel: 1 (mono8), 3 (RGB or BGR) or 4 (RGBA or BGRA; alpha is flattened as for files). */
  channels: 1 | 3 | 4;
  /** Bytes from one row's start to the next (default `width · channels`). */
  stride?: number;
  /** Colour order of 3- and 4-channel frames (default 'rgb'; OpenCV and many camera SDKs give 'bgr'). */
  order?: 'rgb' | 'bgr';
}

const FRAME_KEYS = new Set(['data', 'width', 'height', 'channels', 'stride', 'order']);

/** Whether a score input is meant as a raw frame: an object with pixel `data` and a `width` (not a tensor). */
export function isRawFrame(input: unknown): input is RawFrame {
  return (
    typeof input === 'object' &&
    input !== null &&
    !ArrayBuffer.isView(input) &&
    !('dims' in input) &&
    'data' in input &&
    ('width' in input || 'channels' in input)
  );
}

function frameError(field: string, what: string): PartscanError {
  return new PartscanError('INVALID_FRAME', `Invalid raw frame: ${field} ${what}.`, {
    remedy: 'pass { data: Uint8Array, width, height, channels: 1 | 3 | 4, stride?, order? } describing the camera buffer',
  });
}

/**
 * Checks a frame's fields against each other and against the pixel cap.
 * @throws PartscanError 'INVALID_FRAME' naming the field; 'IMAGE_TOO_LARGE' above `maxPixels`.
 */
export function checkRawFrame(
  f: RawFrame,
  maxPixels = DEFAULT_MAX_PIXELS,
): {
  /** The row stride in bytes (the default `width · channels` when the frame gives none). */
  stride: number;
} {
  for (const key of Object.keys(f)) if (!FRAME_KEYS.has(key)) throw frameError(key, 'is not a raw-frame field (data, width, height, channels, stride, order)');
  if (!(f.data instanceof Uint8Array || f.data instanceof Uint8ClampedArray)) throw frameError('data', 'must be a Uint8Array or Uint8ClampedArray of 8-bit samples');
  for (const key of ['width', 'height'] as const) {
    if (!Number.isInteger(f[key]) || f[key] < 1) throw frameError(key, `must be a positive integer, got ${String(f[key])}`);
  }
  if (f.channels !== 1 && f.channels !== 3 && f.channels !== 4) throw frameError('channels', `must be 1, 3 or 4, got ${String(f.channels)}`);
  if (f.order !== undefined && f.order !== 'rgb' && f.order !== 'bgr') throw frameError('order', `must be 'rgb' or 'bgr', got ${String(f.order)}`);
  const row = f.width * f.channels;
  const stride = f.stride ?? row;
  if (!Number.isInteger(stride) || stride < row) throw frameError('stride', `must be an integer ≥ width · channels = ${row}, got ${String(f.stride)}`);
  const need = stride * (f.height - 1) + row;
  if (f.data.length < need) {
    throw frameError('data', `holds ${f.data.length} bytes; ${f.width}×${f.height}×${f.channels}${stride !== row ? ` with stride ${stride}` : ''} needs ${need}`);
  }
  if (f.width * f.height > maxPixels) {
    throw new PartscanError('IMAGE_TOO_LARGE', `Raw frame ${f.width}×${f.height} = ${f.width * f.height} pixels is above the limit of ${maxPixels}.`, {
      remedy: 'raise maxPixels if the frame is genuine, or downscale it before scoring',
    });
  }
  return { stride };
}

/**
 * The frame's pixels as libvips reads them: contiguous rows, RGB(A) order. The caller's buffer itself
 * when it already is so; otherwise one repack (padded rows dropped, BGR swapped to RGB).
 * `stride` is the one {@link checkRawFrame} returned when the caller has checked the frame already (with
 * its own pixel cap); without it the frame is checked here, against the default cap.
 */
export function contiguousRgb(f: RawFrame, stride = checkRawFrame(f).stride): Uint8Array {
  const c = f.channels;
  const row = f.width * c;
  const swap = c > 1 && f.order === 'bgr';
  const src = f.data instanceof Uint8Array ? f.data : new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength);
  if (!swap && stride === row) return src.subarray(0, row * f.height);
  const out = new Uint8Array(row * f.height);
  for (let y = 0; y < f.height; y++) {
    const s = y * stride;
    const d = y * row;
    if (!swap) {
      out.set(src.subarray(s, s + row), d);
      continue;
    }
    for (let x = 0; x < row; x += c) {
      out[d + x] = src[s + x + 2]!;
      out[d + x + 1] = src[s + x + 1]!;
      out[d + x + 2] = src[s + x]!;
      if (c === 4) out[d + x + 3] = src[s + x + 3]!;
    }
  }
  return out;
}

/** The facts of a frame, as {@link ImageInfo} records them for files. */
export function rawFrameInfo(f: RawFrame): ImageInfo {
  return {
    source: FRAME_SOURCE,
    width: f.width,
    height: f.height,
    channels: f.channels,
    format: 'raw',
    space: f.channels === 1 ? 'b-w' : 'srgb',
    bitDepth: 8,
    hasAlpha: f.channels === 4,
  };
}

/**
 * A sharp pipeline on the frame that matches the start of the file pipeline: grey replicated to sRGB,
 * alpha flattened on `background`, 8-bit sRGB out. The frame is checked here, once, against `maxPixels`.
 * @throws the errors of {@link checkRawFrame}.
 */
export function rawFramePipeline(f: RawFrame, background: readonly [number, number, number], maxPixels: number): Sharp {
  const pixels = contiguousRgb(f, checkRawFrame(f, maxPixels).stride);
  let p = sharp(pixels, { raw: { width: f.width, height: f.height, channels: f.channels } }).pipelineColourspace('srgb');
  if (f.channels === 4) p = p.flatten({ background: { r: background[0], g: background[1], b: background[2] } });
  return p.toColourspace('srgb');
}
