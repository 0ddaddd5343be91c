/**
 * One zod schema per public entry, with the defaults that have no other home beside it. Each entry calls
 * {@link parseOptions} with its schema first, so an invalid option is always the same typed 'OPTIONS'
 * error naming the field (never silently clamped). Objects are loose: extra fields pass, as they did
 * before, and range checks that need the model or backbone (e.g. channels ≤ the backbone's total) stay
 * in the entry that knows it. Only zod is imported here, so every layer can use this module.
 */
import { z } from 'zod';

/** Images per backbone batch of the fit (see {@link FitOptions.batchSize}). */
export const DEFAULT_FIT_BATCH_SIZE = 16;
/** Seed of the channel choice and calibration split. */
export const DEFAULT_FIT_SEED = 0;

const positiveInt = z.int().min(1);
const nonNegative = z.number().min(0);
/** Callbacks and backbone objects go through unchanged; only their kind is checked. */
const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', { message: 'expected a function' });
const objectLike = z.custom<object>((v) => typeof v === 'object' && v !== null, { message: 'expected an object' });
const backbone = z.union([z.string().min(1), objectLike]);
/** A rate strictly between 0 and 1 (NaN and the ends refused). */
const rate = z.number().gt(0).lt(1);
const goodOnlyRule = z.union([
  z.looseObject({ kind: z.literal('sigma'), k: z.number().min(0), floorAtMax: z.boolean().optional() }),
  z.looseObject({ kind: z.literal('quantile'), q: z.number().min(0).max(1) }),
]);
/** A QA review: a review.json path, or a parsed review (validated in depth by review/review-file.ts, as 'REVIEW'). */
const review = z.union([z.string().min(1), objectLike]);
/** Folders reviewed images must lie in. */
const imageRoots = z.array(z.string().min(1)).min(1);
/** How thresholds are chosen (postprocess/operating-point.ts). */
export const thresholdRuleSchema = z.union([z.enum(['false-reject', 'f1']), goodOnlyRule]);

/** {@link fit}'s options. */
export const fitOptionsSchema = z.looseObject({
  backbone: backbone.optional(),
  channels: positiveInt.optional(),
  imageSize: positiveInt.optional(),
  preprocess: objectLike.optional(),
  seed: z.int().optional(),
  batchSize: positiveInt.optional(),
  calibrationSplit: z.number().min(0).lt(1).optional(),
  calibration: z.union([z.string(), z.array(z.unknown()), objectLike]).optional(),
  defects: z.array(z.unknown()).optional(),
  thresholdRule: thresholdRuleSchema.optional(),
  falseRejectTarget: rate.optional(),
  reviewBand: rate.optional(),
  imageScore: z.enum(['standardized', 'max']).optional(),
  manualThresholds: z.looseObject({ image: z.number().optional(), pixel: z.number().optional() }).optional(),
  band: z.looseObject({ low: z.number().min(0).max(0.5), high: z.number().min(0.5).max(1) }).optional(),
  epsilon: nonNegative.optional(),
  resume: z.union([z.string().min(1), objectLike]).optional(),
  review: review.optional(),
  imageRoots: imageRoots.optional(),
  threads: z.int().min(0).optional(),
  onProgress: fn.optional(),
  tile: z.looseObject({ size: positiveInt, overlap: z.int().min(0) }).optional(),
  roi: z.string().min(1).optional(),
  guards: z.boolean().optional(),
  contaminationCheck: z.boolean().optional(),
  contaminationMemory: nonNegative.optional(),
  precision: z.enum(['fp32', 'int8']).optional(),
});

/** {@link Model.load}'s options. */
export const loadOptionsSchema = z.looseObject({
  backbone: backbone.optional(),
  threads: z.int().min(0).optional(),
  verify: z.boolean().optional(),
  resumeStatistics: z.boolean().optional(),
  warmUp: z.boolean().optional(),
});

/** {@link ModelPool}'s options. */
export const modelPoolOptionsSchema = z.looseObject({
  maxBytes: z.number().int().min(1).optional(),
  threads: z.int().min(0).optional(),
  warmUp: z.boolean().optional(),
  onEvict: fn.optional(),
});

/** {@link Model.save}'s options. */
export const saveOptionsSchema = z.looseObject({
  embedBackbone: z.boolean().optional(),
  resumable: z.boolean().optional(),
});

