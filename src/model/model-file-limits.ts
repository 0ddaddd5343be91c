/**
 * Caps on what a `.partscan` file may make a reader allocate, parse or run, checked before the bytes
 * they concern are read. A model file is untrusted input (it may come from another site, a hand edit
 * or an attacker): its preamble, header and section table are small and describe everything else, so
 * the reader checks them against these caps first, and a file that would need more memory, time or
 * stack than a real model is refused with a typed 'MODEL_FORMAT' error instead of being read.
 *
 * - the header: at most {@link MODEL_FILE_LIMITS.headerBytes} bytes of JSON, nested at most
 *   {@link MODEL_FILE_LIMITS.jsonDepth} deep (a deeper key overflows the stack of every recursive
 *   consumer, JSON.stringify included);
 * - the section table: at most {@link MODEL_FILE_LIMITS.sections} entries, each after the header,
 *   none overlapping another, each small enough to be one typed array;
 * - the sections a load reads: together no more than the machine's memory;
 * - the header's sizes: embedding size d and grid side within what any backbone and input size give
 *   (the section shapes follow from them, see header-schema.ts);
 * - the embedded backbone graph: its bytes must match `backbone.graphSha256` when the header records it.
 *
 * The figures and the catalogue of refused files are in docs/GUARDS.md.
 */

import { createHash } from 'node:crypto';
import type { promises as fs } from 'node:fs';
import os from 'node:os';
import { PartscanError } from '../errors.js';

/** The caps (see the module comment). */
export const MODEL_FILE_LIMITS = {
  /** Header JSON bytes: real headers are a few KB (the drift and monitor references included). */
  headerBytes: 16 * 1024 * 1024,
  /** Nesting depth of the header JSON: real headers nest 5 deep. */
  jsonDepth: 64,
  /** Entries in the section table: a model has at most 7. */
  sections: 64,
  /** Elements of one section: the longest typed array the runtime can allocate. */
  sectionElements: 2 ** 32,
  /** Embedding size d: the fit options' own cap. */
  embeddingChannels: 4096,
  /** Feature grid side: a 2048 px input at stride 2. */
  gridSide: 1024,
  /** Bytes of an embedded backbone graph: protobuf's (and so ONNX Runtime's) limit for one model. */
  graphBytes: 2 ** 31 - 1,
} as const;

/**
 * Sections whose checksum is verified by streaming, before memory is allocated for them: the backbone
 * graph, whose size the header does not pin down (the other sections' sizes follow from d and the grid).
 */
export const VERIFIED_BEFORE_ALLOCATION: readonly string[] = ['backbone.onnx'];

function limitError(file: string, what: string): PartscanError {
  return new PartscanError('MODEL_FORMAT', `${file} is not a valid partscan model: ${what}.`, {
    file,
    remedy: 'the file is damaged, edited or not a partscan model: re-fit it or copy it again from its source',
  });
}

/** Refuses a header length over the cap before its bytes are allocated. */
export function checkHeaderLength(length: number, file: string): void {
  if (length > MODEL_FILE_LIMITS.headerBytes) {
    throw limitError(file, `its header claims ${length} bytes, more than the ${MODEL_FILE_LIMITS.headerBytes} a model header may have`);
  }
}

/**
 * Refuses header JSON nested deeper than the cap, by one scan of the bytes (brackets outside strings),
 * before JSON.parse builds anything.
 */
export function checkHeaderNesting(bytes: Uint8Array, file: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MODEL_FILE_LIMITS.jsonDepth) throw limitError(file, `its header nests deeper than ${MODEL_FILE_LIMITS.jsonDepth} levels`);
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
}

/** One section table entry, as far as the layout checks need it. */
export interface SectionExtent {
  name: string;
  offset: number;
  byteLength: number;
  shape: number[];
}

/**
 * Checks the section table's layout against the file: at most the cap of entries, every section after
 * the header (`dataStart`) and inside the file, no two overlapping, none longer than one typed array.
 */
