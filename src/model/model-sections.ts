/**
 * The sections of a `.partscan` file as a model's parts: which sections a load reads (only what
 * scoring needs; the statistics for resuming and any other section stay in the file until asked
 * for), how the inverse covariances are decoded from the file straight into their scoring form
 * (stripes, from float16 or float32 packed triangles), the schema and size checks, and the encoding
 * that {@link Model.save} writes.
 */

import { PartscanError } from '../errors.js';
import { packedSize } from '../stats/gaussian-stats.js';
import { StripedInverse } from '../stats/striped-inverse.js';
import { fromHalfBits, toScaledHalfRow } from '../util/float16.js';
import { readModelFile, type ModelFileContents, type SectionConsumer, type SectionData, type SectionInfo } from './model-file.js';
import { checkModelSections, parseModelHeader, type ParsedModelHeader } from './header-schema.js';
import { checkEmbeddedGraph, checkHeaderSizes, graphSha256 } from './model-file-limits.js';
import type { ModelHeader } from './header.js';
import { CALIBRATION_SECTIONS, type CalibrationPool } from './calibration-pool.js';
import type { PositionStandardization } from '../postprocess/standardize.js';

/** Sections that only `fit --resume` needs. */
export const RESUME_SECTIONS: readonly string[] = ['m2', 'samples'];

/** The per-position standardisation of the image score, float32 [2, P]: centres, then spreads (format ≥ 1.3). */
export const STANDARDIZE_SECTION = 'imageScore.standardize';

/**
 * Sections a load reads: what scoring needs. Every other section — the statistics for resuming, the
 * calibration pool, whatever a later minor version adds — stays in the file until asked for.
 */
export const SCORING_SECTIONS: readonly string[] = ['channels', 'mean', 'invCov', 'invCov.scale', 'roi', 'backbone.onnx', STANDARDIZE_SECTION];

/** How the inverse covariances are written (format 1.5): see {@link encodeGaussianSections}. */
export const STORAGE = 'float16-packed';

/** Sections read only when asked for that partscan knows (resume statistics, the calibration pool). */
export const LAZY_SECTIONS: readonly string[] = [...RESUME_SECTIONS, ...Object.values(CALIBRATION_SECTIONS)];

/** The sections partscan knows; others are skipped unread (later versions may add some). */
export const KNOWN_SECTIONS: readonly string[] = [...SCORING_SECTIONS, ...LAZY_SECTIONS];

function sectionSizeError(file: string): PartscanError {
  return new PartscanError('MODEL_FORMAT', `${file}: section sizes do not match the header's grid and embedding size.`, {
    file,
    remedy: 're-fit the model',
  });
}

function missing(file: string, name: string): PartscanError {
  return new PartscanError('MODEL_FORMAT', `${file} has no "${name}" section.`, { file, remedy: 're-fit the model' });
}

/** The statistics for resuming among a file's read sections (`m2` or `samples`), size-checked against the header. */
export function resumeSections(sections: Map<string, SectionData>, header: ModelHeader, file: string): { m2?: Float32Array; samples?: Float32Array } {
  const P = header.embedding.gridH * header.embedding.gridW;
  const d = header.embedding.channels;
  const m2 = sections.get('m2') as Float32Array | undefined;
  const samples = sections.get('samples') as Float32Array | undefined;
  if ((m2 && m2.length !== P * packedSize(d)) || (samples && samples.length !== P * header.gaussian.images * d)) throw sectionSizeError(file);
  return { ...(m2 ? { m2 } : {}), ...(samples ? { samples } : {}) };
}

/** What a model is made of: header, channel choice, Gaussians, and optionally resume statistics and ROI. */
export interface ModelParts {
  header: ModelHeader;
  channelIndices: Int32Array;
  mean: Float64Array;
  /** The inverse covariances, as scoring uses them. */
  inverse: StripedInverse;
  m2?: Float32Array;
  samples?: Float32Array;
  roi?: Uint8Array;
  standardization?: PositionStandardization;
}

/** Sections left in a loaded model's file, to be read (and checked against these entries) on request. */
export interface LazySections {
  /** The model file. */
  file: string;
  /** Their table entries at load time (name, place, sha256). */
  entries: SectionInfo[];
}

