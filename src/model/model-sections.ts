/**
 * The sections of a `.partscan` file as a model's parts: which sections a load reads (the statistics
 * for resuming only on request), the schema and size checks on them, and the resume statistics read later.
 */

import { PartscanError } from '../errors.js';
import { packedSize } from '../stats/gaussian-stats.js';
import { readModelFile, type ModelFileContents, type SectionData } from './model-file.js';
import { checkModelSections, parseModelHeader, type ParsedModelHeader } from './header-schema.js';
import { checkEmbeddedGraph, checkHeaderSizes, KNOWN_SECTIONS } from './model-file-limits.js';
import type { ModelHeader } from './header.js';

/** Sections that only `fit --resume` needs. */
export const RESUME_SECTIONS: readonly string[] = ['m2', 'samples'];

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
}

/**
 * Reads the known sections of a model file (`resumeStatistics`: the statistics for resuming too; unknown
 * sections are skipped unread) after one schema has checked every header field, and the section shapes
 * against grid and d, and the caps of model-file-limits.ts the sizes: nothing is allocated that the
 * header does not justify. Then the section contents the header cannot describe are checked.
 */
export async function readCheckedModelFile(
  file: string,
  opts: { verify?: boolean; resumeStatistics?: boolean },
): Promise<{ contents: ModelFileContents; header: ParsedModelHeader }> {
  let header: ParsedModelHeader | undefined;
  const contents = await readModelFile(file, {
    ...(opts.verify === undefined ? {} : { verify: opts.verify }),
    // Called after `check`: the graph is read only when the header says it is the model's backbone.
    sections: (name: string) =>
      KNOWN_SECTIONS.includes(name) && (opts.resumeStatistics === true || !RESUME_SECTIONS.includes(name)) && (name !== 'backbone.onnx' || header?.backbone.embedded === true),
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
): Promise<{ parts: ModelParts; sections: Map<string, SectionData>; kept: { name: string; sha256: string } | undefined }> {
  const checked = await readCheckedModelFile(file, opts);
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
  const P = header.embedding.gridH * header.embedding.gridW;
  const d = header.embedding.channels;
  if (parts.mean.length !== P * d || parts.invCovPacked.length !== P * packedSize(d) || parts.channelIndices.length !== d) {
    throw sectionSizeError(file);
  }
  Object.assign(parts, resumeSections(contents.sections, header, file));
  const kept = contents.header.sections.find((s) => RESUME_SECTIONS.includes(s.name));
  return { parts, sections: contents.sections, kept };
}
