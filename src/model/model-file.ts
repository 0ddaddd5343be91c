import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { PartscanError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { openRegular } from '../util/regular-file.js';
import { sectionTableSchema } from './header-schema.js';
import { checkHeaderLength, checkHeaderNesting, checkReadBudget, checkSectionLayout, VERIFIED_BEFORE_ALLOCATION, verifyStreaming } from './model-file-limits.js';

/**
 * The `.partscan` container: one file, self-describing, checksummed.
 *
 * Layout (little-endian):
 *   0  magic "PARTSCAN" (8 bytes)
 *   8  u16 format major, u16 format minor
 *  12  u32 header length H
 *  16  sha256 of the header bytes (32 bytes)
 *  48  header: UTF-8 JSON (H bytes) — everything needed to score, plus a table of binary sections
 *      then binary sections, each starting on a 64-byte boundary, each with its own sha256 in the table.
 * A reader rejects another major version, a wrong magic, a header or section whose checksum fails, and a
 * file shorter than its section table says (truncation). Minor versions only add optional fields.
 */

/** File magic. */
export const MODEL_MAGIC = 'PARTSCAN';
/** Current container major version: readers refuse other majors. */
export const MODEL_FORMAT_MAJOR = 1;
/** Current container minor version: additive changes only. */
export const MODEL_FORMAT_MINOR = 6;

const PREAMBLE = 48;
const ALIGN = 64;

/** Element types of binary sections ('float16': IEEE half precision, held as Uint16Array bit patterns; format 1.5). */
export type SectionDtype = 'float32' | 'float64' | 'int32' | 'uint8' | 'float16';

/** A typed array stored in a section (a Uint16Array holds float16 bits). */
export type SectionData = Float32Array | Float64Array | Int32Array | Uint8Array | Uint16Array;

/** Table entry of one binary section. */
export interface SectionInfo {
  /** Section name ('mean', 'invCov', ...). */
  name: string;
  /** Element type. */
  dtype: SectionDtype;
  /** Logical shape. */
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  /** Byte length. */
  byteLength: number;
  /** sha256 (hex) of the section bytes. */
  sha256: string;
}

const DTYPE_OF = (a: SectionData): SectionDtype =>
  a instanceof Float32Array
    ? 'float32'
    : a instanceof Float64Array
      ? 'float64'
      : a instanceof Int32Array
        ? 'int32'
        : a instanceof Uint16Array
          ? 'float16'
          : 'uint8';

function alignUp(n: number): number {
  return Math.ceil(n / ALIGN) * ALIGN;
}

function bytesOf(a: SectionData): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function sha256(parts: Iterable<Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Slices a large byte view into ≤ 256 MiB pieces (hashing and writing without giant copies). */
function* pieces(bytes: Uint8Array, size = 256 * 1024 * 1024): Generator<Uint8Array> {
  for (let o = 0; o < bytes.length; o += size) yield bytes.subarray(o, Math.min(bytes.length, o + size));
}

/**
 * Writes a model file atomically (temp file + rename). `header` must be JSON-serialisable; its key
 * order is kept, so the same model gives byte-identical files.
 */
export async function writeModelFile(
  file: string,
  header: Record<string, unknown>,
  sections: { name: string; data: SectionData; shape: number[] }[],
): Promise<void> {
  // The section table depends on the header length and the header on the table: lay out with a
  // placeholder-free two-pass (offsets are computed from the final JSON length, iterated to a fixpoint).
  const table: SectionInfo[] = sections.map((s) => ({
    name: s.name,
    dtype: DTYPE_OF(s.data),
    shape: s.shape,
    offset: 0,
    byteLength: s.data.byteLength,
    sha256: sha256(pieces(bytesOf(s.data))),
  }));
  let headerBytes = new Uint8Array();
  for (let iter = 0; iter < 4; iter++) {
    let offset = alignUp(PREAMBLE + headerBytes.length);
    for (const t of table) {
      t.offset = offset;
      offset = alignUp(offset + t.byteLength);
    }
    const next = new TextEncoder().encode(JSON.stringify({ ...header, sections: table }));
    if (next.length === headerBytes.length) {
      headerBytes = next;
      break;
    }
    headerBytes = next;
  }
  const preamble = new Uint8Array(PREAMBLE);
  const dv = new DataView(preamble.buffer);
  preamble.set(new TextEncoder().encode(MODEL_MAGIC), 0);
  dv.setUint16(8, MODEL_FORMAT_MAJOR, true);
  dv.setUint16(10, MODEL_FORMAT_MINOR, true);
  dv.setUint32(12, headerBytes.length, true);
  preamble.set(Buffer.from(sha256([headerBytes]), 'hex'), 16);

  async function* chunks(): AsyncGenerator<Uint8Array> {
    yield preamble;
    yield headerBytes;
    let pos = PREAMBLE + headerBytes.length;
    for (let i = 0; i < sections.length; i++) {
      const t = table[i]!;
      if (t.offset > pos) yield new Uint8Array(t.offset - pos);
      yield* pieces(bytesOf(sections[i]!.data));
      pos = t.offset + t.byteLength;
    }
  }
  await writeFileAtomic(file, chunks());
}

/** A model file read back: header and sections. */
export interface ModelFileContents {
  /** Parsed header JSON (with its `sections` table). */
  header: Record<string, unknown> & {
    /** Where each binary section lies in the file. */
    sections: SectionInfo[];
  };
  /** Format version found in the file. */
  version: {
    /** Major version: readers refuse other majors. */
    major: number;
    /** Minor version: additions a reader of the same major may ignore. */
    minor: number;
  };
  /** Sections by name, as typed arrays. */
  sections: Map<string, SectionData>;
}

function formatError(file: string, what: string, remedy = 'the file is damaged or not a partscan model: re-fit or copy it again'): PartscanError {
  return new PartscanError('MODEL_FORMAT', `${file} is not a valid partscan model: ${what}.`, { file, remedy });
}

/**
 * Takes one streamed section piece by piece: `piece` holds the bytes at `byteOffset` within the
 * section (a reused buffer: consume it before returning). Pieces are whole multiples of 8 bytes except
 * the last.
 */
export type SectionConsumer = (piece: Uint8Array, byteOffset: number) => void;

/** Bytes per piece of a streamed section. */
const STREAM_PIECE = 4 * 1024 * 1024;

/**
 * Reads and verifies a model file. Set `verify: false` to skip section checksums (faster for huge files;
 * an embedded backbone graph is verified all the same), and `sections` to read only the sections it
 * accepts (the others are still checked to lie within the file, so a truncated file is refused, but are
 * neither read nor verified). `check` sees the header and its section table before any section is read
 * (and may throw): what the header implies is checked before it is allocated. The caps of
 * model-file-limits.ts apply to every file. `stream` takes chosen sections piece by piece instead of
 * holding them whole (the big inverse covariances are decoded straight into their scoring form): their
 * consumers are opened after every other section has been read; each streamed section is hashed as it
 * streams (a mismatch throws after the last piece: discard what the consumer built) and left out of
 * `sections`.
 */
export async function readModelFile(
  file: string,
  opts: {
    verify?: boolean;
    sections?: (name: string) => boolean;
    check?: (header: ModelFileContents['header']) => void;
    stream?: {
      /** Whether to stream this section (instead of holding it whole). */
      takes: (info: SectionInfo) => boolean;
      /** The consumer of a streamed section, given the sections held whole (all read by then) and the header. */
      open: (info: SectionInfo, held: ReadonlyMap<string, SectionData>, header: ModelFileContents['header']) => SectionConsumer;
    };
  } = {},
): Promise<ModelFileContents> {
  let handle: fs.FileHandle;
  try {
    // Without blocking: a FIFO is refused below instead of waiting for a writer.
    handle = (await openRegular(file, (kind) => formatError(file, `it is ${kind}, not a model file`, 'give the path of a .partscan file'))).handle;
  } catch (e) {
    if (e instanceof PartscanError) throw e;
    throw new PartscanError('MODEL_FORMAT', `Cannot open model file ${file} (${(e as NodeJS.ErrnoException).code ?? e}).`, {
      file,
      remedy: 'check the path; models are written by `partscan fit --out <file>`',
      cause: e,
    });
  }
  try {
    const st = await handle.stat();
    // open() succeeds on a directory on Linux; reading it would throw a raw EISDIR.
    if (!st.isFile()) {
      throw formatError(file, st.isDirectory() ? 'it is a directory, not a model file' : 'it is not a regular file', 'give the path of a .partscan file');
    }
    const size = st.size;
    if (size < PREAMBLE) throw formatError(file, `only ${size} bytes (truncated?)`);
    const pre = new Uint8Array(PREAMBLE);
    await handle.read(pre, 0, PREAMBLE, 0);
    if (new TextDecoder().decode(pre.subarray(0, 8)) !== MODEL_MAGIC) throw formatError(file, 'wrong magic bytes');
    const dv = new DataView(pre.buffer);
    const major = dv.getUint16(8, true);
    const minor = dv.getUint16(10, true);
    if (major !== MODEL_FORMAT_MAJOR) {
      throw new PartscanError(
        'MODEL_VERSION',
        `${file} uses model format ${major}.${minor}; this partscan reads format ${MODEL_FORMAT_MAJOR}.x.`,
        { file, remedy: major > MODEL_FORMAT_MAJOR ? 'upgrade partscan' : 're-fit the model with this partscan version' },
      );
    }
    const headerLength = dv.getUint32(12, true);
    checkHeaderLength(headerLength, file);
    if (PREAMBLE + headerLength > size) throw formatError(file, 'header extends past the end of the file (truncated)');
    const headerBytes = new Uint8Array(headerLength);
    await handle.read(headerBytes, 0, headerLength, PREAMBLE);
    if (sha256([headerBytes]) !== Buffer.from(pre.subarray(16, 48)).toString('hex')) {
      throw new PartscanError('MODEL_CHECKSUM', `${file}: header checksum mismatch (the file is corrupted).`, {
        file,
        remedy: 're-fit the model or restore it from a backup',
      });
    }
    checkHeaderNesting(headerBytes, file);
    let header: ModelFileContents['header'];
    try {
      header = JSON.parse(new TextDecoder().decode(headerBytes));
    } catch {
      throw formatError(file, 'header is not valid JSON');
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) throw formatError(file, 'header is not a JSON object');
    // The table decides what is read and allocated: check it before any section is touched.
    const table = sectionTableSchema.safeParse(header.sections);
    if (!table.success) {
      const i = table.error.issues[0]!;
      throw formatError(file, `section table entry sections${i.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`)).join('')}: ${i.message}`);
    }
    checkSectionLayout(header.sections, PREAMBLE + headerLength, size, file);
    opts.check?.(header);
    const wanted = opts.sections ?? (() => true);
    checkReadBudget(header.sections, wanted, file);
    const sections = new Map<string, SectionData>();
    const streamed: SectionInfo[] = [];
    for (const s of header.sections) {
      if (!wanted(s.name)) continue;
      if (opts.stream?.takes(s)) {
        streamed.push(s);
        continue;
      }
      if (VERIFIED_BEFORE_ALLOCATION.includes(s.name)) await verifyStreaming(handle, s, file);
      const data = allocate(s.dtype, s.byteLength, file);
      const bytes = bytesOf(data);
      for (let o = 0; o < s.byteLength; ) {
        const n = Math.min(1 << 30, s.byteLength - o);
        const { bytesRead } = await handle.read(bytes, o, n, s.offset + o);
        if (bytesRead <= 0) throw formatError(file, `section "${s.name}" is truncated`);
        o += bytesRead;
      }
      if (opts.verify !== false && !VERIFIED_BEFORE_ALLOCATION.includes(s.name) && sha256(pieces(bytes)) !== s.sha256) {
        throw new PartscanError('MODEL_CHECKSUM', `${file}: section "${s.name}" checksum mismatch (the file is corrupted).`, {
          file,
          remedy: 're-fit the model or restore it from a backup',
        });
      }
      sections.set(s.name, data);
    }
    // Streamed sections after every section held whole: a consumer may need those (e.g. scales).
    for (const info of streamed) await streamSection(handle, info, opts.stream!.open(info, sections, header), file, opts.verify !== false);
    return { header, version: { major, minor }, sections };
  } finally {
    await handle.close();
  }
}

/** Reads one section in pieces into `consume`, hashing as it goes; a checksum mismatch throws after the last piece. */
async function streamSection(handle: fs.FileHandle, info: SectionInfo, consume: SectionConsumer, file: string, verify: boolean): Promise<void> {
  const h = createHash('sha256');
  const piece = new Uint8Array(Math.min(STREAM_PIECE, Math.max(8, info.byteLength)));
  for (let o = 0; o < info.byteLength; ) {
    const want = Math.min(piece.length, info.byteLength - o);
    for (let got = 0; got < want; ) {
      const { bytesRead } = await handle.read(piece, got, want - got, info.offset + o + got);
      if (bytesRead <= 0) throw formatError(file, `section "${info.name}" is truncated`);
      got += bytesRead;
    }
    const view = piece.subarray(0, want);
    if (verify) h.update(view);
    consume(view, o);
    o += want;
  }
  if (verify && h.digest('hex') !== info.sha256) {
    throw new PartscanError('MODEL_CHECKSUM', `${file}: section "${info.name}" checksum mismatch (the file is corrupted).`, {
      file,
      remedy: 're-fit the model or restore it from a backup',
    });
  }
}

function allocate(dtype: SectionDtype, byteLength: number, file: string): SectionData {
  try {
    return allocateTyped(dtype, byteLength, file);
  } catch (e) {
    if (e instanceof PartscanError) throw e;
    throw formatError(file, `a section of ${byteLength} bytes cannot be allocated on this machine (${(e as Error).message})`, 'free memory, or re-fit a smaller model');
  }
}

function allocateTyped(dtype: SectionDtype, byteLength: number, file: string): SectionData {
  switch (dtype) {
    case 'float32':
      return new Float32Array(byteLength / 4);
    case 'float64':
      return new Float64Array(byteLength / 8);
    case 'int32':
      return new Int32Array(byteLength / 4);
    case 'uint8':
      return new Uint8Array(byteLength);
    case 'float16':
      return new Uint16Array(byteLength / 2);
    default:
      throw formatError(file, `unknown section type ${String(dtype)}`);
  }
}
