/**
 * Image → network input. One sharp pipeline serves fit and score alike:
 * decode (pixel cap, strict on truncation) → EXIF auto-orient → flatten alpha on the configured
 * background → 8-bit sRGB RGB (grey replicated, 16-bit scaled, CMYK converted) → square resize without
 * cropping → optional centre crop → mean/std normalisation into CHW float32.
 */
import sharp, { type Sharp } from 'sharp';
import { PartscanError } from '../errors.js';
import type { ImageInfo, PreprocessOptions, PreprocessedImage } from '../types.js';
import { BUFFER_SOURCE, DECODE_FAIL_ON, decodeError, probeImage, readImageBytes, type ImageBytes } from './decode.js';
import { centreCropOffset } from './crop.js';
import { DEFAULT_MAX_PIXELS, validatePreprocessOptions } from './options.js';
import { FRAME_SOURCE, isRawFrame, rawFrameInfo, rawFramePipeline, type RawFrame } from './raw-frame.js';

/** What preprocessing takes: a file path, encoded bytes (PNG, JPEG, … in any Uint8Array) or a raw frame. */
export type ImageInput = string | Uint8Array | RawFrame;

/** The label of a raw frame for decode-error messages (it has no encoded bytes). */
const FRAME_BYTES: ImageBytes = { data: Buffer.alloc(0), label: FRAME_SOURCE };

/** How many images are decoded at once in a batch; sharp parallelises inside each decode as well. */
const BATCH_CONCURRENCY = 4;

/**
 * Starts the shared decode pipeline: pixel cap, auto-orientation, alpha flattening and conversion to
 * 8-bit sRGB. `pipelineColourspace('srgb')` converts at load time, before flattening: grey becomes three
 * identical channels (so grey+alpha flattens onto the true RGB background, not onto its first
 * component), 16-bit samples are scaled to 8-bit and CMYK is converted with its embedded (or libvips'
 * default) profile, which is markedly closer to the RGB original than converting at the end.
 */
function srgbPipeline(bytes: ImageBytes, maxPixels: number, background: readonly [number, number, number]): Sharp {
  return sharp(bytes.data, { failOn: DECODE_FAIL_ON, limitInputPixels: maxPixels, autoOrient: true })
    .pipelineColourspace('srgb')
    .flatten({ background: { r: background[0], g: background[1], b: background[2] } })
    .toColourspace('srgb');
}

/** Runs a pipeline to raw 8-bit RGB, mapping decoder failures. */
async function toRawRgb(
  pipeline: Sharp,
  bytes: ImageBytes,
  maxPixels: number,
): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    const { data, info } = await pipeline.removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new PartscanError('IMAGE_UNSUPPORTED', `Image ${bytes.label} decoded to ${info.channels} channels instead of RGB.`, {
        file: bytes.label === BUFFER_SOURCE ? undefined : bytes.label,
        remedy: 'convert it to an 8-bit RGB or greyscale PNG/JPEG',
      });
    }
    return { data, width: info.width, height: info.height };
  } catch (e) {
    throw decodeError(e, bytes, maxPixels);
  }
}

/**
 * Writes the normalised CHW tensor of `rgb` (interleaved 8-bit, side `size`) into `out`, cropping the
 * centre `crop`×`crop` window. A 256-entry table per channel replaces two float ops per sample.
 */
function normaliseInto(
  rgb: Uint8Array,
  size: number,
  crop: number,
  opts: PreprocessOptions,
  out: Float32Array,
): void {
  const offset = centreCropOffset(size, crop);
  const plane = crop * crop;
  for (let c = 0; c < 3; c++) {
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - opts.mean[c]!) / opts.std[c]!;
    const base = c * plane;
    for (let y = 0; y < crop; y++) {
      const src = ((y + offset) * size + offset) * 3 + c;
      const dst = base + y * crop;
      for (let x = 0; x < crop; x++) out[dst + x] = lut[rgb[src + x * 3]!]!;
    }
  }
}

/**
 * Opens an image input once: a raw frame is checked against `maxPixels` (once) and read in place; a
 * file or encoded bytes are read and probed against `maxPixels`. Gives the bytes for decode-error
 * messages, the source's facts and the start of the shared decode pipeline.
 * @throws the errors of checkRawFrame, {@link readImageBytes} and {@link probeImage}.
 */
