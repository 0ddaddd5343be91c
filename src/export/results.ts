/**
 * Per-run result files: `results.json` (the complete, machine-readable run manifest the HTML
 * report reads) and `results.csv` (one row per image, for spreadsheets).
 */

import path from 'node:path';
import { z } from 'zod';
import { THRESHOLD_METHODS } from '../postprocess/thresholds.js';
import { PartscanError } from '../errors.js';
import { readRegularFile } from '../util/regular-file.js';
import type { Region } from '../postprocess/regions.js';
import type { Thresholds, Verdict } from '../postprocess/thresholds.js';
import { ensureOutputDir, writeFileAtomic } from '../util/atomic-write.js';

/** File name of the run manifest inside a run directory. */
export const RESULTS_JSON = 'results.json';
/** File name of the CSV summary inside a run directory. */
export const RESULTS_CSV = 'results.csv';

/** Everything partscan found about one image. */
export interface ImageResult {
  /** The input image path, as given. */
  file: string;
  /**
   * Raw image score: the maximum of the per-position standardised distance map (models of format ≥ 1.3),
   * else the anomaly map's maximum. The verdict is on this score.
   */
  imageScore: number;
  /** The raw anomaly map's maximum (Mahalanobis distance; what the pixel threshold cuts). Absent in runs of partscan ≤ 0.1. */
  mapMax?: number;
  /** The raw anomaly map's minimum (what a reviewed part brings to the pixel normalisation span; docs/REVIEW.md). Absent in older runs. */
  mapMin?: number;
  /** Normalised image score, 0..1 (0.5 = threshold). */
  normalizedScore: number;
  /** The decision. */
  verdict: Verdict;
  /** Defect regions, highest peak first. */
  regions: Region[];
  /** Input-drift check: whether the image looks unlike the training images, and how much. */
  drift?: {
    /** True when the image is flagged as unlike the training images. */
    flag: boolean;
    /** Drift score (larger = more unlike). */
    score: number;
    /** Per-feature robust z, in the drift model's feature order (for line monitoring of the run). */
    z?: number[];
  };
  /** Original image width. */
  width: number;
  /** Original image height. */
  height: number;
  /** Exported files, relative to the run directory. */
  outputs?: {
    /** Heatmap overlay on the original (PNG). */
    overlay?: string;
    /** Raw normalised heatmap (16-bit PNG or float safetensors). */
    heatmap?: string;
    /** Binary defect mask (PNG). */
    mask?: string;
    /** Copy of the original image for the report (PNG/JPEG). */
    original?: string;
  };
  /** Non-fatal findings about this image. */
  warnings?: string[];
  /** Ground-truth label, when known (evaluation runs). */
  label?: string;
}

/** The contents of `results.json`. */
export interface RunManifest {
  /** Always 'partscan' (lets tools recognise the file). */
  createdBy: 'partscan';
  /** partscan version that wrote the run. */
  version: string;
  /** ISO 8601 time the run was written. */
  createdAt?: string;
  /** The model used. */
  model: {
    /** Model file path. */
    path: string;
    /** Its calibrated thresholds. */
    thresholds: Thresholds;
    /** Backbone name, for display. */
    backbone?: string;
    /**
     * The model's scoring identity (model/model-identity.ts): what a QA review of this run is checked
     * against. Absent in runs of older versions.
     */
    sha256?: string;
  };
  /** One entry per scored image. */
  results: ImageResult[];
  /** Run-level warnings. */
  warnings?: string[];
}

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const rangeSchema = z.object({ min: finite, max: finite });
const methodSchema = z.enum(THRESHOLD_METHODS);

const box = z.strictObject({ x: finite, y: finite, width: finite, height: finite });
const point = z.strictObject({ x: finite, y: finite });

/** A defect region as results.json and `--json` outputs write it (see Region). */
const regionSchema = z.strictObject({
  id: z.number().int().positive(),
  areaPx: z.number().int().nonnegative().describe('source-image pixels the region covers'),
  areaPercent: finite.describe('share of the image, 0..100'),
  bbox: box.describe('bounding box in source-image pixels'),
  centroid: point.describe('mean position in source-image pixels (first pixel centre = 0,0)'),
  mapBbox: box.describe('bounding box on the anomaly map (model resolution)'),
  mapCentroid: point.describe('mean position on the anomaly map'),
  mapAreaPx: z.number().int().nonnegative().describe('anomaly-map pixels (what --min-area compares with)'),
  peakScore: finite.describe('highest normalised score inside'),
  meanScore: finite.describe('mean normalised score inside'),
});