/**
 * Decodes the `invCov` section piece by piece into stripes: one packed triangle per position is
 * gathered (from float16 with the position's scale, or float32) and written into the stripes, so
 * neither the file's bytes nor a packed float32 copy are ever held whole.
 */
function inverseDecoder(inverse: StripedInverse, info: SectionInfo, scale: Float32Array | undefined): SectionConsumer {
  const T = packedSize(inverse.dim);
  const half = info.dtype === 'float16';
  const row = half ? new Uint16Array(T) : new Float32Array(T);
  const bytesPer = half ? 2 : 4;
  let p = 0;
  let k = 0;
  return (piece) => {
    const n = piece.byteLength / bytesPer;
    const values = half ? new Uint16Array(piece.buffer, piece.byteOffset, n) : new Float32Array(piece.buffer, piece.byteOffset, n);
    for (let e = 0; e < n; ) {
      const take = Math.min(T - k, n - e);
      (row as Uint16Array).set((values as Uint16Array).subarray(e, e + take), k);
      e += take;
      k += take;
      if (k === T) {
        if (half) inverse.setPositionFromHalf(p, row as Uint16Array, 0, scale![p]!, fromHalfBits);
        else inverse.setPosition(p, row as Float32Array, 0);
        p++;
        k = 0;
      }
    }
  };
}

/**
 * Reads the known sections of a model file that `read` accepts (unknown sections are skipped unread;
 * the backbone graph is read only when the header says it is embedded) after one schema has checked
 * every header field, and the section shapes against grid and d, and the caps of model-file-limits.ts
 * the sizes: nothing is allocated that the header does not justify. Then the section contents the
 * header cannot describe are checked. `stream` passes sections piece by piece to a consumer
 * (readModelFile), opened with the checked header.
 */
export async function readCheckedModelFile(
  file: string,
  opts: {
    verify?: boolean;
    read: (name: string) => boolean;
    stream?: { takes: (info: SectionInfo) => boolean; open: (info: SectionInfo, held: ReadonlyMap<string, SectionData>, header: ParsedModelHeader) => SectionConsumer };
  },
): Promise<{ contents: ModelFileContents; header: ParsedModelHeader }> {
  let header: ParsedModelHeader | undefined;
  const stream = opts.stream;
  const contents = await readModelFile(file, {
    ...(opts.verify === undefined ? {} : { verify: opts.verify }),
    // Called after `check`: the graph is read only when the header says it is the model's backbone.
    sections: (name: string) =>
      KNOWN_SECTIONS.includes(name) && opts.read(name) && (name !== 'backbone.onnx' || header?.backbone.embedded === true),
    check: (raw) => {
      header = parseModelHeader(raw, file);
      checkHeaderSizes(header, file);
    },
    ...(stream ? { stream: { takes: stream.takes, open: (info: SectionInfo, held: ReadonlyMap<string, SectionData>) => stream.open(info, held, header!) } } : {}),
  });
  checkModelSections(header!, contents.sections, file);
  const graph = contents.sections.get('backbone.onnx');
  if (graph) checkEmbeddedGraph(header!.backbone, graph as Uint8Array, file);
  return { contents, header: header! };
}

/**
 * Reads a model file's scoring sections, checked ({@link readCheckedModelFile}); the inverse
 * covariances are decoded while they stream. The statistics for resuming are read only when
 * `resumeStatistics` is set; every section not read is listed in `lazy`.
 */