async function openImage(
  source: ImageInput,
  maxPixels: number,
  background: readonly [number, number, number],
): Promise<{ bytes: ImageBytes; info: ImageInfo; pipeline: Sharp }> {
  if (isRawFrame(source)) {
    const pipeline = rawFramePipeline(source, background, maxPixels);
    return { bytes: FRAME_BYTES, info: rawFrameInfo(source), pipeline };
  }
  const bytes = await readImageBytes(source);
  const info = await probeImage(bytes, maxPixels);
  return { bytes, info, pipeline: srgbPipeline(bytes, maxPixels, background) };
}

/** Decodes (or, for a raw frame, reads) and preprocesses one image into `out` (length 3·side²), returning its facts. */
export async function preprocessImageInto(
  source: ImageInput,
  opts: PreprocessOptions,
  out: Float32Array,
): Promise<PreprocessedImage> {
  const { bytes, info, pipeline } = await openImage(source, opts.maxPixels, opts.background);
  // Full decode before resizing (fastShrinkOnLoad off): JPEG shrink-on-load (DCT scaling) would make
  // JPEG and PNG copies of the same part preprocess differently.
  const resize = { fit: 'fill', kernel: opts.kernel, fastShrinkOnLoad: false } as const;
  const raw = await toRawRgb(pipeline.resize(opts.imageSize, opts.imageSize, resize), bytes, opts.maxPixels);
  const size = opts.cropSize ?? opts.imageSize;
  normaliseInto(raw.data, opts.imageSize, size, opts, out);
  return { tensor: out, size, info };
}

/**
 * Preprocesses pixels that are already decoded and oriented (8-bit sRGB RGB or gray, no alpha, no ICC
 * profile: what the decode of an ordinary PNG/JPEG gives) into `out` (length 3·side²), with the same
 * resize and normalisation as {@link preprocessImage}, so the same values as preprocessing the file.
 * For pixels decoded for another purpose (the fit's guards) without a second decode.
 */
export async function preprocessPixelsInto(
  pixels: { data: Uint8Array; width: number; height: number; channels: 1 | 3 },
  opts: PreprocessOptions,
  out: Float32Array,
): Promise<void> {
  const { width, height, channels } = pixels;
  const { data, info } = await sharp(pixels.data, { raw: { width, height, channels } })
    .pipelineColourspace('srgb')
    .toColourspace('srgb')
    .resize(opts.imageSize, opts.imageSize, { fit: 'fill', kernel: opts.kernel, fastShrinkOnLoad: false })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) {
    throw new PartscanError('IMAGE_UNSUPPORTED', `Decoded pixels gave ${info.channels} channels instead of RGB.`, {
      remedy: 'pass 8-bit RGB or gray pixels',
    });
  }
  normaliseInto(data, opts.imageSize, opts.cropSize ?? opts.imageSize, opts, out);
}

/**
 * Preprocesses one image (file path or encoded bytes) into a normalised [3, size, size] CHW tensor,
 * where size is `cropSize ?? imageSize`. Very small images are upscaled, not refused: check
 * `info.width`/`info.height` to warn about them.
 * @throws PartscanError 'IMAGE_DECODE' (missing, empty, truncated or non-image file),
 *   'IMAGE_UNSUPPORTED' (a format the decoder cannot read), 'IMAGE_TOO_LARGE' (above maxPixels),
 *   'OPTIONS' (invalid options).
 */
export async function preprocessImage(source: ImageInput, opts: PreprocessOptions): Promise<PreprocessedImage> {
  const o = validatePreprocessOptions(opts);
  const size = o.cropSize ?? o.imageSize;
  return preprocessImageInto(source, o, new Float32Array(3 * size * size));
}

/**
 * Preprocesses several images into one NCHW batch tensor [N, 3, size, size]. Each returned image's
 * `tensor` is a view into the batch tensor (no copy). The first failure rejects the whole batch.
 * @throws the same errors as {@link preprocessImage}.
 */
export async function preprocessBatch(
  sources: ImageInput[],
  opts: PreprocessOptions,
): Promise<{
  /** The batch, NCHW [N, 3, size, size]. */
  tensor: Float32Array;
  /** Side of each image in the batch, in pixels. */
  size: number;
  /** Each image, its `tensor` a view into the batch. */
  images: PreprocessedImage[];
}> {
  const o = validatePreprocessOptions(opts);
  const size = o.cropSize ?? o.imageSize;
  const per = 3 * size * size;
  const tensor = new Float32Array(per * sources.length);
  const images: PreprocessedImage[] = new Array(sources.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < sources.length) {
      const i = next++;
      images[i] = await preprocessImageInto(sources[i]!, o, tensor.subarray(i * per, (i + 1) * per));
    }
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, sources.length) }, worker));
  return { tensor, size, images };
}