/** Regions of runs written before partscan 0.2 lack the map fields: readers accept them. */
const readRegionSchema = regionSchema.partial({ mapBbox: true, mapCentroid: true, mapAreaPx: true });

/** A model's thresholds as results.json records them (fields added later are kept). */
export const thresholdsSchema = z.looseObject({
  image: finite.describe('raw image-score threshold (normalised: 0.5)'),
  pixel: finite.describe('raw pixel-score threshold'),
  method: z.looseObject({ image: methodSchema, pixel: methodSchema }),
  imageStats: rangeSchema,
  pixelStats: rangeSchema,
  band: z.strictObject({ low: finite, high: finite }).optional(),
  operatingPoint: z
    .looseObject({
      falseRejectTarget: finite,
      goodScores: z.looseObject({ used: z.number().int(), excluded: z.number().int() }),
      image: z.looseObject({ rate: finite, upper95: finite }),
      pixel: z.looseObject({ rate: finite, upper95: finite }),
    })
    .optional()
    .describe('what the thresholds promise (model format ≥ 1.3)'),
});

// Schema of an ImageResult: finite numbers only (JSON would turn NaN into null).
const imageResultShape = {
  file: z.string().min(1).describe("the input path, or '<buffer>', '<frame>', '<tensor>'"),
  imageScore: finite.describe('raw image score (what the threshold applies to)'),
  mapMax: finite.optional().describe('the anomaly map maximum, when the image score is another statistic'),
  normalizedScore: finite.describe('normalised image score, 0..1, threshold at 0.5 (docs: normalisation)'),
  mapMin: finite.optional().describe("the raw anomaly map's minimum (a reviewed part's contribution to the pixel normalisation span)"),
  verdict: z.enum(['OK', 'NG', 'UNCERTAIN']),
  regions: z.array(regionSchema).describe('defect regions, highest peak first'),
  drift: z.strictObject({ flag: z.boolean(), score: finite, z: z.array(finite).optional() }).optional(),
  width: z.number().int().positive().describe('source image width'),
  height: z.number().int().positive().describe('source image height'),
  outputs: z
    .strictObject({
      overlay: z.string().optional(),
      heatmap: z.string().optional(),
      mask: z.string().optional(),
      original: z.string().optional(),
    })
    .optional()
    .describe('exported files, relative to the run directory'),
  warnings: z.array(z.string()).optional(),
  label: z.string().optional().describe('ground-truth label (evaluation runs)'),
};

/** One image's entry in results.json (and in `score --json`). */
export const imageResultSchema = z.strictObject(imageResultShape);

const readImageResultSchema = z.object({ ...imageResultShape, regions: z.array(readRegionSchema), drift: imageResultShape.drift, outputs: imageResultShape.outputs });

const manifestShape = {
  createdBy: z.literal('partscan'),
  version: z.string(),
  createdAt: z.string().optional(),
  model: z.strictObject({
    path: z.string(),
    thresholds: thresholdsSchema,
    backbone: z.string().optional(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 in lowercase hex').optional(),
  }),
  warnings: z.array(z.string()).optional(),
};

/** What readers of results.json check: the fields they use; extra fields (from newer versions) are kept. */
const runManifestSchema = z.object({ ...manifestShape, results: z.array(readImageResultSchema) });

/** An input that could not be scored, as results.json and `--json` list it. */
export const failureSchema = z.strictObject({ file: z.string(), code: z.string(), message: z.string() });

/** The line monitor's result (issue-specific fields beyond these are kept: see docs/MONITORING.md). */
export const runMonitorSchema = z.looseObject({
  alarm: z.boolean(),
  firstAlarmAt: z.number().int().nullable(),
  reasons: z.array(z.string()),
});

/** results.json as partscan writes it (docs/schemas/results.schema.json). */
export const resultsJsonSchema = z.strictObject({
  ...manifestShape,
  results: z.array(imageResultSchema),
  failures: z.array(failureSchema).describe('inputs that could not be scored'),
  uncalibrated: z.literal(true).optional().describe('the model had no thresholds: verdicts UNCERTAIN, scores run-relative'),
  monitor: runMonitorSchema.optional(),
});

function issues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}

function checkManifest(manifest: RunManifest, file: string): RunManifest {
  const parsed = runManifestSchema.safeParse(manifest);
  if (!parsed.success) {
    throw new PartscanError('OUTPUT', `Refusing to write an invalid ${RESULTS_JSON} (${issues(parsed.error)}).`, {
      file,
      remedy: 'this is a bug in the caller: results must hold finite scores and known verdicts',
    });
  }
  // Validated but written as given: fields added by newer code are kept, not stripped by the schema.
  return manifest;
}

