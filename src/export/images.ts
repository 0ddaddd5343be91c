/**
 * Image exports: heatmap overlays, raw heatmaps (16-bit PNG and float32 safetensors) and masks.
 * Pixels are composed by pure functions; sharp only encodes. Every file is written atomically
 * (temp file + rename), so an interrupted run never leaves a truncated PNG behind.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { PartscanError } from '../errors.js';
import { innerBoundary } from '../postprocess/morphology.js';
import { assertMapShape } from '../postprocess/shape.js';
import { ensureOutputDir, writeFileAtomic } from '../util/atomic-write.js';
import { applyColormap, checkColormap, type ColormapName } from './colormap.js';
import { maskBytes, rawImage } from './raw-image.js';

/** An 8-bit image in memory, interleaved, row-major. */
export interface RgbImage {
  /** Pixel bytes, `width·height·channels` long. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** 1 (grey), 3 (RGB, the default) or 4 (RGBA: alpha is ignored). */
  channels?: 1 | 3 | 4;
}

/** How {@link renderOverlay} draws. */
export interface OverlayOptions {
  /** Heatmap opacity over the photo, 0..1 (default 0.5). */
  alpha?: number;
  /** Heatmap colours (default 'turbo'). */
  colormap?: ColormapName;
  /** Contour colour, 0..255 RGB (default magenta, which neither turbo nor inferno contains). */
  contourColor?: [number, number, number];
  /** Contour width in pixels (default 2; 1 on images below 200 px). */
  contourWidth?: number;
}

/** Default contour colour: magenta stands out against every turbo/inferno shade and most photos. */
export const DEFAULT_CONTOUR_COLOR: [number, number, number] = [255, 0, 255];

function checkImage(img: RgbImage): 1 | 3 | 4 {
  const channels = img.channels ?? 3;
  if (![1, 3, 4].includes(channels)) {
    throw new PartscanError('OPTIONS', `Images must have 1, 3 or 4 channels, got ${channels}.`);
  }
  assertMapShape({ length: img.data.length / channels }, img.width, img.height, 'image');
  return channels;
}

/** The image as interleaved RGB (grey replicated, alpha dropped). */
export function toRgb(img: RgbImage): Uint8Array {
  const channels = checkImage(img);
  if (channels === 3) return img.data;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const s = i * channels;
    out[i * 3] = img.data[s]!;
    out[i * 3 + 1] = img.data[channels === 1 ? s : s + 1]!;
    out[i * 3 + 2] = img.data[channels === 1 ? s : s + 2]!;
  }
  return out;
}

/**
 * Composes the QA overlay: the colour-mapped normalised map alpha-blended over the photo
 * (`(1 − α)·photo + α·heat`, everywhere, so low scores read as "looked at, fine"), then the mask's
 * inner boundary painted in the contour colour. `normMap` and `mask` (optional, non-zero = defect)
 * must have the image's size. Returns interleaved RGB.
 */
export function renderOverlay(
  img: RgbImage,
  normMap: ArrayLike<number>,
  mask?: ArrayLike<number>,
  opts: OverlayOptions = {},
): Uint8Array {
  const { width: w, height: h } = img;
  const rgb = toRgb(img);
  assertMapShape(normMap, w, h, 'overlay heatmap');
  const alpha = opts.alpha ?? 0.5;
  if (!(alpha >= 0 && alpha <= 1)) {
    throw new PartscanError('OPTIONS', `Overlay alpha must be between 0 and 1, got ${alpha}.`, {
      remedy: 'use e.g. 0.5',
    });
  }
  const colormap = opts.colormap ?? 'turbo';
  checkColormap(colormap);
  const heat = applyColormap(normMap, colormap);
  const out = new Uint8Array(w * h * 3);
  for (let i = 0; i < out.length; i++) out[i] = Math.round((1 - alpha) * rgb[i]! + alpha * heat[i]!);
  if (mask) {
    if (mask.length !== w * h) {
      throw new PartscanError('MASK', `The overlay mask has ${mask.length} pixels but the image is ${w}×${h}.`, {
        remedy: 'pass a mask of the image size (map it to the original size first)',
      });
    }
    const thickness = opts.contourWidth ?? (Math.min(w, h) < 200 ? 1 : 2);
    const [r, g, b] = opts.contourColor ?? DEFAULT_CONTOUR_COLOR;
    const edge = innerBoundary(mask, w, h, thickness);
    for (let i = 0; i < edge.length; i++) {
      if (edge[i]) {
        out[i * 3] = r;
        out[i * 3 + 1] = g;
        out[i * 3 + 2] = b;
      }
    }
  }
  return out;
}

async function writeEncoded(file: string, encode: () => Promise<Buffer>): Promise<void> {
  await ensureOutputDir(path.dirname(file));
  let png: Buffer;
  try {
    png = await encode();
  } catch (e) {
    throw new PartscanError('OUTPUT', `Cannot encode ${file}: ${(e as Error).message}.`, { file, cause: e });
  }
  await writeFileAtomic(file, png);
}

/** Writes the overlay of {@link renderOverlay} as an 8-bit RGB PNG, atomically. */
export async function writeOverlayPng(
  file: string,
  img: RgbImage,
  normMap: ArrayLike<number>,
  mask?: ArrayLike<number>,
  opts: OverlayOptions = {},
): Promise<void> {
  const rgb = renderOverlay(img, normMap, mask, opts);
  await writeEncoded(file, () => rawImage(rgb, img.width, img.height, 3).png().toBuffer());
}

