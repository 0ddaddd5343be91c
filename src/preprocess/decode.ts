/**
 * Reading image bytes and turning decoder failures into actionable {@link PartscanError}s.
 * All decoding goes through sharp (libvips); this module only reads files, sniffs signatures to tell
 * "valid but unsupported format" from "corrupt bytes", and reads header facts.
 */
import sharp, { type Metadata } from 'sharp';
import { PartscanError } from '../errors.js';
import { readRegularFile } from '../util/regular-file.js';
import type { ImageInfo } from '../types.js';
import { DEFAULT_MAX_PIXELS } from './options.js';

/** Label used in errors and {@link ImageInfo.source} for in-memory input. */
export const BUFFER_SOURCE = '<buffer>';

/**
 * sharp's `failOn` level for every decode. 'error' aborts on truncated or corrupt pixel data (a half
 * transferred camera image must not be scored as if its missing rows were grey) while still accepting
 * files that only raise decoder warnings, such as JPEGs with extraneous bytes between markers, which
 * many cameras write.
 */
export const DECODE_FAIL_ON = 'error' as const;

/** Image bytes plus the name to use in messages. */
export interface ImageBytes {
  /** The encoded file contents. */
  data: Buffer;
  /** File path, or {@link BUFFER_SOURCE}. */
  label: string;
}

const DECODE_REMEDY = 're-export the image, or check the camera transfer (the file may be incomplete or corrupt)';

/**
 * Reads a file (or wraps a buffer), mapping file-system problems and empty input to 'IMAGE_DECODE'.
 * Reading the whole file once lets the header probe and the decode share the bytes.
 */