/**
 * Quotes a CSV field per RFC 4180 (enclosed in double quotes when it holds a comma, quote, CR or LF;
 * quotes doubled). Text that a spreadsheet would run as a formula (leading `=`, `+`, `-`, `@`, tab,
 * CR) gets a leading apostrophe, the OWASP-recommended defence against CSV injection through crafted
 * file names; results.json keeps the exact text.
 */
export function csvField(value: string, text = true): string {
  let v = value;
  if (text && /^[=+\-@\t\r]/.test(v)) v = `'${v}`;
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** CSV header row of {@link resultsToCsv}. */
export const CSV_COLUMNS = [
  'file',
  'score',
  'normalized_score',
  'verdict',
  'n_regions',
  'regions',
  'drift',
  'drift_score',
  'label',
  'map_max',
] as const;

/**
 * The CSV summary: one row per image, CRLF line ends (RFC 4180), columns {@link CSV_COLUMNS}.
 * `regions` lists bounding boxes as `x,y,w,h` joined by `;`, highest peak first (quoted, since it
 * holds commas); `drift` is `true`/`false`, empty when not checked.
 */
export function resultsToCsv(results: readonly ImageResult[]): string {
  const rows = [CSV_COLUMNS.join(',')];
  for (const r of results) {
    const boxes = r.regions.map((g) => `${g.bbox.x},${g.bbox.y},${g.bbox.width},${g.bbox.height}`).join(';');
    rows.push(
      [
        csvField(r.file),
        String(r.imageScore),
        String(r.normalizedScore),
        r.verdict,
        String(r.regions.length),
        csvField(boxes, false),
        r.drift ? String(r.drift.flag) : '',
        r.drift ? String(r.drift.score) : '',
        csvField(r.label ?? ''),
        r.mapMax !== undefined ? String(r.mapMax) : '',
      ].join(','),
    );
  }
  return rows.join('\r\n') + '\r\n';
}

/** Writes `runDir/results.json` atomically (validated first); returns its path. */
export async function writeResultsJson(runDir: string, manifest: RunManifest): Promise<string> {
  const file = path.join(runDir, RESULTS_JSON);
  const valid = checkManifest(manifest, file);
  await ensureOutputDir(runDir);
  await writeFileAtomic(file, JSON.stringify(valid, null, 2) + '\n');
  return file;
}

/** Writes `runDir/results.csv` atomically; returns its path. */
export async function writeResultsCsv(runDir: string, results: readonly ImageResult[]): Promise<string> {
  const file = path.join(runDir, RESULTS_CSV);
  await ensureOutputDir(runDir);
  await writeFileAtomic(file, resultsToCsv(results));
  return file;
}

/** Paths written by {@link writeRunResults}. */
export interface RunResultFiles {
  /** Path of results.json. */
  json: string;
  /** Path of results.csv. */
  csv: string;
}

/**
 * Writes both result files: the CSV first and `results.json` last, so the manifest — what the report
 * and other tools look for — only appears once everything it describes is complete. Each write is
 * atomic; on failure nothing partial remains (an earlier, complete CSV may).
 */
export async function writeRunResults(runDir: string, manifest: RunManifest): Promise<RunResultFiles> {
  const valid = checkManifest(manifest, path.join(runDir, RESULTS_JSON));
  const csv = await writeResultsCsv(runDir, valid.results);
  const json = await writeResultsJson(runDir, valid);
  return { json, csv };
}

/**
 * Reads and validates a run manifest from a run directory (or a results.json path). Throws
 * 'OPTIONS' when it is missing or not a partscan manifest.
 */
export async function readRunManifest(runDirOrFile: string): Promise<RunManifest> {
  const file = runDirOrFile.endsWith('.json') ? runDirOrFile : path.join(runDirOrFile, RESULTS_JSON);
  let text: string;
  try {
    text = (await readRegularFile(file, (kind) => new Error(`it is ${kind}`))).toString('utf8');
  } catch (e) {
    throw new PartscanError('OPTIONS', `Cannot read the run manifest ${file}${e instanceof Error && !('code' in e) ? ` (${e.message})` : ''}.`, {
      file,
      remedy: 'point to a run directory written by `partscan score` (it holds results.json)',
      cause: e,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PartscanError('OPTIONS', `${file} is not valid JSON.`, { file, remedy: 're-run the scoring', cause: e });
  }
  const parsed = runManifestSchema.safeParse(json);
  if (!parsed.success) {
    throw new PartscanError('OPTIONS', `${file} is not a partscan run manifest (${issues(parsed.error)}).`, {
      file,
      remedy: 'point to a results.json written by partscan',
    });
  }
  // Unknown extra fields (from newer partscan versions) are kept.
  return json as RunManifest;
}
