/**
 * One zod schema per public entry, with the defaults that have no other home beside it. Each entry calls
 * {@link parseOptions} with its schema first, so an invalid option is always the same typed 'OPTIONS'
 * error naming the field (never silently clamped), raised before any file, backbone or model is touched.
 *
 * Objects are strict: a key the entry does not know (`imagesize` for `imageSize`) is an 'OPTIONS' error
 * naming the key, never silently ignored — from JavaScript, a misspelt option would otherwise fall back
 * to its default without a word. Nested option objects (backbone specs, tiles, bands, rules) are strict
 * too. Range checks that need the model or backbone (e.g. channels ≤ the backbone's total) stay in the
 * entry that knows it. Only zod and the preprocessing options' own schema are imported here, so every
 * layer above preprocessing can use this module.
 */
import { z } from 'zod';
import { MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, preprocessOptionsSchema } from '../preprocess/options.js';

/** Images per backbone batch of the fit (see {@link FitOptions.batchSize}). */
export const DEFAULT_FIT_BATCH_SIZE = 16;
/** Seed of the channel choice and calibration split. */
export const DEFAULT_FIT_SEED = 0;

const positiveInt = z.int().min(1);
const nonNegative = z.number().min(0);
/** Callbacks and backbone objects go through unchanged; only their kind is checked. */
const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', { message: 'expected a function' });
const objectLike = z.custom<object>((v) => typeof v === 'object' && v !== null, { message: 'expected an object' });
const signal = z.custom<AbortSignal>((v) => v instanceof AbortSignal, { message: 'expected an AbortSignal' });
const imageSize = z.int().min(MIN_IMAGE_SIZE).max(MAX_IMAGE_SIZE);

/** A backbone object (created by the caller): anything with an `extract` method. */
const backboneObject = z.custom<object>(
  (v) => typeof v === 'object' && v !== null && typeof (v as { extract?: unknown }).extract === 'function',
  { message: 'expected a backbone name, a backbone spec or a Backbone object' },
);

/** {@link BackboneSpec}: how to obtain a backbone. */
export const backboneSpecSchema = z.strictObject({
  name: z.string().min(1).optional(),
  backbone: z.string().min(1).optional(),
  weights: z.string().min(1).optional(),
  layers: z.array(z.string().min(1)).min(1).optional(),
  seed: z.int().min(0).optional(),
  cacheDir: z.string().min(1).optional(),
  weightsUrl: z.string().min(1).optional(),
  onProgress: fn.optional(),
  offline: z.boolean().optional(),
});

/** A backbone as options take it: a registry name or .onnx path, a spec, or a backbone object. */
const backbone = z.union([z.string().min(1), backboneObject, backboneSpecSchema]);

/** A rate strictly between 0 and 1 (NaN and the ends refused). */
const rate = z.number().gt(0).lt(1);
/** A good-only threshold rule ({@link GoodOnlyRule}). */
const goodOnlyRule = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('quantile'), q: z.number().min(0).max(1) }),
  z.strictObject({ kind: z.literal('sigma'), k: z.number().min(0).finite(), floorAtMax: z.boolean().optional() }),
]);
/** A QA review: a review.json path, or a parsed review (validated in depth by review/review-file.ts, as 'REVIEW'). */
const review = z.union([z.string().min(1), objectLike]);
/** Folders reviewed images must lie in. */
const imageRoots = z.array(z.string().min(1)).min(1);
/** How thresholds are chosen (postprocess/operating-point.ts). */
const thresholdRuleSchema = z.union([z.enum(['false-reject', 'f1']), goodOnlyRule]);

const band = z.strictObject({ low: z.number().min(0).max(0.5), high: z.number().min(0.5).max(1) });

/** {@link fit}'s options. */
export const fitOptionsSchema = z.strictObject({
  backbone: backbone.optional(),
  channels: positiveInt.optional(),
  imageSize: imageSize.optional(),
  preprocess: z.strictObject(preprocessOptionsSchema.shape).partial().optional(),
  seed: z.int().optional(),
  batchSize: positiveInt.optional(),
  calibrationSplit: z.number().min(0).lt(1).optional(),
  calibration: z.union([z.string(), z.array(z.unknown()), objectLike]).optional(),
  defects: z.array(z.unknown()).optional(),
  thresholdRule: thresholdRuleSchema.optional(),
  falseRejectTarget: rate.optional(),
  reviewBand: rate.optional(),
  imageScore: z.enum(['standardized', 'max']).optional(),
  manualThresholds: z.strictObject({ image: z.number().finite().optional(), pixel: z.number().finite().optional() }).optional(),
  band: band.optional(),
  epsilon: nonNegative.optional(),
  resume: z.union([z.string().min(1), objectLike]).optional(),
  review: review.optional(),
  imageRoots: imageRoots.optional(),
  threads: z.int().min(0).optional(),
  onProgress: fn.optional(),
  signal: signal.optional(),
  tile: z.strictObject({ size: z.int().min(16), overlap: z.int().min(0) }).refine((t) => t.overlap < t.size, { message: 'overlap must be smaller than size', path: ['overlap'] }).optional(),
  roi: z.string().min(1).optional(),
  guards: z.boolean().optional(),
  contaminationCheck: z.boolean().optional(),
  contaminationMemory: nonNegative.optional(),
  precision: z.enum(['fp32', 'int8']).optional(),
});