/** Writes an in-memory image as an 8-bit PNG (grey, RGB or RGBA as given), atomically. */
export async function writeImagePng(file: string, img: RgbImage): Promise<void> {
  const channels = checkImage(img);
  await writeEncoded(file, () => rawImage(img.data, img.width, img.height, channels).png().toBuffer());
}

/**
 * Writes a normalised map as a 16-bit greyscale PNG: `round(clamp(v, 0, 1)·65535)`, NaN as 0. This
 * keeps the map's full resolution for re-analysis in any image tool (8-bit would quantise scores
 * into 256 steps).
 */
export async function writeHeatmap16Png(file: string, map01: ArrayLike<number>, w: number, h: number): Promise<void> {
  assertMapShape(map01, w, h, 'heatmap');
  const u16 = new Uint16Array(w * h);
  for (let i = 0; i < u16.length; i++) {
    const v = map01[i]!;
    u16[i] = v > 0 ? Math.round((v < 1 ? v : 1) * 65535) : 0;
  }
  // sharp takes the sample depth from the typed array's type: a Uint16Array is read as 'ushort'.
  await writeEncoded(file, () => sharp(u16, { raw: { width: w, height: h, channels: 1 } }).toColourspace('grey16').png().toBuffer());
}

/** Writes a binary mask (non-zero = defect) as an 8-bit greyscale PNG of 0/255. */
export async function writeMaskPng(file: string, mask: ArrayLike<number>, w: number, h: number): Promise<void> {
  assertMapShape(mask, w, h, 'mask');
  const bytes = maskBytes(mask, w * h);
  await writeEncoded(file, () => rawImage(bytes, w, h, 1).png().toBuffer());
}

/** Name of the tensor inside a heatmap safetensors file. */
export const HEATMAP_TENSOR = 'heatmap';

/**
 * Encodes a float map as a safetensors file: 8-byte little-endian header length, a JSON header
 * `{"heatmap": {"dtype": "F32", "shape": [h, w], "data_offsets": [0, 4·w·h]}, "__metadata__": {...}}`
 * padded with spaces to a multiple of 8 bytes, then the little-endian float32 values, row-major.
 * A tiny, documented format every numeric stack reads (`safetensors.numpy.load_file(f)['heatmap']`)
 * — the raw (unclamped) map, unlike the 16-bit PNG. Metadata values must be strings (safetensors rule).
 */
export function encodeHeatmapFloat(
  map: ArrayLike<number>,
  w: number,
  h: number,
  metadata: Record<string, string> = {},
): Uint8Array {
  assertMapShape(map, w, h, 'heatmap');
  const byteLength = w * h * 4;
  const header: Record<string, unknown> = {
    [HEATMAP_TENSOR]: { dtype: 'F32', shape: [h, w], data_offsets: [0, byteLength] },
  };
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + byteLength);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (let i = 0; i < w * h; i++) view.setFloat32(base + i * 4, map[i]!, true);
  return out;
}

/** A heatmap read back from its safetensors file. */
export interface FloatHeatmap {
  /** Row-major values. */
  data: Float32Array;
  /** Width. */
  width: number;
  /** Height. */
  height: number;
  /** The file's `__metadata__` (empty when absent). */
  metadata: Record<string, string>;
}

/** Decodes {@link encodeHeatmapFloat}'s format; throws 'OPTIONS' on anything else. */
export function decodeHeatmapFloat(bytes: Uint8Array, file = '<buffer>'): FloatHeatmap {
  const bad = (why: string): PartscanError =>
    new PartscanError('OPTIONS', `${file} is not a partscan float heatmap: ${why}.`, {
      file,
      remedy: 'pass a .safetensors heatmap written by partscan',
    });
  if (bytes.length < 8) throw bad('too short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.length - 8) throw bad('the header length exceeds the file');
  let header: Record<string, { dtype?: string; shape?: number[]; data_offsets?: number[] }>;
  try {
    header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLength)).toString('utf8'));
  } catch {
    throw bad('the header is not JSON');
  }
  const t = header[HEATMAP_TENSOR];
  const [h, w] = t?.shape ?? [];
  const [begin, end] = t?.data_offsets ?? [];
  if (t?.dtype !== 'F32' || !Number.isInteger(h) || !Number.isInteger(w) || begin === undefined || end === undefined) {
    throw bad(`no F32 '${HEATMAP_TENSOR}' tensor`);
  }
  const base = 8 + headerLength;
  if (end - begin !== w! * h! * 4 || base + end > bytes.length) throw bad('the data does not match the shape');
  const data = new Float32Array(w! * h!);
  for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(base + begin + i * 4, true);
  const metadata = (header.__metadata__ ?? {}) as unknown as Record<string, string>;
  return { data, width: w!, height: h!, metadata };
}

/** Writes {@link encodeHeatmapFloat}'s safetensors heatmap atomically (use the `.safetensors` extension). */
export async function writeHeatmapFloat(
  file: string,
  map: ArrayLike<number>,
  w: number,
  h: number,
  metadata: Record<string, string> = {},
): Promise<void> {
  const bytes = encodeHeatmapFloat(map, w, h, metadata);
  await ensureOutputDir(path.dirname(file));
  await writeFileAtomic(file, bytes);
}

/** Reads a heatmap written by {@link writeHeatmapFloat}. */
export async function readHeatmapFloat(file: string): Promise<FloatHeatmap> {
  return decodeHeatmapFloat(await fs.readFile(file), file);
}