export async function readModelParts(
  file: string,
  opts: { verify?: boolean; resumeStatistics?: boolean },
): Promise<{ parts: ModelParts; sections: Map<string, SectionData>; lazy: LazySections }> {
  const wanted = (name: string): boolean => SCORING_SECTIONS.includes(name) || (opts.resumeStatistics === true && RESUME_SECTIONS.includes(name));
  let inverse: StripedInverse | undefined;
  const checked = await readCheckedModelFile(file, {
    ...(opts.verify === undefined ? {} : { verify: opts.verify }),
    read: wanted,
    stream: {
      takes: (info) => info.name === 'invCov',
      open: (info, held, header) => {
        const P = header.embedding.gridH * header.embedding.gridW;
        inverse = new StripedInverse(P, header.embedding.channels);
        const scale = held.get('invCov.scale');
        if (info.dtype === 'float16' && !(scale instanceof Float32Array && scale.length === P)) throw missing(file, 'invCov.scale');
        return inverseDecoder(inverse, info, scale as Float32Array | undefined);
      },
    },
  });
  const contents = checked.contents;
  const header = checked.header as unknown as ModelHeader;
  if (!inverse) throw missing(file, 'invCov');
  const need = (name: string): SectionData => {
    const s = contents.sections.get(name);
    if (!s) throw missing(file, name);
    return s;
  };
  const parts: ModelParts = {
    header,
    channelIndices: need('channels') as Int32Array,
    mean: need('mean') as Float64Array,
    inverse,
  };
  const roi = contents.sections.get('roi');
  if (roi) parts.roi = roi as Uint8Array;
  const P = header.embedding.gridH * header.embedding.gridW;
  const d = header.embedding.channels;
  const std = contents.sections.get(STANDARDIZE_SECTION) as Float32Array | undefined;
  if (std) parts.standardization = { centre: std.subarray(0, P), spread: std.subarray(P, 2 * P) };
  if (parts.mean.length !== P * d || parts.channelIndices.length !== d) throw sectionSizeError(file);
  Object.assign(parts, resumeSections(contents.sections, header, file));
  const lazy = { file, entries: contents.header.sections.filter((s) => KNOWN_SECTIONS.includes(s.name) && !wanted(s.name)) };
  return { parts, sections: contents.sections, lazy };
}

/**
 * Reads sections a load left in the file (see {@link LazySections}), refusing a file whose sections
 * are no longer the ones seen at load (replaced by another model since).
 */
export async function readLazySections(lazy: LazySections, names: readonly string[]): Promise<Map<string, SectionData>> {
  const entries = lazy.entries.filter((e) => names.includes(e.name));
  if (entries.length === 0) return new Map();
  const contents = await readModelFile(lazy.file, { sections: (name) => entries.some((e) => e.name === name) });
  for (const e of entries) {
    const now = contents.header.sections.find((s) => s.name === e.name);
    if (!now || now.sha256 !== e.sha256) {
      throw new PartscanError('MODEL_FORMAT', `${lazy.file} changed since the model was loaded: its section "${e.name}" is not this model's.`, {
        file: lazy.file,
        remedy: 'load the model again (Model.load) before resuming, calibrating or saving it',
      });
    }
  }
  return contents.sections;
}

/** A section to write: name, data, logical shape. */
export interface SectionSpec {
  name: string;
  data: SectionData;
  shape: number[];
}

/**
 * The Gaussian sections as written ({@link STORAGE}): the inverse covariances, packed position by
 * position from the stripes, as float16 rows with one power-of-two scale per position
 * ("invCov.scale"); the statistics for resuming stay float32. (In float16, the scatter matrices lose
 * what the inversion of a rank-deficient or ill-conditioned covariance amplifies: resumed scores moved
 * by up to 0.7 % on the test fixture, N < d; see docs/MODEL-FILE.md.)
 */
export function encodeGaussianSections(inverse: StripedInverse, resume: { m2?: Float32Array; samples?: Float32Array }, images: number): SectionSpec[] {
  const P = inverse.positions;
  const d = inverse.dim;
  const T = packedSize(d);
  const { half, scale } = encodeStripes(inverse);
  const out: SectionSpec[] = [
    { name: 'invCov.scale', data: scale, shape: [P] },
    { name: 'invCov', data: half, shape: [P, T] },
  ];
  if (resume.m2) out.push({ name: 'm2', data: resume.m2, shape: [P, T] });
  else if (resume.samples) out.push({ name: 'samples', data: resume.samples, shape: [P, images, d] });
  return out;
}

