/**
 * A strict reader and a small writer for the safetensors format
 * (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON header
 * mapping tensor names to `{dtype, shape, data_offsets}` (plus an optional `__metadata__` map of
 * strings), then the raw little-endian tensor bytes.
 *
 * Weight files come from the network or from users, so every header field is checked before any
 * byte is interpreted: a bad file fails with a typed 'WEIGHTS_FORMAT' error naming the file, never
 * with a garbage tensor.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { PartscanError } from '../errors.js';
import { openRegular, readRegularFile } from '../util/regular-file.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { float16ToFloat32 } from '../util/float16.js';

/** Bytes per element of every dtype the safetensors format defines. */
export const SAFETENSORS_DTYPE_SIZES: Readonly<Record<string, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
});

/**
 * The safetensors reference implementation refuses headers above 100 MB; a larger length is a
 * corrupt or hostile file, and refusing it early avoids a huge allocation.
 */
const MAX_HEADER_BYTES = 100_000_000;

/** One tensor in a safetensors file: where its bytes are, relative to the start of the file. */
export interface SafeTensorEntry {
  /** Tensor name (e.g. 'layer1.0.conv1.weight'). */
  name: string;
  /** safetensors dtype name (e.g. 'F32', 'I64'). */
  dtype: string;
  /** Shape; [] for a scalar. */
  shape: number[];
  /** Offset of the first byte in the file (header included). */
  byteOffset: number;
  /** Number of bytes (elements × dtype size). */
  byteLength: number;
}

/** A tensor to write with {@link writeSafetensors}. */
export interface SafeTensorInput {
  /** Element type. */
  dtype: 'F32' | 'I64';
  /** Shape; the product must equal `data.length`. */
  shape: number[];
  /** Values (Float32Array for F32, BigInt64Array for I64). */
  data: Float32Array | BigInt64Array;
}

function formatError(source: string, what: string): PartscanError {
  return new PartscanError('WEIGHTS_FORMAT', `Invalid safetensors file ${source}: ${what}.`, {
    file: source,
    remedy: 'the file is corrupt, truncated or not a safetensors file; re-download or re-export it',
  });
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export { float16ToFloat32 };

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** Tensors by name, in header order (offsets relative to the start of the file). */
  entries: Map<string, SafeTensorEntry>;
  /** `__metadata__` strings ({} when absent). */
  metadata: Record<string, string>;
  /** Offset of the data section (8 + header length). */
  dataOffset: number;
  /** Length of the whole file. */
  fileLength: number;
}

/**
 * Parses and validates a safetensors header. `bytes` holds the start of the file (at least the
 * 8-byte length and the JSON header); `fileLength` is the length of the whole file, against which
 * the offsets are checked. Throws 'WEIGHTS_FORMAT' naming `source`.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileLength: number, source: string): SafetensorsHeader {
  if (fileLength < 8 || bytes.byteLength < 8) throw formatError(source, `only ${fileLength} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen64 = view.getBigUint64(0, true);
  if (headerLen64 < 2n || headerLen64 > BigInt(MAX_HEADER_BYTES)) {
    throw formatError(source, `header length ${headerLen64} is outside the sane range 2..${MAX_HEADER_BYTES}`);
  }
  const headerLen = Number(headerLen64);
  if (8 + headerLen > fileLength) {
    throw formatError(source, `header length ${headerLen} runs past the end of the file (${fileLength} bytes)`);
  }
  if (8 + headerLen > bytes.byteLength) throw new RangeError('parseSafetensorsHeader: pass at least the 8 + header length first bytes');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw formatError(source, `the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw formatError(source, 'the header is not a JSON object');
  }
  const dataStart = 8 + headerLen;
  const dataLength = fileLength - dataStart;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafeTensorEntry>();
  const spans: { name: string; start: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw formatError(source, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw formatError(source, `__metadata__ value "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw formatError(source, `entry "${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in SAFETENSORS_DTYPE_SIZES)) {
      throw formatError(source, `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPE_SIZES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw formatError(source, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger) || offsets[0] > offsets[1]) {
      throw formatError(source, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [start, end] = offsets as [number, number];
    if (end > dataLength) {
      throw formatError(source, `tensor "${name}" data_offsets [${start}, ${end}] run past the data section (${dataLength} bytes); the file is probably truncated`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = elements * SAFETENSORS_DTYPE_SIZES[dtype]!;
    if (expected !== end - start) {
      throw formatError(source, `tensor "${name}" shape [${shape.join(', ')}] × ${dtype} needs ${expected} bytes but its data_offsets span ${end - start}`);
    }
    spans.push({ name, start, end });
    entries.set(name, { name, dtype, shape: [...(shape as number[])], byteOffset: dataStart + start, byteLength: end - start });
  }
  // Overlapping tensors would alias each other's bytes: a writer bug or a crafted file. Gaps are
  // tolerated because some writers pad tensors for alignment.
  spans.sort((a, b) => a.start - b.start || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1]!;
    const cur = spans[i]!;
    if (cur.start < prev.end) {
      throw formatError(source, `tensors "${prev.name}" [${prev.start}, ${prev.end}] and "${cur.name}" [${cur.start}, ${cur.end}] overlap`);
    }
  }
  return { entries, metadata, dataOffset: dataStart, fileLength };
}

/** The error for a weights path that names a special file (FIFO, device). */
const notAFile = (file: string) => (kind: string) =>
  new PartscanError('WEIGHTS_FORMAT', `Weights file ${file} is ${kind}, not a file.`, { file, remedy: 'check the path given with --weights' });