/**
 * Auto-oriented original as 8-bit sRGB RGB (for overlays/exports), optionally resized to fit maxSide
 * (never enlarged). Alpha is flattened on `background`, white by default like
 * `defaultPreprocessOptions`, so overlays show the part as the model saw it.
 * @throws the decode errors of {@link preprocessImage}; 'OPTIONS' for a bad maxSide.
 */
export async function loadRgb(
  source: ImageInput,
  opts: { maxSide?: number; background?: [number, number, number]; maxPixels?: number } = {},
): Promise<{
  /** Interleaved 8-bit RGB, row-major. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}> {
  return (await decodeRgb(source, opts)).rgb;
}

/**
 * The size of a `width`×`height` image downsized to fit `maxSide` (aspect ratio kept, never enlarged):
 * what {@link loadRgb} returns, and what every export of an image shares.
 */
export function fitInside(
  width: number,
  height: number,
  maxSide: number | undefined,
): {
  /** Width after downsizing. */
  width: number;
  /** Height after downsizing. */
  height: number;
} {
  const long = Math.max(width, height);
  if (maxSide === undefined || long <= maxSide) return { width, height };
  const scale = maxSide / long;
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** {@link loadRgb}, with the source's facts (one read of the file). */
async function decodeRgb(
  source: ImageInput,
  opts: { maxSide?: number; background?: readonly [number, number, number]; maxPixels?: number },
): Promise<{ rgb: { data: Uint8Array; width: number; height: number }; info: ImageInfo }> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (opts.maxSide !== undefined && !(Number.isInteger(opts.maxSide) && opts.maxSide > 0)) {
    throw new PartscanError('OPTIONS', `loadRgb: maxSide must be a positive integer, got ${opts.maxSide}.`, {
      remedy: 'pass a positive integer or leave maxSide out',
    });
  }
  const opened = await openImage(source, maxPixels, opts.background ?? [255, 255, 255]);
  const { bytes, info } = opened;
  let pipeline = opened.pipeline;
  if (opts.maxSide !== undefined && Math.max(info.width, info.height) > opts.maxSide) {
    const size = fitInside(info.width, info.height, opts.maxSide);
    pipeline = pipeline.resize(size.width, size.height, { fit: 'fill' });
  }
  const raw = await toRawRgb(pipeline, bytes, maxPixels);
  return { rgb: { data: new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength), width: raw.width, height: raw.height }, info };
}

/**
 * Loads a single-channel mask (ROI or ground truth) resized with NEAREST to width×height: 1 where > 127,
 * else 0. Colour masks count a pixel as set when any channel is > 127 (a red annotation on black has a
 * luminance below 127 but is clearly marked); transparent pixels count as unset.
 * @throws PartscanError 'MASK' when the file cannot be read or decoded, 'OPTIONS' for a bad size.
 */
export async function loadMask(source: string | Buffer, width: number, height: number): Promise<Uint8Array> {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!(Number.isInteger(v) && v > 0)) {
      throw new PartscanError('OPTIONS', `loadMask: ${name} must be a positive integer, got ${v}.`, {
        remedy: 'pass the size of the score map or image the mask should match',
      });
    }
  }
  let raw: { data: Buffer; width: number; height: number };
  try {
    const bytes = await readImageBytes(source);
    await probeImage(bytes, DEFAULT_MAX_PIXELS);
    const pipeline = srgbPipeline(bytes, DEFAULT_MAX_PIXELS, [0, 0, 0]).resize(width, height, {
      fit: 'fill',
      kernel: 'nearest',
      fastShrinkOnLoad: false,
    });
    raw = await toRawRgb(pipeline, bytes, DEFAULT_MAX_PIXELS);
  } catch (e) {
    const label = typeof source === 'string' ? source : BUFFER_SOURCE;
    const inner = e instanceof PartscanError ? e : undefined;
    throw new PartscanError('MASK', `Cannot load mask ${label}: ${inner ? inner.message : String(e)}`, {
      file: typeof source === 'string' ? source : undefined,
      remedy: inner?.remedy ?? 'give a readable single-channel PNG mask (white = marked)',
      cause: e,
    });
  }
  const out = new Uint8Array(width * height);
  const d = raw.data;
  for (let p = 0, q = 0; p < out.length; p++, q += 3) {
    out[p] = d[q]! > 127 || d[q + 1]! > 127 || d[q + 2]! > 127 ? 1 : 0;
  }
  return out;
}