/** The stripes as float16 rows with their scales (packed position by position). */
function encodeStripes(inverse: StripedInverse): { half: Uint16Array; scale: Float32Array } {
  const T = packedSize(inverse.dim);
  const row = new Float32Array(T);
  const half = new Uint16Array(inverse.positions * T);
  const scale = new Float32Array(inverse.positions);
  for (let p = 0; p < inverse.positions; p++) {
    inverse.packPosition(p, row, 0);
    scale[p] = toScaledHalfRow(row, 0, T, half, p * T);
  }
  return { half, scale };
}

/**
 * Sets a fit's inverse covariances to their stored values (float16 rows with a power-of-two scale, as
 * {@link encodeGaussianSections} writes them), so that the fitted model scores exactly as the same model
 * saved and loaded again (the encoding is idempotent: saving encodes the stored values to the same
 * bits). Fit does this last: its leave-one-out check needs the float32 inverse (the Sherman–Morrison
 * downdate divides by 1 − n·d²/(n−1)², which in a low-rank fit is small enough to turn float16's 2^-12
 * into noise).
 */
export function applyStored(inverse: StripedInverse): void {
  const T = packedSize(inverse.dim);
  const row = new Float32Array(T);
  const half = new Uint16Array(T);
  for (let p = 0; p < inverse.positions; p++) {
    inverse.packPosition(p, row, 0);
    const scale = toScaledHalfRow(row, 0, T, half, 0);
    inverse.setPositionFromHalf(p, half, 0, scale, fromHalfBits);
  }
}

/** What a model holds that {@link modelFileContents} writes. */
export interface ModelFileParts {
  header: ModelHeader;
  channelIndices: Int32Array;
  mean: Float64Array;
  inverse: StripedInverse;
  /** Statistics to resume from (none: the file cannot be resumed). */
  resume: { m2?: Float32Array; samples?: Float32Array };
  roi?: Uint8Array;
  size: number;
  pool?: CalibrationPool;
  standardization?: PositionStandardization;
  /** The backbone graph to embed (none: the file names the backbone only). */
  backboneOnnx?: Uint8Array;
}

/**
 * The header and sections of a model file holding exactly `parts`: the header describes exactly the
 * sections written (the backbone graph, the image score's standardisation, the calibration pool, the
 * resume statistics).
 */
export function modelFileContents(parts: ModelFileParts): { header: ModelHeader; sections: SectionSpec[] } {
  const { m2, samples } = parts.resume;
  const resumable = m2 !== undefined || samples !== undefined;
  const { resumeState: _r, ...gaussian } = parts.header.gaussian;
  const { imageScore, calibration: _c, ...rest } = parts.header;
  const { graphSha256: _g, ...identity } = parts.header.backbone;
  const onnx = parts.backboneOnnx;
  const header: ModelHeader = {
    ...rest,
    backbone: { ...identity, embedded: onnx !== undefined, ...(onnx ? { graphSha256: graphSha256(onnx) } : {}) },
    gaussian: { ...gaussian, storage: STORAGE, resumable, ...(resumable ? { resumeState: m2 ? 'scatter' : 'samples' } : {}) },
    ...(parts.standardization ? { imageScore: { kind: 'standardized' as const } } : imageScore ? { imageScore: { kind: 'max' as const } } : {}),
    ...(parts.pool ? { calibration: parts.pool.summary() } : {}),
  };
  const P = parts.inverse.positions;
  const d = parts.inverse.dim;
  const sections: SectionSpec[] = [
    { name: 'channels', data: parts.channelIndices, shape: [d] },
    { name: 'mean', data: parts.mean, shape: [P, d] },
    ...encodeGaussianSections(parts.inverse, parts.resume, parts.header.gaussian.images),
  ];
  if (parts.roi) sections.push({ name: 'roi', data: parts.roi, shape: [parts.size, parts.size] });
  if (parts.pool) sections.push(...parts.pool.sections());
  if (parts.standardization) {
    const s = new Float32Array(2 * P);
    s.set(parts.standardization.centre, 0);
    s.set(parts.standardization.spread, P);
    sections.push({ name: STANDARDIZE_SECTION, data: s, shape: [2, P] });
  }
  if (onnx) sections.push({ name: 'backbone.onnx', data: onnx, shape: [onnx.length] });
  return { header, sections };
}
