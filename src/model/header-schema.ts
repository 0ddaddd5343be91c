/**
 * The one schema of a `.partscan` model header. A model file is input like any other (it may come from
 * another site, or be edited by hand): after the checksums pass, {@link parseModelHeader} checks every
 * field partscan reads — types, ranges, and the consistency between fields and with the section table
 * (shapes that agree with the grid and d, channel counts that add up) — and turns every violation into a
 * typed 'MODEL_FORMAT' error naming the field's path. {@link checkModelSections} then checks the section
 * contents the header cannot describe (channel indices within the backbone's channels).
 *
 * Known fields are validated strictly; unknown keys are kept as they are: later minor versions of format
 * 1 add optional fields (readers ignore what they do not know).
 */

import { z } from 'zod';
import { THRESHOLD_METHODS } from '../postprocess/thresholds.js';
import { PartscanError } from '../errors.js';
import { packedSize } from '../stats/gaussian-stats.js';
import { driftModelSchema } from '../guards/drift.js';
import { GLOBAL_STATS_FEATURES } from '../guards/image-stats.js';
import { monitorReferenceSchema } from './monitor-reference.js';
import { preprocessOptionsSchema } from '../preprocess/options.js';

const int = (min = 0) => z.number().int().min(min);
const finite = z.number().refine(Number.isFinite, 'expected a finite number');
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 as 64 lowercase hex digits');
const scoreRange = z.looseObject({ min: finite, max: finite }).refine((r) => r.min <= r.max, 'min must not exceed max');
const thresholdMethod = z.enum(THRESHOLD_METHODS);
const unitRate = finite.refine((r) => r >= 0 && r <= 1, 'must lie in [0, 1]');
const tail = z.looseObject({ model: z.literal('exponential'), n: int(1), exceedances: int(1), u: finite, beta: finite.refine((b) => b >= 0, 'must be ≥ 0') });
const estimatedRate = z.looseObject({ rate: unitRate, upper95: unitRate, tail });
const operatingPoint = z.looseObject({
  falseRejectTarget: finite.refine((r) => r > 0 && r < 1, 'must lie in (0, 1)'),
  goodScores: z.looseObject({ used: int(0), excluded: int(0) }),
  image: estimatedRate,
  pixel: estimatedRate,
  escape: z.looseObject({ rate: unitRate, lower95: unitRate, upper95: unitRate, defects: int(1) }).optional(),
  reviewBand: z.looseObject({ falseRejectRate: finite.refine((r) => r > 0 && r < 1, 'must lie in (0, 1)'), threshold: finite }).optional(),
});
const calibrationSummary = z.looseObject({
  good: int(0),
  defect: int(0),
  sources: z.looseObject({ leaveOneOut: int(0), heldOut: int(0), added: int(0) }),
  excluded: int(0),
  reviewed: z.looseObject({ good: int(0), defect: int(0) }).optional(),
});

/** One entry of the container's section table (also checked by readModelFile before any section is read). */
export const sectionInfoSchema = z.looseObject({
  name: z.string().min(1),
  dtype: z.enum(['float32', 'float64', 'int32', 'uint8', 'float16']),
  shape: z.array(int(0)),
  offset: int(0).refine(Number.isSafeInteger, 'expected a safe integer'),
  byteLength: int(0).refine(Number.isSafeInteger, 'expected a safe integer'),
  sha256: sha256Hex,
});

const BYTES: Record<z.infer<typeof sectionInfoSchema>['dtype'], number> = { float32: 4, float64: 8, int32: 4, uint8: 1, float16: 2 };

