/**
 * The `--json` contract of every command, as zod schemas: one object on stdout, camelCase keys like
 * the JS API, NaN written as null. docs/schemas/*.schema.json are generated from these
 * ({@link jsonSchemaFiles}); the tests validate real outputs against those files. With `--json`, an
 * error is `{ "error": { "code", "message", "remedy" } }` ({@link cliErrorSchema}).
 *
 * Objects are closed where partscan owns every field; the model header (`info`), thresholds and the
 * line monitor's result stay open, so fields that later model formats add do not break readers.
 */
import { z } from 'zod';
import { failureSchema, imageResultSchema, resultsJsonSchema, runMonitorSchema, thresholdsSchema } from '../export/results.js';
import { reviewJsonSchema } from '../review/review-file.js';

/** A metric: NaN (undefined for the set, e.g. AUROC without defects) is written as null. */
const metric = z.number().nullable();
const count = z.number().int().nonnegative();
const seconds = z.number().nonnegative().describe('wall time in seconds');

const setMetrics = {
  imageAuroc: metric.describe('image-level ROC AUC'),
  pixelAuroc: metric.describe('pixel-level ROC AUC over all pixels with ground truth'),
  aupro: metric.describe('MVTec AUPRO up to FPR 0.3, normalised to 0..1'),
  imageF1Max: metric.describe('best image-level F1 over all thresholds'),
  nGood: count,
  nDefect: count,
};

const verdictCounts = z.strictObject({ OK: count, NG: count, UNCERTAIN: count });
/** A 95 % interval [lower, upper]; null bounds when the class is empty. */
const interval = z.tuple([metric, metric]);
const verdictSet = {
  escapeRate: metric.describe('defective parts judged OK / defective parts'),
  falseRejectRate: metric.describe('good parts judged NG / good parts'),
  uncertainShare: metric.describe('parts judged UNCERTAIN / all parts'),
  confusion: z.strictObject({ good: verdictCounts, defect: verdictCounts }),
  nGood: count,
  nDefect: count,
  escapeRateCi95: interval.describe('95 % Clopper–Pearson interval of the escape rate'),
  falseRejectRateCi95: interval.describe('95 % Clopper–Pearson interval of the false-reject rate'),
};

/** One point of the operating curve measured on the test set. */
const operatingCurvePoint = z.strictObject({
  falseRejectRate: z.number().describe('at most this share of the good test images is above the threshold'),
  measuredFalseRejectRate: metric.describe('the share of good test images actually above it'),
  escapeRate: metric.describe('share of defective test images at or below it'),
  threshold: metric.describe('raw image-score threshold'),
});

/** `partscan eval --json`. */
export const evalOutputSchema = z.strictObject({
  ...setMetrics,
  perDefect: z.record(z.string(), z.strictObject(setMetrics)).describe('per defect type: all good parts plus that type'),
  verdicts: z
    .strictObject({ ...verdictSet, perDefect: z.record(z.string(), z.strictObject(verdictSet)) })
    .nullable()
    .describe("the model's own verdicts at its shipped threshold; null without thresholds"),
  operatingPoints: z.array(operatingCurvePoint).describe('the escape rate at false-reject rates 0, 0.5, 1, 2, 5 and 10 %, measured on this set'),
  shippedOperatingPoint: z
    .strictObject({
      threshold: z.number(),
      falseRejectRate: metric,
      escapeRate: metric,
      targetFalseRejectRate: metric.describe('the false-reject rate the threshold was set for'),
      estimatedFalseRejectRate: metric.describe('its false-reject rate estimated at fit from out-of-sample scores'),
    })
    .nullable()
    .describe("where the model's image threshold sits on that curve; null without thresholds"),
  seconds,
  model: z.string(),
  dataset: z.string(),
  out: z.string().optional().describe('the scored run folder, with --out'),
  failures: z.array(failureSchema).optional(),
});

/** The calibration pool a model's thresholds come from (model header `calibration`, format ≥ 1.3). */
const calibrationSummary = z.looseObject({
  good: count,
  defect: count,
  sources: z.looseObject({ leaveOneOut: count, heldOut: count, added: count }),
  excluded: count,
});

const warningSchema = z.strictObject({ code: z.string(), message: z.string(), file: z.string().optional() });

/** What a QA review brought (`calibrate --review`, `fit --resume --review`): ReviewJoinSummary. */
const reviewJoinSummary = z
  .strictObject({
    good: count.describe('parts labelled good'),
    defect: count.describe('parts labelled defective'),
    inPool: count.describe('parts the calibration pool held already (their rows kept, relabelled where the review said so)'),
    recorded: count.describe('parts that joined with the scores the run recorded'),
    scored: count.describe('parts scored now'),
    fitted: count.describe('fit --resume: reviewed-good parts added to the Gaussians'),
  })
  .describe('what the QA review brought, with --review');

/** `partscan fit --json`. */
export const fitOutputSchema = z.strictObject({
  model: z.string().describe('absolute path of the model file written'),
  backbone: z.string(),
  precision: z.enum(['fp32', 'int8']),
  images: count.describe('images the statistics were fitted on'),
  calibrationImages: count,
  channels: z.number().int().positive(),
  grid: z.strictObject({ width: z.number().int().positive(), height: z.number().int().positive() }),
  imageSize: z.number().int().positive(),
  thresholds: thresholdsSchema.nullable(),
  warnings: z.array(warningSchema),
  suspects: z.array(z.strictObject({ file: z.string(), score: z.number(), z: z.number() })).describe('likely defects among the training images'),
  review: reviewJoinSummary.optional(),
  embeddedBackbone: z.boolean(),
  resumable: z.boolean(),
  fileBytes: count,
  seconds,
});

