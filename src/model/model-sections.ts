/**
 * The sections of a `.partscan` file as a model's parts: which sections a load reads (the statistics
 * for resuming only on request), the schema and size checks on them, and the resume statistics read later.
 */

import { PartscanError } from '../errors.js';
import { packedSize } from '../stats/gaussian-stats.js';
import { readModelFile, type ModelFileContents, type SectionData } from './model-file.js';
import { checkModelSections, parseModelHeader, type ParsedModelHeader } from './header-schema.js';
import { checkEmbeddedGraph, checkHeaderSizes } from './model-file-limits.js';
import type { ModelHeader } from './header.js';
import type { PositionStandardization } from '../postprocess/standardize.js';
import { CALIBRATION_SECTIONS } from './calibration-pool.js';

/** Sections that only `fit --resume` needs. */
export const RESUME_SECTIONS: readonly string[] = ['m2', 'samples'];

/** The per-position standardisation of the image score, float32 [2, P]: centres, then spreads (format ≥ 1.3). */
export const STANDARDIZE_SECTION = 'imageScore.standardize';

/** Sections read only when asked for (resume statistics, the calibration pool): scoring never needs them. */
export const LAZY_SECTIONS: readonly string[] = [...RESUME_SECTIONS, ...Object.values(CALIBRATION_SECTIONS)];

/** The sections partscan knows; others are skipped unread (later versions may add some). */
export const KNOWN_SECTIONS: readonly string[] = ['channels', 'mean', 'invCov', 'roi', 'backbone.onnx', STANDARDIZE_SECTION, ...LAZY_SECTIONS];

function sectionSizeError(file: string): PartscanError {
  return new PartscanError('MODEL_FORMAT', `${file}: section sizes do not match the header's grid and embedding size.`, {
    file,
    remedy: 're-fit the model',
  });
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
  invCovPacked: Float32Array;
  m2?: Float32Array;
  samples?: Float32Array;
  roi?: Uint8Array;
  standardization?: PositionStandardization;
}

/**
 * Reads the known sections of a model file that `read` accepts (unknown sections are skipped unread;
 * the backbone graph is read only when the header says it is embedded) after one schema has checked
 * every header field, and the section shapes against grid and d, and the caps of model-file-limits.ts
 * the sizes: nothing is allocated that the header does not justify. Then the section contents the
 * header cannot describe are checked.
 */
export async function readCheckedModelFile(
  file: string,
  opts: { verify?: boolean; read: (name: string) => boolean },
): Promise<{ contents: ModelFileContents; header: ParsedModelHeader }> {
  let header: ParsedModelHeader | undefined;
  const contents = await readModelFile(file, {
    ...(opts.verify === undefined ? {} : { verify: opts.verify }),
    // Called after `check`: the graph is read only when the header says it is the model's backbone.
    sections: (name: string) =>
      KNOWN_SECTIONS.includes(name) && opts.read(name) && (name !== 'backbone.onnx' || header?.backbone.embedded === true),
    check: (raw) => {
      header = parseModelHeader(raw, file);
      checkHeaderSizes(header, file);
    },
  });
  checkModelSections(header!, contents.sections, file);
  const graph = contents.sections.get('backbone.onnx');
  if (graph) checkEmbeddedGraph(header!.backbone, graph as Uint8Array, file);
  return { contents, header: header! };
}

/**
 * Reads a model file's sections and checks them against its header ({@link readCheckedModelFile}). The
 * statistics for resuming are read only when `resumeStatistics` is set; otherwise `kept` names the
 * section left in the file.
 */
export async function readModelParts(
  file: string,
  opts: { verify?: boolean; resumeStatistics?: boolean },
): Promise<{ parts: ModelParts; sections: Map<string, SectionData>; kept: { name: string; sha256: string } | undefined; lazy: Map<string, string> }> {
  const lazySkipped = (name: string): boolean => LAZY_SECTIONS.includes(name) && !(opts.resumeStatistics && RESUME_SECTIONS.includes(name));
  const checked = await readCheckedModelFile(file, { ...(opts.verify === undefined ? {} : { verify: opts.verify }), read: (name) => !lazySkipped(name) });
  const contents = checked.contents;
  const header = checked.header as unknown as ModelHeader;
  const need = (name: string): SectionData => {
    const s = contents.sections.get(name);
    if (!s) {
      throw new PartscanError('MODEL_FORMAT', `${file} has no "${name}" section.`, { file, remedy: 're-fit the model' });
    }
    return s;
  };
  const parts: ModelParts = {
    header,
    channelIndices: need('channels') as Int32Array,
    mean: need('mean') as Float64Array,
    invCovPacked: need('invCov') as Float32Array,
  };
  const roi = contents.sections.get('roi');
  if (roi) parts.roi = roi as Uint8Array;
  const std = contents.sections.get(STANDARDIZE_SECTION) as Float32Array | undefined;
  if (std) {
    const P = header.embedding.gridH * header.embedding.gridW;
    parts.standardization = { centre: std.subarray(0, P), spread: std.subarray(P, 2 * P) };
  }
  const P = header.embedding.gridH * header.embedding.gridW;
  const d = header.embedding.channels;
  if (parts.mean.length !== P * d || parts.invCovPacked.length !== P * packedSize(d) || parts.channelIndices.length !== d) {
    throw sectionSizeError(file);
  }
  Object.assign(parts, resumeSections(contents.sections, header, file));
  const kept = contents.header.sections.find((s) => RESUME_SECTIONS.includes(s.name));
  // The sections left in the file, by checksum: a later read checks that the file is still the one loaded.
  const lazy = new Map(contents.header.sections.filter((s) => lazySkipped(s.name)).map((s) => [s.name, s.sha256]));
  return { parts, sections: contents.sections, kept, lazy };
}