/** One tile of a tiled image, in original-image pixels. */
export interface TileBox {
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
 * Most tiles one image may make: each is one backbone input, and all of an image's tiles are held at
 * once. A 100 MP image in 512 px tiles at the default overlap (1/8) makes about 500.
 */
export const MAX_TILES_PER_IMAGE = 4096;

/** Most float32 values of one image's tiles together (2 GiB). */
const MAX_TILE_TENSOR_ELEMENTS = 2 ** 29;

/**
 * Tiles covering a `width`×`height` image with `tile`-pixel squares overlapping by at least `overlap`
 * pixels. The last tile of a row/column is aligned to the image edge so the whole image is covered with
 * equal-size tiles; an image smaller than a tile gets one tile of its own size.
 */
export function tileLayout(width: number, height: number, tile: number, overlap: number): TileBox[] {
  if (!Number.isInteger(tile) || tile < 16 || !Number.isInteger(overlap) || overlap < 0 || overlap >= tile) {
    throw new PartscanError('OPTIONS', `Invalid tiling: tile ${tile} px, overlap ${overlap} px.`, {
      remedy: 'use a tile of at least 16 px and 0 ≤ overlap < tile',
    });
  }
  const step = tile - overlap;
  const count = (n: number) => (n <= tile ? 1 : Math.ceil((n - tile) / step) + 1);
  const tiles = count(width) * count(height);
  if (tiles > MAX_TILES_PER_IMAGE) {
    throw new PartscanError('IMAGE_TOO_LARGE', `A ${width}×${height} image makes ${tiles} tiles of ${tile} px at overlap ${overlap}, more than the ${MAX_TILES_PER_IMAGE} partscan scores per image.`, {
      remedy: 'downscale the image, or fit with larger tiles or a smaller overlap (--tile, --tile-overlap)',
    });
  }
  const starts = (n: number): number[] => {
    if (n <= tile) return [0];
    const out: number[] = [];
    for (let s = 0; s + tile < n; s += step) out.push(s);
    out.push(n - tile);
    return out;
  };
  const boxes: TileBox[] = [];
  for (const y of starts(height)) {
    for (const x of starts(width)) boxes.push({ x, y, width: Math.min(tile, width), height: Math.min(tile, height) });
  }
  return boxes;
}

/**
 * Preprocesses an image as tiles at native resolution: the image is decoded once (same colour handling
 * as {@link preprocessImage}), cut into {@link tileLayout} tiles, and each tile is resized to
 * `opts.imageSize` (a no-op when tile = imageSize) and normalised. Returns [T, 3, S, S].
 */
export async function preprocessTiles(
  source: ImageInput,
  opts: PreprocessOptions,
  tile: number,
  overlap: number,
): Promise<{
  /** The tiles, NCHW [T, 3, size, size]. */
  tensor: Float32Array;
  /** Side of each tile in the tensor, in pixels. */
  size: number;
  /** Where each tile lies in the image, in tensor order. */
  boxes: TileBox[];
  /** The decoded image's size and format. */
  info: PreprocessedImage['info'];
}> {
  const o = validatePreprocessOptions(opts);
  const { rgb: full, info } = await decodeRgb(source, { background: o.background, maxPixels: o.maxPixels });
  const boxes = tileLayout(full.width, full.height, tile, overlap);
  const S = o.imageSize;
  const per = 3 * S * S;
  if (per * boxes.length > MAX_TILE_TENSOR_ELEMENTS) {
    throw new PartscanError('IMAGE_TOO_LARGE', `A ${full.width}×${full.height} image makes ${boxes.length} tiles of ${S}×${S} px: ${((per * boxes.length * 4) / 2 ** 30).toFixed(1)} GiB of network input, more than the ${MAX_TILE_TENSOR_ELEMENTS / 2 ** 28} GiB partscan holds per image.`, {
      remedy: 'downscale the image, or fit with larger tiles, a smaller overlap or a smaller --image-size',
    });
  }
  const tensor = new Float32Array(per * boxes.length);
  await Promise.all(
    boxes.map(async (b, i) => {
      const { data } = await sharp(full.data, { raw: { width: full.width, height: full.height, channels: 3 } })
        .extract({ left: b.x, top: b.y, width: b.width, height: b.height })
        .resize(S, S, { fit: 'fill', kernel: o.kernel })
        .raw()
        .toBuffer({ resolveWithObject: true });
      normaliseInto(data, S, S, o, tensor.subarray(i * per, (i + 1) * per));
    }),
  );
  return { tensor, size: S, boxes, info };
}