/** A parsed safetensors file held in memory. */
export class SafeTensors {
  /** Tensors by name, in header order. */
  readonly entries: Map<string, SafeTensorEntry>;
  /** The header's `__metadata__` strings ({} when absent). */
  readonly metadata: Record<string, string>;
  /** Where the bytes came from (a file path, or '<buffer>'), used in error messages. */
  readonly source: string;
  private readonly bytes: Uint8Array;
  private sha256Hex: string | undefined;

  private constructor(bytes: Uint8Array, source: string, entries: Map<string, SafeTensorEntry>, metadata: Record<string, string>) {
    this.bytes = bytes;
    this.source = source;
    this.entries = entries;
    this.metadata = metadata;
  }

  /** Reads and validates a safetensors file. Throws 'WEIGHTS_FORMAT' for a missing, unreadable or malformed file. */
  static async open(file: string): Promise<SafeTensors> {
    let bytes: Buffer;
    try {
      bytes = await readRegularFile(file, notAFile(file));
    } catch (e) {
      if (e instanceof PartscanError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw new PartscanError('WEIGHTS_FORMAT', `Weights file ${file} does not exist.`, {
          file,
          remedy: 'check the path given with --weights',
          cause: e,
        });
      }
      throw new PartscanError('WEIGHTS_FORMAT', `Cannot read weights file ${file} (${code ?? String(e)}).`, {
        file,
        remedy: 'check that the path is a readable file',
        cause: e,
      });
    }
    return SafeTensors.fromBytes(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
  }

  /** Parses and validates safetensors bytes (kept by reference, not copied). */
  static fromBytes(bytes: Uint8Array, source = '<buffer>'): SafeTensors {
    const header = parseSafetensorsHeader(bytes, bytes.byteLength, source);
    return new SafeTensors(bytes, source, header.entries, header.metadata);
  }

  /** True when the file has a tensor of that name. */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The tensor's entry; throws 'WEIGHTS_MISSING_KEY' naming the key and file when absent. */
  entry(name: string): SafeTensorEntry {
    const e = this.entries.get(name);
    if (!e) {
      throw new PartscanError('WEIGHTS_MISSING_KEY', `Tensor "${name}" is missing from ${this.source}.`, {
        file: this.source,
        remedy: 'the weights do not match the requested architecture; check the file and the --backbone name',
      });
    }
    return e;
  }

  /** The tensor's shape (a copy). Throws 'WEIGHTS_MISSING_KEY' when absent. */
  shape(name: string): number[] {
    return [...this.entry(name).shape];
  }

  /** The tensor's raw little-endian bytes (a view, not a copy). */
  raw(name: string): Uint8Array {
    const e = this.entry(name);
    return this.bytes.subarray(e.byteOffset, e.byteOffset + e.byteLength);
  }

  /**
   * A float32 copy of the tensor; F32, F16, BF16 and F64 are converted. Other dtypes throw
   * 'WEIGHTS_FORMAT', a missing name 'WEIGHTS_MISSING_KEY'.
   */
  getFloat32(name: string): Float32Array {
    const e = this.entry(name);
    const raw = this.raw(name);
    const n = e.byteLength / SAFETENSORS_DTYPE_SIZES[e.dtype]!;
    const out = new Float32Array(n);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    switch (e.dtype) {
      case 'F32':
        if (LITTLE_ENDIAN_HOST) new Uint8Array(out.buffer).set(raw);
        else for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
        break;
      case 'F64':
        for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
        break;
      case 'F16':
        for (let i = 0; i < n; i++) out[i] = float16ToFloat32(view.getUint16(i * 2, true));
        break;
      case 'BF16': {
        // bfloat16 is the top half of a float32: shift it back into place.
        const u32 = new Uint32Array(out.buffer);
        // u32 and out share one buffer in native byte order, so this is right on any host.
        for (let i = 0; i < n; i++) u32[i] = view.getUint16(i * 2, true) << 16;
        break;
      }
      default:
        throw new PartscanError('WEIGHTS_FORMAT', `Tensor "${name}" in ${this.source} has dtype ${e.dtype}; a floating-point tensor (F32, F16, BF16, F64) is needed.`, {
          file: this.source,
          remedy: 'use a weights file with floating-point parameters',
        });
    }
    return out;
  }

  /** sha256 (hex) of the whole file's bytes; computed once. */
  sha256(): string {
    this.sha256Hex ??= createHash('sha256').update(this.bytes).digest('hex');
    return this.sha256Hex;
  }

  /** Size of the whole file in bytes. */
  get byteLength(): number {
    return this.bytes.byteLength;
  }
}

/**
 * Serialises tensors to safetensors bytes. Tensors are laid out in name order so the same input
 * always gives the same bytes; the header is padded with spaces to a multiple of 8 so tensor data
 * is 8-byte aligned, as the reference writer does.
 */
export function encodeSafetensors(tensors: Record<string, SafeTensorInput>, metadata?: Record<string, string>): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (!t.shape.every(isNonNegativeInteger) || elements !== t.data.length) {
      throw new PartscanError('INVALID_TENSOR', `Tensor "${name}" has shape [${t.shape.join(', ')}] but ${t.data.length} values.`, {
        remedy: 'make the shape product equal the number of values',
      });
    }
    const wantArray = t.dtype === 'F32' ? Float32Array : BigInt64Array;
    if (!(t.data instanceof wantArray)) {
      throw new PartscanError('INVALID_TENSOR', `Tensor "${name}" is declared ${t.dtype} but its data is a ${t.data.constructor.name}.`, {
        remedy: 'pass a Float32Array for F32 and a BigInt64Array for I64',
      });
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  const jsonBytes = new TextEncoder().encode(json);
  const padded = Math.ceil(jsonBytes.length / 8) * 8;
  json += ' '.repeat(padded - jsonBytes.length);
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(padded), true);
  out.set(new TextEncoder().encode(json), 8);
  let pos = 8 + padded;
  for (const name of names) {
    const t = tensors[name]!;
    if (LITTLE_ENDIAN_HOST) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    } else if (t.data instanceof Float32Array) {
      for (let i = 0; i < t.data.length; i++) view.setFloat32(pos + i * 4, t.data[i]!, true);
    } else {
      for (let i = 0; i < t.data.length; i++) view.setBigInt64(pos + i * 8, t.data[i]!, true);
    }
    pos += t.data.byteLength;
  }
  return out;
}

/** Writes tensors as a safetensors file, atomically (see {@link encodeSafetensors} for the layout). */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, SafeTensorInput>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

/**
 * Reads and validates only the header of a safetensors file (cheap even for large files), checking
 * every tensor's offsets against the file's size. Throws 'WEIGHTS_FORMAT' naming the file.
 */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = (await openRegular(file, notAFile(file))).handle;
    const size = (await handle.stat()).size;
    const lengthBytes = new Uint8Array(8);
    await handle.read(lengthBytes, 0, Math.min(8, size), 0);
    const headerLen = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    // Let the parser report a short file or an absurd length; only read what is really there.
    const toRead = size >= 8 && headerLen <= BigInt(Math.min(MAX_HEADER_BYTES, size - 8)) ? 8 + Number(headerLen) : Math.min(8, size);
    const head = new Uint8Array(toRead);
    await handle.read(head, 0, toRead, 0);
    return parseSafetensorsHeader(head, size, file);
  } catch (e) {
    if (e instanceof PartscanError) throw e;
    throw new PartscanError('WEIGHTS_FORMAT', `Cannot read weights file ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)}).`, {
      file,
      remedy: 'check that the path is a readable file',
      cause: e,
    });
  } finally {
    await handle?.close();
  }
}