export async function readImageBytes(source: string | Buffer | Uint8Array): Promise<ImageBytes> {
  if (typeof source !== 'string') {
    const data = Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    if (data.length === 0) {
      throw new PartscanError('IMAGE_DECODE', 'Cannot decode image <buffer>: the buffer is empty (0 bytes).', {
        remedy: 'pass the encoded image file contents (PNG, JPEG, TIFF, WebP...)',
      });
    }
    return { data, label: BUFFER_SOURCE };
  }
  let data: Buffer;
  try {
    data = await readRegularFile(source, (kind) =>
      new PartscanError('IMAGE_DECODE', `Cannot read image ${source}: it is ${kind}, not an image file.`, {
        file: source,
        remedy: 'give the path of an image file; special files are never opened for reading',
      }),
    );
  } catch (e) {
    if (e instanceof PartscanError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'the file does not exist'
        : code === 'EISDIR'
          ? 'the path is a directory, not an image file'
          : code === 'ELOOP'
            ? 'the path is a loop of symbolic links'
            : code === 'EACCES' || code === 'EPERM'
              ? 'the file is not readable (permission denied)'
              : `the file could not be read (${code ?? String(e)})`;
    throw new PartscanError('IMAGE_DECODE', `Cannot read image ${source}: ${why}.`, {
      file: source,
      remedy: code === 'ENOENT' ? 'check the path (relative paths are resolved from the current directory)' : 'check the path and its permissions',
      cause: e,
    });
  }
  if (data.length === 0) {
    throw new PartscanError('IMAGE_DECODE', `Cannot decode image ${source}: the file is empty (0 bytes).`, {
      file: source,
      remedy: DECODE_REMEDY,
    });
  }
  return { data, label: source };
}

/** Signatures of real image/document formats that this sharp build cannot read. */
const UNSUPPORTED_SIGNATURES: { name: string; test: (b: Buffer) => boolean }[] = [
  { name: 'BMP', test: (b) => b.length >= 14 && b[0] === 0x42 && b[1] === 0x4d && b.readUInt32LE(2) > 14 },
  { name: 'Netpbm (PBM/PGM/PPM/PAM)', test: (b) => b.length >= 3 && b[0] === 0x50 && b[1]! >= 0x31 && b[1]! <= 0x37 && /\s/.test(String.fromCharCode(b[2]!)) },
  { name: 'Photoshop PSD', test: (b) => b.subarray(0, 4).toString('latin1') === '8BPS' },
  { name: 'PDF', test: (b) => b.subarray(0, 5).toString('latin1') === '%PDF-' },
  { name: 'JPEG 2000', test: (b) => b.subarray(4, 12).toString('latin1') === 'jP  \r\n\x87\n' || (b[0] === 0xff && b[1] === 0x4f && b[2] === 0xff && b[3] === 0x51) },
  { name: 'JPEG XL', test: (b) => (b[0] === 0xff && b[1] === 0x0a) || b.subarray(4, 8).toString('latin1') === 'JXL ' },
  { name: 'ICO/CUR', test: (b) => b.length >= 6 && b[0] === 0 && b[1] === 0 && (b[2] === 1 || b[2] === 2) && b[3] === 0 && b[4]! > 0 },
  { name: 'DDS', test: (b) => b.subarray(0, 4).toString('latin1') === 'DDS ' },
  { name: 'OpenEXR', test: (b) => b[0] === 0x76 && b[1] === 0x2f && b[2] === 0x31 && b[3] === 0x01 },
  { name: 'FITS', test: (b) => b.subarray(0, 9).toString('latin1') === 'SIMPLE  =' },
  { name: 'Radiance HDR', test: (b) => b.subarray(0, 2).toString('latin1') === '#?' },
  { name: 'DICOM', test: (b) => b.length >= 132 && b.subarray(128, 132).toString('latin1') === 'DICM' },
  { name: 'HEIC/HEIF', test: (b) => b.subarray(4, 8).toString('latin1') === 'ftyp' && /^(heic|heix|hevc|hevx|mif1|msf1)$/.test(b.subarray(8, 12).toString('latin1')) },
];

/** Names the format when the bytes carry the signature of a known image format sharp cannot read. */
export function sniffUnsupportedFormat(data: Buffer): string | undefined {
  return UNSUPPORTED_SIGNATURES.find((s) => s.test(data))?.name;
}

/** Maps an error thrown by sharp for `label` to the matching {@link PartscanError}. */
export function decodeError(e: unknown, bytes: ImageBytes, maxPixels?: number): PartscanError {
  if (e instanceof PartscanError) return e;
  const reason = e instanceof Error ? e.message : String(e);
  const file = bytes.label === BUFFER_SOURCE ? undefined : bytes.label;
  const init = (remedy: string) => ({ file, remedy, cause: e });
  if (/exceeds pixel limit/i.test(reason)) {
    return new PartscanError(
      'IMAGE_TOO_LARGE',
      `Image ${bytes.label} has more pixels than the limit${maxPixels !== undefined ? ` of ${maxPixels}` : ''} (possible decompression bomb).`,
      init('raise maxPixels if the image is genuine, or downscale it before scoring'),
    );
  }
  if (/unsupported image format/i.test(reason)) {
    const format = sniffUnsupportedFormat(bytes.data);
    if (format !== undefined) {
      return new PartscanError(
        'IMAGE_UNSUPPORTED',
        `Image ${bytes.label} is a ${format} file, which partscan's decoder (sharp) cannot read.`,
        init('convert it to PNG, JPEG, TIFF or WebP'),
      );
    }
    return new PartscanError(
      'IMAGE_DECODE',
      `Cannot decode image ${bytes.label}: the bytes are not a recognised image format (wrong extension, or a corrupt or non-image file).`,
      init(DECODE_REMEDY),
    );
  }
  if (/not built in|no decoding plugin|unsupported (codec|feature|compression)|is not a known|not supported/i.test(reason)) {
    return new PartscanError(
      'IMAGE_UNSUPPORTED',
      `Image ${bytes.label} uses a format variant the decoder cannot read (${reason}).`,
      init('convert it to PNG, JPEG, TIFF or WebP'),
    );
  }
  return new PartscanError(
    'IMAGE_DECODE',
    `Cannot decode image ${bytes.label}: ${reason} (the file looks truncated or corrupt).`,
    init(DECODE_REMEDY),
  );
}

const DEPTH_BITS: Record<string, number> = {
  uchar: 8,
  char: 8,
  ushort: 16,
  short: 16,
  uint: 32,
  int: 32,
  float: 32,
  complex: 32,
  double: 64,
  dpcomplex: 64,
};

/** Reads header facts of already-loaded bytes and enforces the pixel cap. */
export async function probeImage(bytes: ImageBytes, maxPixels: number): Promise<ImageInfo> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes.data, { failOn: DECODE_FAIL_ON, limitInputPixels: false }).metadata();
  } catch (e) {
    throw decodeError(e, bytes, maxPixels);
  }
  if (!meta.width || !meta.height) {
    throw new PartscanError('IMAGE_DECODE', `Cannot decode image ${bytes.label}: the header has no valid size.`, {
      file: bytes.label === BUFFER_SOURCE ? undefined : bytes.label,
      remedy: DECODE_REMEDY,
    });
  }
  const pixels = meta.width * meta.height;
  if (pixels > maxPixels) {
    throw new PartscanError(
      'IMAGE_TOO_LARGE',
      `Image ${bytes.label} is ${meta.width}×${meta.height} = ${pixels} pixels, above the limit of ${maxPixels} (decompression-bomb guard).`,
      {
        file: bytes.label === BUFFER_SOURCE ? undefined : bytes.label,
        remedy: 'raise maxPixels if the image is genuine, or downscale it before scoring',
      },
    );
  }
  const info: ImageInfo = {
    source: bytes.label,
    width: meta.autoOrient?.width ?? meta.width,
    height: meta.autoOrient?.height ?? meta.height,
    channels: meta.channels,
    format: meta.format ?? 'unknown',
    space: meta.space ?? 'unknown',
    bitDepth: DEPTH_BITS[meta.depth ?? 'uchar'] ?? 8,
    hasAlpha: meta.hasAlpha ?? false,
  };
  if (meta.orientation !== undefined) info.orientation = meta.orientation;
  return info;
}

/**
 * Reads an image's header: size after EXIF auto-orientation, channels, format, colour space, bit depth.
 * Does not decode pixels, so a truncated file passes here and fails in `preprocessImage`.
 * @throws PartscanError 'IMAGE_DECODE' (missing, empty, non-image), 'IMAGE_UNSUPPORTED', 'IMAGE_TOO_LARGE'.
 */
export async function readImageInfo(source: string | Buffer, opts: { maxPixels?: number } = {}): Promise<ImageInfo> {
  const bytes = await readImageBytes(source);
  return probeImage(bytes, opts.maxPixels ?? DEFAULT_MAX_PIXELS);
}