/** {@link Model.score}'s options. */
export const scoreOptionsSchema = z.looseObject({
  batchSize: positiveInt.optional(),
  minArea: z.number().min(0).optional(),
  openRadius: z.int().min(0).optional(),
  closeRadius: z.int().min(0).optional(),
});

/** {@link BatchingScorer}'s options. */
export const batchingScorerOptionsSchema = z.looseObject({
  maxBatch: positiveInt.optional(),
});

/** {@link evaluateModel}'s options. */
export const evaluateOptionsSchema = z.looseObject({
  batchSize: positiveInt.optional(),
  onProgress: fn.optional(),
});

/** Images given as a folder / dataset root / list file, a non-empty list of files or samples, or a loaded Dataset. */
const imageSource = z.union([
  z.string().min(1),
  z.array(z.union([z.string().min(1), z.looseObject({ path: z.string().min(1) })])).min(1),
  z.looseObject({ train: z.array(z.unknown()), test: z.array(z.unknown()) }),
]);

/** {@link calibrate}'s options. */
export const calibrateOptionsSchema = z.looseObject({
  falseRejectTarget: rate.optional(),
  reviewBand: rate.optional(),
  thresholdRule: thresholdRuleSchema.optional(),
  defects: imageSource.optional(),
  good: imageSource.optional(),
  review: review.optional(),
  imageRoots: imageRoots.optional(),
  batchSize: positiveInt.optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, { message: 'expected an AbortSignal' }).optional(),
  onProgress: fn.optional(),
});

/** {@link scoreToRunDir} / {@link writeScoredRun}'s options; the monitor's own fields are checked by LineMonitor. */
export const scoreRunOptionsSchema = z.looseObject({
  batchSize: positiveInt.optional(),
  minArea: z.number().min(0).optional(),
  exports: z
    .looseObject({ overlay: z.boolean().optional(), heatmap: z.boolean().optional(), mask: z.boolean().optional(), original: z.boolean().optional() })
    .optional(),
  maxSide: positiveInt.optional(),
  labels: z.instanceof(Map).optional(),
  modelPath: z.string().optional(),
  onProgress: fn.optional(),
  monitor: z.union([z.literal(false), objectLike]).optional(),
  failures: z.array(z.unknown()).optional(),
  inputIndices: z.array(z.int().min(0)).optional(),
});

/** {@link exportModelOnnx}'s options. */
export const exportOnnxOptionsSchema = z.looseObject({
  externalDataThreshold: nonNegative.optional(),
  raw: z.boolean().optional(),
});

/** {@link writeReport}'s options. */
export const reportOptionsSchema = z.looseObject({
  title: z.string().optional(),
  out: z.string().min(1).optional(),
  inlineBudgetBytes: nonNegative.optional(),
});

/** {@link runDemo}'s options. */
export const demoOptionsSchema = z.looseObject({
  dir: z.string().min(1).optional(),
  cacheDir: z.string().min(1).optional(),
  backbone: z.string().min(1).optional(),
  onProgress: fn.optional(),
  onStep: fn.optional(),
});

// Queue producers (src/queue/producer.ts): checked before Redis is contacted or a folder created. The
// job payloads they build are then checked against the workers' own schemas (src/queue/jobs.ts).
const queueConnection = {
  redis: z.string().min(1),
  queue: z.string().regex(/^[\w.-]{1,100}$/, 'must be letters, digits, ".", "-" or "_"').optional(),
  attempts: z.int().min(1).max(100).optional(),
  idleTimeoutMs: z.number().int().min(1).optional(),
};

/** {@link scoreOnQueue}'s arguments and options (model file, inputs and run folder included). */
export const queueScoreOptionsSchema = z.looseObject({
  ...queueConnection,
  modelFile: z.string().min(1),
  inputs: z.array(z.string().min(1)),
  outDir: z.string().min(1),
  model: objectLike.optional(),
  minArea: z.int().min(0).optional(),
  exports: z.looseObject({ overlay: z.boolean().optional(), heatmap: z.boolean().optional(), mask: z.boolean().optional(), original: z.boolean().optional() }).optional(),
  maxSide: z.int().min(16).optional(),
  modelPath: z.string().optional(),
  onProgress: fn.optional(),
});

/** {@link fitOnQueue}'s arguments and options (the fit options themselves are checked as a worker checks the job). */
export const queueFitOptionsSchema = z.looseObject({
  ...queueConnection,
  data: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  out: z.string().min(1),
  options: objectLike.optional(),
  onState: fn.optional(),
  onProgress: fn.optional(),
});