/** {@link Model.load}'s options. */
export const loadOptionsSchema = z.strictObject({
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
export const saveOptionsSchema = z.strictObject({
  embedBackbone: z.boolean().optional(),
  resumable: z.boolean().optional(),
});

/** Post-processing options of one score (those {@link BatchingScorer.score} takes too). */
const scoreShape = {
  batchSize: positiveInt.optional(),
  minArea: z.number().min(0).optional(),
  openRadius: z.int().min(0).optional(),
  closeRadius: z.int().min(0).optional(),
};

/** {@link Model.score}'s options. */
export const scoreOptionsSchema = z.strictObject({
  ...scoreShape,
  signal: signal.optional(),
  onProgress: fn.optional(),
});

/** {@link BatchingScorer.score}'s options: a request joins other callers' batches, so it takes no progress callback. */
export const batchingScoreOptionsSchema = z.strictObject({ ...scoreShape, signal: signal.optional() });

/** {@link BatchingScorer}'s options. */
export const batchingScorerOptionsSchema = z.strictObject({
  maxBatch: positiveInt.optional(),
});

/** {@link evaluateModel}'s options. */
export const evaluateOptionsSchema = z.strictObject({
  batchSize: positiveInt.optional(),
  onProgress: fn.optional(),
  signal: signal.optional(),
});

/** Images given as a folder / dataset root / list file, a non-empty list of files or samples, or a loaded Dataset. */
const imageSource = z.union([
  z.string().min(1),
  z.array(z.union([z.string().min(1), z.looseObject({ path: z.string().min(1) })])).min(1),
  z.looseObject({ train: z.array(z.unknown()), test: z.array(z.unknown()) }),
]);

/** {@link calibrate}'s options. */
export const calibrateOptionsSchema = z.strictObject({
  falseRejectTarget: rate.optional(),
  reviewBand: rate.optional(),
  thresholdRule: thresholdRuleSchema.optional(),
  defects: imageSource.optional(),
  good: imageSource.optional(),
  review: review.optional(),
  imageRoots: imageRoots.optional(),
  batchSize: positiveInt.optional(),
  signal: signal.optional(),
  onProgress: fn.optional(),
});

const exportsSchema = z.strictObject({
  overlay: z.boolean().optional(),
  heatmap: z.boolean().optional(),
  mask: z.boolean().optional(),
  original: z.boolean().optional(),
});

/** {@link scoreToRunDir}'s options; the monitor's own fields are checked by LineMonitor. */
export const scoreRunOptionsSchema = z.strictObject({
  batchSize: positiveInt.optional(),
  minArea: z.number().min(0).optional(),
  exports: exportsSchema.optional(),
  maxSide: positiveInt.optional(),
  labels: z.instanceof(Map).optional(),
  modelPath: z.string().optional(),
  onProgress: fn.optional(),
  signal: signal.optional(),
  monitor: z.union([z.literal(false), objectLike]).optional(),
});

/** {@link writeScoredRun}'s options: those of scoreToRunDir plus the failures and input indices of the results. */
export const writeScoredRunOptionsSchema = scoreRunOptionsSchema.extend({
  failures: z.array(z.unknown()).optional(),
  inputIndices: z.array(z.int().min(0)).optional(),
});

/** {@link renderResult}'s options. */
export const renderOptionsSchema = z.strictObject({
  format: z.enum(['png', 'jpeg']).optional(),
  maxSide: positiveInt.optional(),
  quality: z.int().min(1).max(100).optional(),
  image: z.unknown().optional(),
});

/** {@link exportModelOnnx}'s options. */
export const exportOnnxOptionsSchema = z.strictObject({
  externalDataThreshold: nonNegative.optional(),
  raw: z.boolean().optional(),
});

/** {@link writeReport}'s options. */
export const reportOptionsSchema = z.strictObject({
  title: z.string().optional(),
  out: z.string().min(1).optional(),
  inlineBudgetBytes: nonNegative.optional(),
});

/** {@link runDemo}'s options. */
export const demoOptionsSchema = z.strictObject({
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
export const queueScoreOptionsSchema = z.strictObject({
  ...queueConnection,
  modelFile: z.string().min(1),
  inputs: z.array(z.string().min(1)),
  outDir: z.string().min(1),
  model: objectLike.optional(),
  minArea: z.int().min(0).optional(),
  exports: exportsSchema.optional(),
  maxSide: z.int().min(16).optional(),
  modelPath: z.string().optional(),
  onProgress: fn.optional(),
});

/** {@link fitOnQueue}'s arguments and options (the fit options themselves are checked as a worker checks the job). */
export const queueFitOptionsSchema = z.strictObject({
  ...queueConnection,
  data: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  out: z.string().min(1),
  options: objectLike.optional(),
  onState: fn.optional(),
  onProgress: fn.optional(),
});

/** {@link startWorker}'s options. */
export const workerOptionsSchema = z.strictObject({
  redis: z.string().min(1),
  queue: z.string().regex(/^[\w.-]{1,100}$/).optional(),
  concurrency: z.int().min(1).max(1024).optional(),
  maxBatch: z.int().min(1).max(1024).optional(),
  modelCacheBytes: z.number().int().min(1).optional(),
  threads: z.int().min(1).max(1024).optional(),
  lockDuration: z.int().min(1000).max(3_600_000).optional(),
  allowedRoots: z.array(z.string().min(1)).min(1).optional(),
  onJob: fn.optional(),
});
