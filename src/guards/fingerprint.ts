/**
 * Per-image fingerprints for the training-set guards: file and pixel hashes, a perceptual hash,
 * header facts, gray-level moments, a thumbnail for near-duplicate checks and the global statistics
 * drift detection uses — all from one decode. This is the only module of the guards that touches
 * the file system and the decoder; everything downstream is pure.
 */

import { createHash } from 'node:crypto';
import sharp, { type OutputInfo } from 'sharp';
import { PartscanError } from '../errors.js';
import { decodeError, DECODE_FAIL_ON, probeImage, readImageBytes, type ImageBytes } from '../preprocess/decode.js';
import type { ImageInfo } from '../types.js';
import { DEFAULT_MAX_PIXELS } from '../preprocess/options.js';
import { globalImageStats, type GlobalImageStats, type RawPixels } from './image-stats.js';
import { perceptualHash } from './phash.js';
import { lumaFromInterleaved } from './resample.js';
import { grayThumbnail } from './thumbnail.js';

/** What {@link imageFingerprint} learns about one image. */
export interface ImageFingerprint {
  /** File path, or '<buffer>'. */
  file: string;
  /** SHA-256 of the encoded bytes (hex): equal for byte-identical files. */
  sha256: string;
  /**
   * SHA-256 (hex) of the decoded 8-bit pixels and their size: equal for the same picture saved
   * twice (PNG re-compressed, metadata changed, lossless format change).
   */
  pixelSha256: string;
  /** 64-bit DCT perceptual hash of the luma (see `perceptualHash`; `hashToHex` for JSON). */
  phash: bigint;
  /** Width after EXIF auto-orientation. */
  width: number;
  /** Height after EXIF auto-orientation. */
  height: number;
  /** Channels in the file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA or CMYK). */
  channels: number;
  /** Colour space reported by the decoder (srgb, b-w, cmyk, ...). */
  space: string;
  /** Container format (png, jpeg, ...). */
  format: string;
  /** Whether the file has an alpha channel. */
  hasAlpha: boolean;
  /** Mean luma, 0..255. */
  mean: number;
  /** Standard deviation of luma, 0..255 scale (a constant image has 0). */
  std: number;
  /** Skewness of the luma histogram (0 when std is 0). */
  skewness: number;
  /** Shannon entropy of the 256-bin luma histogram, bits (0 for a constant image, ≤ 8). */
  entropy: number;
  /** 128×128 area-averaged gray thumbnail, for near-duplicate checks. */
  thumbnail: Uint8Array;
  /** Global statistics for drift detection. */
  stats: GlobalImageStats;
}

/** Options of {@link imageFingerprint}. */
export interface FingerprintOptions {
  /** Decoded pixel cap (decompression-bomb guard); default 100 M. */
  maxPixels?: number;
}

/** Luma moments and histogram entropy. */
function lumaMoments(luma: Float32Array): { mean: number; std: number; skewness: number; entropy: number } {
  const n = luma.length;
  const hist = new Uint32Array(256);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = luma[i]!;
    sum += v;
    // Math.round for v ≥ 0 (luma is), as integer arithmetic: this loop runs over every training pixel.
    const k = (v + 0.5) | 0;
    hist[k > 255 ? 255 : k < 0 ? 0 : k]!++;
  }
  const mean = sum / n;
  let m2 = 0;
  let m3 = 0;
  for (let i = 0; i < n; i++) {
    const d = luma[i]! - mean;
    m2 += d * d;
    m3 += d * d * d;
  }
  m2 /= n;
  m3 /= n;
  const std = Math.sqrt(m2);
  let entropy = 0;
  for (const c of hist) if (c > 0) entropy -= (c / n) * Math.log2(c / n);
  return { mean, std, skewness: std > 1e-9 ? m3 / (std * std * std) : 0, entropy };
}

/** Fingerprint of already-decoded pixels (pure part of {@link imageFingerprint}). */
export function fingerprintPixels(
  pixels: RawPixels,
  header: { file: string; sha256: string; channels: number; space: string; format: string; hasAlpha: boolean },
): ImageFingerprint {
  const { data, width, height, channels } = pixels;
  const luma = lumaFromInterleaved(data, width, height, channels);
  const pixelSha256 = createHash('sha256').update(`${width}x${height}x${channels}\n`).update(data).digest('hex');
  return {
    ...header,
    pixelSha256,
    phash: perceptualHash(luma, width, height),
    width,
    height,
    ...lumaMoments(luma),
    thumbnail: grayThumbnail(luma, width, height),
    stats: globalImageStats(pixels, luma),
  };
}

/** One image read and decoded once: its bytes, header facts, 8-bit pixels and {@link ImageFingerprint}. */
export interface DecodedFingerprint {
  /** The encoded bytes, as read. */
  bytes: ImageBytes;
  /** Header facts (probe). */
  info: ImageInfo;
  /** Whether the header carries an ICC profile. */
  hasProfile: boolean;
  /** Decoded pixels: auto-oriented, 8-bit, the file's own channels. */
  pixels: RawPixels;
  /** The fingerprint of those pixels. */
  fingerprint: ImageFingerprint;
}

/**
 * Reads and decodes an image once and fingerprints it, keeping the decoded pixels for a caller that
 * goes on to preprocess them (the fit: `fingerprintAndPreprocess`). Errors as {@link imageFingerprint}.
 */
export async function decodeAndFingerprint(source: string | Buffer, options: FingerprintOptions = {}): Promise<DecodedFingerprint> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const bytes = await readImageBytes(source);
  const info = await probeImage(bytes, maxPixels);
  let decoded: { data: Buffer; info: OutputInfo };
  let hasProfile = false;
  try {
    const image = sharp(bytes.data, { failOn: DECODE_FAIL_ON, limitInputPixels: false });
    hasProfile = (await image.metadata()).hasProfile === true;
    decoded = await image.autoOrient().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw decodeError(e, bytes, maxPixels);
  }
  const { width, height, channels } = decoded.info;
  if (width * height === 0) {
    throw new PartscanError('IMAGE_DECODE', `Image ${bytes.label} decoded to no pixels.`, {
      remedy: 're-export the image',
    });
  }
  const data = new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.byteLength);
  const pixels = { data, width, height, channels };
  const fingerprint = fingerprintPixels(pixels, {
    file: bytes.label,
    sha256: createHash('sha256').update(bytes.data).digest('hex'),
    channels: info.channels,
    space: info.space,
    format: info.format,
    hasAlpha: info.hasAlpha,
  });
  return { bytes, info, hasProfile, pixels, fingerprint };
}

/**
 * Decodes an image once (EXIF auto-orientation applied, 16-bit and CMYK converted to 8-bit sRGB/gray
 * by the decoder) and returns its {@link ImageFingerprint}. Throws 'IMAGE_DECODE',
 * 'IMAGE_UNSUPPORTED' or 'IMAGE_TOO_LARGE' like the preprocessing does.
 */
export async function imageFingerprint(source: string | Buffer, options: FingerprintOptions = {}): Promise<ImageFingerprint> {
  return (await decodeAndFingerprint(source, options)).fingerprint;
}