/** `partscan fit --queue … --json`: the worker's summary. */
export const fitQueueOutputSchema = z.strictObject({
  model: z.string(),
  sha256: z.string(),
  images: count,
  calibrationImages: count,
  warnings: z.array(z.string()),
  seconds,
  workerSeconds: z.number().nonnegative(),
  worker: z.string().describe('host:pid of the worker that fitted'),
});

/** `partscan score --json` (locally or with --queue). */
export const scoreOutputSchema = z.strictObject({
  outDir: z.string(),
  counts: z.strictObject({ OK: count, NG: count, UNCERTAIN: count, failed: count }),
  results: z.array(imageResultSchema).describe("one entry per scored image, exactly as in the run's results.json"),
  failures: z.array(failureSchema),
  uncalibrated: z.literal(true).optional(),
  monitor: runMonitorSchema.optional().describe("the line monitor's result without its per-image chart points"),
  seconds,
});

/** `partscan info --json`. */
export const infoOutputSchema = z.strictObject({
  file: z.string(),
  fileBytes: count,
  header: z
    .looseObject({
      format: z.literal('partscan-model'),
      formatVersion: z.tuple([count, count]),
      partscanVersion: z.string(),
      backbone: z.looseObject({ name: z.string() }),
      preprocess: z.looseObject({ imageSize: z.number().int() }),
      embedding: z.looseObject({ channels: z.number().int() }),
      gaussian: z.looseObject({ images: count }),
      thresholds: thresholdsSchema.optional(),
      calibration: calibrationSummary.optional(),
    })
    .describe('the model header (docs/MODEL-FILE.md); later format versions add fields'),
  sections: z.array(z.strictObject({ name: z.string(), dtype: z.string(), shape: z.array(count), bytes: count })),
});

/** `partscan calibrate --json`. */
export const calibrateOutputSchema = z.strictObject({
  model: z.string().describe('absolute path of the model file written'),
  from: z.string().describe('the model file it was calibrated from'),
  thresholds: thresholdsSchema,
  previous: thresholdsSchema.nullable(),
  added: z.strictObject({ good: count, defect: count }).describe('images scored and added to the calibration pool'),
  review: reviewJoinSummary.optional(),
  calibration: calibrationSummary.nullable(),
  warnings: z.array(warningSchema),
  fileBytes: count,
  seconds,
});

/** `partscan export --json`. */
export const exportOutputSchema = z.strictObject({
  onnx: z.string(),
  bytes: count,
  externalData: z.string().nullable().describe('the external data file beside the graph, for > 1.5 GiB models'),
  seconds,
});

/** `partscan report --json`. */
export const reportOutputSchema = z.strictObject({ report: z.string().describe('absolute path of the HTML report') });

/** `partscan demo --json`. */
export const demoOutputSchema = z.strictObject({
  metrics: evalOutputSchema.pick({
    imageAuroc: true,
    pixelAuroc: true,
    aupro: true,
    imageF1Max: true,
    nGood: true,
    nDefect: true,
    perDefect: true,
    verdicts: true,
    operatingPoints: true,
    shippedOperatingPoint: true,
  }),
  reportPath: z.string(),
  modelPath: z.string(),
  runDir: z.string(),
  dataRoot: z.string(),
  backbone: z.string(),
  backboneNote: z.string(),
  seconds,
});

/** `partscan worker --json`: printed when the worker stops. */
export const workerOutputSchema = z.strictObject({ jobs: count, failed: count, batches: count, seconds });

/** Any command with `--json`, on failure (exit status ≠ 0). */
export const cliErrorSchema = z.strictObject({
  error: z.strictObject({
    code: z.string().describe("PartscanError code (e.g. 'IMAGE_DECODE'), 'USAGE' for bad arguments, 'UNEXPECTED' for a bug"),
    message: z.string(),
    remedy: z.string().nullable().describe('what to do about it, when known'),
    file: z.string().optional().describe('the file the problem is about'),
  }),
});

/** docs/schemas/<name>.schema.json → the schema it is generated from. */
export const OUTPUT_SCHEMAS: Record<string, z.ZodType> = {
  results: resultsJsonSchema,
  fit: fitOutputSchema,
  calibrate: calibrateOutputSchema,
  'fit-queue': fitQueueOutputSchema,
  score: scoreOutputSchema,
  eval: evalOutputSchema,
  info: infoOutputSchema,
  export: exportOutputSchema,
  report: reportOutputSchema,
  demo: demoOutputSchema,
  worker: workerOutputSchema,
  error: cliErrorSchema,
};

/** The JSON Schema files of docs/schemas/, by file name, as partscan generates them. */
export function jsonSchemaFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [name, schema] of Object.entries(OUTPUT_SCHEMAS)) {
    const json = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) as Record<string, unknown>;
    const title = name === 'results' ? 'results.json of a scored run' : name === 'error' ? 'any partscan command with --json, on failure' : `partscan ${name.replace('-', ' --')} --json`;
    files[`${name}.schema.json`] = JSON.stringify({ $schema: json.$schema, title, ...json }, null, 2) + '\n';
  }
  // review.json is read, not written, by partscan: its schema is the input side of the zod schema.
  files['review.schema.json'] = JSON.stringify(reviewJsonSchema(), null, 2) + '\n';
  return files;
}