export function checkSectionLayout(table: readonly SectionExtent[], dataStart: number, fileSize: number, file: string): void {
  if (table.length > MODEL_FILE_LIMITS.sections) throw limitError(file, `its section table has ${table.length} entries (at most ${MODEL_FILE_LIMITS.sections})`);
  for (const s of table) {
    if (s.offset < dataStart) throw limitError(file, `section "${clip(s.name)}" starts at byte ${s.offset}, inside the header`);
    if (s.offset + s.byteLength > fileSize) throw limitError(file, `section "${clip(s.name)}" extends past the end of the file (truncated)`);
    if (s.shape.reduce((a, b) => a * b, 1) > MODEL_FILE_LIMITS.sectionElements) {
      throw limitError(file, `section "${clip(s.name)}" holds more than ${MODEL_FILE_LIMITS.sectionElements} elements`);
    }
    if (s.name === 'backbone.onnx' && s.byteLength > MODEL_FILE_LIMITS.graphBytes) {
      throw limitError(file, `its backbone graph has ${s.byteLength} bytes, more than an ONNX model can (${MODEL_FILE_LIMITS.graphBytes})`);
    }
  }
  const sorted = [...table].filter((s) => s.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (sorted[i]!.offset < prev.offset + prev.byteLength) throw limitError(file, `sections "${clip(prev.name)}" and "${clip(sorted[i]!.name)}" overlap`);
  }
}

/** Refuses to read sections that together need more memory than the machine has. */
export function checkReadBudget(table: readonly SectionExtent[], read: (name: string) => boolean, file: string, memory = os.totalmem()): void {
  const bytes = table.filter((s) => read(s.name)).reduce((a, s) => a + s.byteLength, 0);
  if (bytes > memory) {
    throw limitError(file, `its sections need ${(bytes / 2 ** 30).toFixed(1)} GiB, more than this machine's ${(memory / 2 ** 30).toFixed(1)} GiB of memory`);
  }
}

/** The header sizes every section shape derives from (after the header schema passed). */
export interface HeaderSizes {
  embedding: { channels: number; gridH: number; gridW: number };
}

/** Refuses an embedding size or grid beyond what any real backbone and input size give. */
export function checkHeaderSizes(h: HeaderSizes, file: string): void {
  if (h.embedding.channels > MODEL_FILE_LIMITS.embeddingChannels) {
    throw limitError(file, `header field embedding.channels: d = ${h.embedding.channels} exceeds the cap of ${MODEL_FILE_LIMITS.embeddingChannels}`);
  }
  for (const side of ['gridH', 'gridW'] as const) {
    if (h.embedding[side] > MODEL_FILE_LIMITS.gridSide) {
      throw limitError(file, `header field embedding.${side}: ${h.embedding[side]} exceeds the cap of ${MODEL_FILE_LIMITS.gridSide}`);
    }
  }
}

/**
 * Checks a section's sha256 by reading it in 16 MiB pieces, before memory is allocated for the whole
 * (see {@link VERIFIED_BEFORE_ALLOCATION}); a mismatch is a typed 'MODEL_CHECKSUM' error. Always,
 * whatever the reader's `verify` says: the backbone graph is run, not only read.
 */
export async function verifyStreaming(handle: fs.FileHandle, s: SectionExtent & { sha256: string }, file: string): Promise<void> {
  const h = createHash('sha256');
  const piece = new Uint8Array(Math.min(s.byteLength, 16 * 1024 * 1024));
  for (let o = 0; o < s.byteLength; ) {
    const { bytesRead } = await handle.read(piece, 0, Math.min(piece.length, s.byteLength - o), s.offset + o);
    if (bytesRead <= 0) throw limitError(file, `section "${clip(s.name)}" is truncated`);
    h.update(piece.subarray(0, bytesRead));
    o += bytesRead;
  }
  if (h.digest('hex') !== s.sha256) {
    throw new PartscanError('MODEL_CHECKSUM', `${file}: section "${clip(s.name)}" checksum mismatch (the file is corrupted).`, { file, remedy: 're-fit the model or restore it from a backup' });
  }
}

/**
 * Checks an embedded backbone graph against the header: its sha256 must be the header's
 * `backbone.graphSha256` (format 1.4; older files do not record it). A graph swapped in from another
 * file, with the section table's checksum made to match, is refused before ONNX Runtime sees it.
 */
export function checkEmbeddedGraph(backbone: { graphSha256?: string }, graph: Uint8Array, file: string): void {
  if (backbone.graphSha256 === undefined) return;
  const actual = graphSha256(graph);
  if (actual !== backbone.graphSha256) {
    throw new PartscanError('MODEL_CHECKSUM', `${file}: the embedded backbone graph has sha256 ${actual.slice(0, 12)}…; the header says ${backbone.graphSha256.slice(0, 12)}… (the graph was swapped or damaged).`, {
      file,
      remedy: 're-fit the model or restore it from a backup',
    });
  }
}

/** sha256 (hex) of a backbone graph, as recorded in `backbone.graphSha256`. */
export function graphSha256(graph: Uint8Array): string {
  return createHash('sha256').update(graph).digest('hex');
}

/** A section name as it may appear in a message: short, printable. */
function clip(name: string): string {
  return name.length > 60 ? `${name.slice(0, 57)}…` : name;
}