/** The container's section table: names unique, each byte length that of its shape and element type. */
export const sectionTableSchema = z.array(sectionInfoSchema).superRefine((table, ctx) => {
  const seen = new Set<string>();
  table.forEach((s, i) => {
    if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate section "${s.name}"` });
    seen.add(s.name);
    const elements = s.shape.reduce((a, b) => a * b, 1);
    if (elements * BYTES[s.dtype] !== s.byteLength) {
      ctx.addIssue({ code: 'custom', path: [i, 'byteLength'], message: `${s.byteLength} bytes do not hold a ${s.dtype} [${s.shape.join(', ')}] array` });
    }
  });
});

const headerObject = z.looseObject({
  format: z.literal('partscan-model'),
  formatVersion: z.tuple([int(0), int(0)]),
  partscanVersion: z.string(),
  backbone: z.looseObject({
    name: z.string().min(1),
    sha256: sha256Hex,
    layers: z.array(z.string().min(1)).min(1),
    strides: z.array(finite.refine((v) => v > 0, 'must be > 0')), // measured on .onnx backbones: not always integers
    channels: z.array(int(1)),
    seed: int(0).optional(),
    embedded: z.boolean(),
    inputName: z.string().min(1),
    precision: z.literal('int8').optional(),
    graphSha256: sha256Hex.optional(),
  }),
  // The preprocessing options' own schema (one home for their ranges), without its strictness: unknown
  // keys are dropped, since these options go to preprocess(), which refuses keys it does not know.
  preprocess: z.object(preprocessOptionsSchema.shape),
  embedding: z.looseObject({ channels: int(1), seed: int(0), totalChannels: int(1), gridH: int(1), gridW: int(1) }),
  gaussian: z.looseObject({
    images: int(1),
    epsilon: finite.refine((e) => e >= 0, 'must be ≥ 0'),
    storage: z.enum(['float32-packed', 'float16-packed']),
    resumable: z.boolean(),
    resumeState: z.enum(['scatter', 'samples']).optional(),
  }),
  postprocess: z.looseObject({ blurSigma: finite.refine((s) => s > 0, 'must be > 0'), upsample: z.literal('bilinear') }),
  thresholds: z
    .looseObject({
      image: finite,
      pixel: finite,
      method: z.looseObject({ image: thresholdMethod, pixel: thresholdMethod }),
      imageStats: scoreRange,
      pixelStats: scoreRange,
      band: z
        .looseObject({ low: finite, high: finite })
        .refine((b) => b.low >= 0 && b.low <= 0.5 && b.high >= 0.5 && b.high <= 1, 'must satisfy 0 ≤ low ≤ 0.5 ≤ high ≤ 1')
        .optional(),
      operatingPoint: operatingPoint.optional(),
    })
    .optional(),
  imageScore: z.looseObject({ kind: z.enum(['standardized', 'max']) }).optional(),
  calibration: calibrationSummary.optional(),
  roi: z.looseObject({ width: int(1), height: int(1) }).optional(),
  fit: z.looseObject({ calibrationImages: int(0), calibrationWarnings: z.array(z.string()) }),
  tiling: z.looseObject({ tile: int(16), overlap: int(0) }).refine((t) => t.overlap < t.tile, 'overlap must be smaller than the tile').optional(),
  drift: driftModelSchema.optional(),
  monitor: monitorReferenceSchema.optional(),
  sections: sectionTableSchema,
});

/** Cross-field rules: what one field implies for another and for the section table. */
export const modelHeaderSchema = headerObject.superRefine((h, ctx) => {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  const b = h.backbone;
  if (b.strides.length !== b.layers.length) issue(['backbone', 'strides'], `${b.strides.length} strides for ${b.layers.length} layers`);
  if (b.channels.length !== b.layers.length) issue(['backbone', 'channels'], `${b.channels.length} channel counts for ${b.layers.length} layers`);
  const e = h.embedding;
  const total = b.channels.reduce((a, c) => a + c, 0);
  if (e.totalChannels !== total) issue(['embedding', 'totalChannels'], `${e.totalChannels}, but the backbone's layers have ${total} channels`);
  if (e.channels > e.totalChannels) issue(['embedding', 'channels'], `d = ${e.channels} exceeds the ${e.totalChannels} backbone channels`);
  const p = h.preprocess;
  if (p.cropSize !== undefined && p.cropSize > p.imageSize) issue(['preprocess', 'cropSize'], `crop ${p.cropSize} exceeds the image size ${p.imageSize}`);
  const size = p.cropSize ?? p.imageSize;
  // The grid is what the first layer makes of the input (stride s: about size/s; padding may shift it a little).
  const stride = b.strides[0];
  const slack = (v: number) => stride !== undefined && Math.abs(v * stride - size) > Math.max(2 * stride, 0.1 * size);
  if (slack(e.gridH) || slack(e.gridW)) {
    issue(['embedding', slack(e.gridH) ? 'gridH' : 'gridW'], `grid ${e.gridW}×${e.gridH} does not fit a ${size} px input at stride ${stride}`);
  }
  // The blur kernel (radius 4σ) must fit in the map it blurs.
  if (4 * h.postprocess.blurSigma + 0.5 >= size) issue(['postprocess', 'blurSigma'], `σ ${h.postprocess.blurSigma} is too wide for a ${size} px map`);
  if (h.roi && (h.roi.width !== size || h.roi.height !== size)) issue(['roi'], `roi ${h.roi.width}×${h.roi.height} differs from the ${size} px model input`);

  // The sections the header describes, with the shapes it implies.
  const P = e.gridH * e.gridW;
  const d = e.channels;
  // float16-packed (format 1.5): inverse covariances in half precision, each position scaled by a
  // power of two held in "invCov.scale".
  const half = h.gaussian.storage === 'float16-packed';
  const expected: Record<string, { dtype: string; shape: number[] }> = {
    channels: { dtype: 'int32', shape: [d] },
    mean: { dtype: 'float64', shape: [P, d] },
    invCov: { dtype: half ? 'float16' : 'float32', shape: [P, packedSize(d)] },
    m2: { dtype: 'float32', shape: [P, packedSize(d)] },
    ...(half ? { 'invCov.scale': { dtype: 'float32', shape: [P] } } : {}),
    samples: { dtype: 'float32', shape: [P, h.gaussian.images, d] },
    roi: { dtype: 'uint8', shape: [size, size] },
    'imageScore.standardize': { dtype: 'float32', shape: [2, P] },
    'calibration.good': { dtype: 'float32', shape: [h.calibration?.good ?? -1, 3] },
    'calibration.defect': { dtype: 'float32', shape: [h.calibration?.defect ?? -1, 3] },
    'calibration.goodKeys': { dtype: 'uint8', shape: [h.calibration?.good ?? -1, 32] },
    'calibration.defectKeys': { dtype: 'uint8', shape: [h.calibration?.defect ?? -1, 32] },
    'calibration.goodFlags': { dtype: 'uint8', shape: [h.calibration?.good ?? -1] },
    'calibration.defectFlags': { dtype: 'uint8', shape: [h.calibration?.defect ?? -1] },
  };
  const byName = new Map(h.sections.map((s, i) => [s.name, i]));
  for (const name of ['channels', 'mean', 'invCov', ...(half ? ['invCov.scale'] : [])]) if (!byName.has(name)) issue(['sections'], `the required section "${name}" is missing`);
  h.sections.forEach((s, i) => {
    const want = expected[s.name];
    if (want && (s.dtype !== want.dtype || s.shape.join(',') !== want.shape.join(','))) {
      issue(['sections', i], `section "${s.name}" is ${s.dtype} [${s.shape.join(', ')}]; grid ${e.gridW}×${e.gridH} and d = ${d} need ${want.dtype} [${want.shape.join(', ')}]`);
    }
  });
  if (b.embedded && !byName.has('backbone.onnx')) issue(['backbone', 'embedded'], 'true, but the file has no "backbone.onnx" section');
  // Scoring computes exactly these descriptors: a drift reference over others would fail every image.
  if (h.drift && h.drift.features.join(',') !== GLOBAL_STATS_FEATURES.join(',')) {
    issue(['drift', 'features'], `${h.drift.features.length} features; a model's drift reference has the ${GLOBAL_STATS_FEATURES.length} image statistics ${GLOBAL_STATS_FEATURES.join(', ')}`);
  }
  if (byName.has('roi') !== (h.roi !== undefined)) issue(['roi'], h.roi ? 'described, but the file has no "roi" section' : 'the file has a "roi" section the header does not describe');
  const standardized = h.imageScore?.kind === 'standardized';
  if (byName.has('imageScore.standardize') !== standardized) {
    issue(['imageScore'], standardized ? "'standardized', but the file has no \"imageScore.standardize\" section" : 'the file has an "imageScore.standardize" section, but the image score is not standardised');
  }
  if (h.calibration && !byName.has('calibration.good') && h.calibration.good > 0) issue(['calibration', 'good'], `${h.calibration.good} rows, but the file has no "calibration.good" section`);
});

/** A header that passed {@link modelHeaderSchema} (unknown extra keys kept as they were). */
export type ParsedModelHeader = z.infer<typeof modelHeaderSchema>;

function pathOf(path: readonly PropertyKey[]): string {
  return path.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)), '') || '(root)';
}

