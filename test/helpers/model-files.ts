/**
 * Hand-made `.partscan` containers for the hostile-file tests: any header (valid checksum), real
 * sections laid out as the writer does, plus phantom table entries that point anywhere (far past the
 * real data, into the header, over each other) in a sparse file, and a header length that may lie.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { MODEL_FORMAT_MAJOR, MODEL_FORMAT_MINOR, MODEL_MAGIC, readModelFile, type SectionData } from '../../src/model/model-file.js';

/** A model file's header (without its section table) and its sections, ready for writeModelFile / writeRawModel. */
export async function splitModelFile(file: string): Promise<{ header: Record<string, unknown>; sections: { name: string; data: SectionData; shape: number[] }[] }> {
  const contents = await readModelFile(file);
  const { sections: table, ...header } = contents.header;
  return { header, sections: table.map((t) => ({ name: t.name, data: contents.sections.get(t.name)!, shape: [...t.shape] })) };
}

/** A table entry written as given (its bytes are not written: a sparse hole, or whatever lies there). */
export interface PhantomSection {
  name: string;
  dtype: 'float32' | 'float64' | 'int32' | 'uint8';
  shape: number[];
  offset: number;
  byteLength: number;
  sha256?: string;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const align = (n: number) => Math.ceil(n / 64) * 64;

/**
 * Writes a container: `header` (without `sections`), the real `sections` after it, `phantoms` added to
 * the table as given, the file extended (sparse) to cover them or to `size`. `headerLength` overrides
 * the length field of the preamble (the checksum stays that of the real header bytes).
 */
export async function writeRawModel(
  file: string,
  header: Record<string, unknown>,
  sections: { name: string; data: SectionData; shape: number[] }[],
  opts: {
    phantoms?: PhantomSection[];
    size?: number;
    headerLength?: number;
    headerText?: string;
    /** Changes the table as written into the header (the real sections stay where they are). */
    mutateTable?: (table: Record<string, unknown>[]) => void;
  } = {},
): Promise<void> {
  const bytesOf = (d: SectionData) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  const dtype = (d: SectionData) => (d instanceof Float32Array ? 'float32' : d instanceof Float64Array ? 'float64' : d instanceof Int32Array ? 'int32' : d instanceof Uint16Array ? 'float16' : 'uint8');
  const table = sections.map((s) => ({ name: s.name, dtype: dtype(s.data), shape: s.shape, offset: 0, byteLength: s.data.byteLength, sha256: sha(bytesOf(s.data)) }));
  const phantoms = (opts.phantoms ?? []).map((p) => ({ ...p, sha256: p.sha256 ?? '0'.repeat(64) }));
  let text = '';
  for (let iter = 0; iter < 6; iter++) {
    let offset = align(48 + Buffer.byteLength(text));
    for (const t of table) {
      t.offset = offset;
      offset = align(offset + t.byteLength);
    }
    const shown: Record<string, unknown>[] = structuredClone([...table, ...phantoms]);
    opts.mutateTable?.(shown);
    const next = opts.headerText ?? JSON.stringify({ ...header, sections: shown });
    if (next === text) break;
    text = next;
  }
  const headerBytes = new TextEncoder().encode(text);
  const pre = Buffer.alloc(48);
  pre.write(MODEL_MAGIC, 0, 'latin1');
  pre.writeUInt16LE(MODEL_FORMAT_MAJOR, 8);
  pre.writeUInt16LE(MODEL_FORMAT_MINOR, 10);
  pre.writeUInt32LE(opts.headerLength ?? headerBytes.length, 12);
  Buffer.from(sha(headerBytes), 'hex').copy(pre, 16);
  const fh = await fs.open(file, 'w');
  try {
    await fh.write(pre, 0, 48, 0);
    await fh.write(headerBytes, 0, headerBytes.length, 48);
    for (let i = 0; i < sections.length; i++) {
      const b = bytesOf(sections[i]!.data);
      await fh.write(b, 0, b.length, table[i]!.offset);
    }
    const end = Math.max(opts.size ?? 0, ...phantoms.map((p) => p.offset + p.byteLength));
    const st = await fh.stat();
    if (end > st.size) await fh.truncate(end);
  } finally {
    await fh.close();
  }
}