/** A typed 'MODEL_FORMAT' error naming the header field at `field`. */
export function headerFieldError(file: string, field: string, what: string): PartscanError {
  return new PartscanError('MODEL_FORMAT', `${file}: header field ${field}: ${what}.`, {
    file,
    remedy: 'the model file was damaged, edited or written by an incompatible tool: re-fit the model, or copy it again from its source',
  });
}

/**
 * Validates a parsed model header against {@link modelHeaderSchema}; throws a typed 'MODEL_FORMAT'
 * error naming the first offending field's path (e.g. `thresholds.imageStats.min`), with the other
 * problems listed after it.
 */
export function parseModelHeader(header: unknown, file: string): ParsedModelHeader {
  const r = modelHeaderSchema.safeParse(header);
  if (r.success) return r.data;
  const [first, ...rest] = r.error.issues;
  const more = rest.length ? ` (also: ${rest.slice(0, 4).map((i) => `${pathOf(i.path)}: ${i.message}`).join('; ')}${rest.length > 4 ? '; …' : ''})` : '';
  return ((): never => {
    throw headerFieldError(file, pathOf(first!.path), `${first!.message}${more}`);
  })();
}

/**
 * Checks section contents the header cannot describe: every channel index lies within the backbone's
 * concatenated channels and the indices are strictly increasing (as fits write them).
 */
export function checkModelSections(header: ParsedModelHeader, sections: ReadonlyMap<string, ArrayLike<number>>, file: string): void {
  const std = sections.get('imageScore.standardize');
  if (std) {
    const P = std.length / 2;
    for (let i = 0; i < std.length; i++) {
      if (!Number.isFinite(std[i]!) || (i >= P && !(std[i]! > 0))) {
        throw headerFieldError(file, `sections.imageScore.standardize[${i}]`, i >= P ? `spread ${std[i]} must be a finite number > 0` : `centre ${std[i]} must be finite`);
      }
    }
  }
  const channels = sections.get('channels');
  if (!channels) return;
  const total = header.embedding.totalChannels;
  for (let i = 0; i < channels.length; i++) {
    const c = channels[i]!;
    if (!Number.isInteger(c) || c < 0 || c >= total) {
      throw headerFieldError(file, `sections.channels[${i}]`, `channel index ${c} lies outside the backbone's channels 0..${total - 1}`);
    }
    if (i > 0 && c <= channels[i - 1]!) {
      throw headerFieldError(file, `sections.channels[${i}]`, `channel indices must be strictly increasing (${channels[i - 1]} then ${c})`);
    }
  }
}
