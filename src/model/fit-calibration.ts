/**
 * What a fit does after the Gaussians exist, as named stages: out-of-sample scores of every training
 * image (leave-one-out), the contamination check on them, the per-position standardisation of the image
 * score, the held-out and labelled images, and the thresholds at the stated false-reject rate
 * (operating-point.ts). The model keeps the out-of-sample good scores (its calibration pool) so that
 * `partscan calibrate` can move the operating point later without refitting.
 */

import type { PartscanWarning } from '../errors.js';
import { scoreOutliers } from '../guards/robust-stats.js';
import { selectThresholds, type CalibrationScores, type ThresholdRule } from '../postprocess/operating-point.js';
import { fitStandardization, MIN_STANDARDIZE_IMAGES, standardizeDistances } from '../postprocess/standardize.js';
import { MIN_TAIL_SCORES } from '../postprocess/tail-model.js';
import { BlurredMaxSession } from '../postprocess/upsample-blur-graph.js';
import { defaultThreads } from '../onnx/session.js';
import type { Thresholds } from '../postprocess/thresholds.js';
import type { Sample } from '../types.js';
import { CalibrationPool, poolRow, type CalibrationSource, type KeyedRow } from './calibration-pool.js';
import { sha256File } from '../backbone/weights-cache.js';
import { contaminationSuspects, outOfSampleByBackbone, outOfSampleFromEmbeddings, perImageMax, perImageMin, type OutOfSampleGrids } from './out-of-sample.js';
import type { FitReport, Model, ProgressEvent } from './model.js';

/** The image-score definitions a fit can store (see postprocess/standardize.ts). */
export type ImageScoreKind = 'standardized' | 'max';

/** Fewest training images the contamination check judges (fewer give no meaningful robust spread). */
export const CONTAMINATION_MIN_IMAGES = 8;

/** What the calibration stages need from the fit. */
export interface FitCalibrationInput {
  /** The images the Gaussians were fitted on (this fit's new images when resuming), in fit order. */
  fitFiles: string[];
  /** sha256 of image files' bytes already known (the guards hash every training image), by file. */
  fileHashes?: ReadonlyMap<string, string>;
  /** Their embeddings [P, n, d], when the fit kept them (no second backbone pass). */
  embeddings?: Float32Array;
  /** Good images held out from the fit (`calibration`, `calibrationSplit`). */
  heldOut: string[];
  /** Labelled defective images. */
  defects: Sample[];
  /** The model resumed from, whose calibration pool and operating point carry over. */
  resumed?: Model;
  /**
   * What a QA review brings (fit --resume --review, model/review-join.ts): rows of the resumed pool
   * relabelled by the review, merged first, and the keys of every reviewed image, so that the rows this
   * fit adds for them (reviewed-good images fitted, reviewed defects scored) are flagged as reviewed.
   */
  review?: { relabelled: { good: KeyedRow[]; defect: KeyedRow[] }; keys: ReadonlySet<string> };
  /** The fit's options that concern calibration. */
  options: {
    contaminationCheck?: boolean;
    imageScore?: ImageScoreKind;
    thresholdRule?: ThresholdRule;
    falseRejectTarget?: number;
    reviewBand?: number;
    manualThresholds?: { image?: number; pixel?: number };
    band?: { low: number; high: number };
    threads?: number;
    onProgress?: (e: ProgressEvent) => void;
    /** Cancels the fit: checked between batches of every stage. */
    signal?: AbortSignal;
  };
}

/** Per-image out-of-sample scores of the training images. */
interface TrainingScores {
  imageScores: Float32Array;
  mapMax: Float32Array;
  mapMin: Float32Array;
  /** Contamination suspects (left out of the thresholds). */
  suspect: boolean[];
  maps?: Float32Array[];
}

/**
 * Runs the calibration stages on a freshly fitted model: sets its standardisation, thresholds and
 * calibration pool, appends warnings and the contamination suspects to `report`. Returns the
 * out-of-sample good image scores (for line monitoring's reference) split by source.
 */
export async function calibrateFit(model: Model, input: FitCalibrationInput, warnings: PartscanWarning[], report: FitReport): Promise<{ looScores: number[]; heldOutScores: number[] }> {
  const training = await trainingScores(model, input, warnings, report);
  const heldOut = await heldOutScores(model, input, training, warnings);
  const defect = await defectScores(model, input);
  const hashes = new FileHashes(input.fileHashes, input.review?.keys);
  const pool = CalibrationPool.merge(await resumedPool(input), {
    good: await hashes.keyed(kept(input.fitFiles, training, heldOut)),
    defect: defect ? await hashes.keyed(defect.rows.map((row, i) => ({ row, file: input.defects[i]!.path }))) : undefined,
    excluded: count(training?.suspect, true) + heldOut.excluded,
  });
  const thresholds = chooseThresholds(pool, input, training, defect, warnings);
  model.setThresholds(thresholds);
  if (pool.good.rows > 0) model.setCalibrationScores(pool);
  return {
    looScores: training ? Array.from(training.imageScores).filter((_, i) => !training.suspect[i]) : [],
    heldOutScores: heldOut.kept.map((r) => r.row[0]!),
  };
}

/** The resumed model's pool, with the rows a review relabelled (none for a new model). */
async function resumedPool(input: FitCalibrationInput): Promise<CalibrationPool | undefined> {
  const pool = input.resumed ? await input.resumed.calibrationScores() : undefined;
  const r = input.review?.relabelled;
  return pool && r && r.good.length + r.defect.length > 0 ? CalibrationPool.merge(pool, { ...r, excluded: 0 }) : pool;
}

function count(flags: boolean[] | undefined, value: boolean): number {
  return flags ? flags.filter((f) => f === value).length : 0;
}

/**
 * Whether the pixel threshold is F1-adaptive on full maps: the F1 rule, with a ground-truth mask for
 * every labelled defect. Only then are the training images' and the defects' maps kept.
 */
function pixelF1OnMaps(input: FitCalibrationInput): boolean {
  return input.options.thresholdRule === 'f1' && input.defects.length > 0 && input.defects.every((d) => d.maskPath);
}

/** Out-of-sample grids of the training images: from the kept embeddings, else by a second backbone pass. */
async function outOfSample(model: Model, input: FitCalibrationInput, keepMaps: boolean): Promise<OutOfSampleGrids> {
  const { embeddings, fitFiles } = input;
  const signal = input.options.signal ? { signal: input.options.signal } : {};
  if (embeddings && !model.header.tiling) return outOfSampleFromEmbeddings(model, embeddings, fitFiles.length, { keepMaps, ...signal });
  return outOfSampleByBackbone(model, fitFiles, { keepMaps, ...signal });
}

/**
 * Stage 1–3: leave-one-out scores of the training images, the contamination check, and (for a new
 * model) the per-position standardisation of the image score. Undefined when the model was fitted on
 * fewer than 3 images (no leave-one-out).
 */
async function trainingScores(model: Model, input: FitCalibrationInput, warnings: PartscanWarning[], report: FitReport): Promise<TrainingScores | undefined> {
  const n = input.fitFiles.length;
  if (n === 0 || model.header.gaussian.images < 3) return undefined;
  const keepMaps = pixelF1OnMaps(input);
  const grids = await outOfSample(model, input, keepMaps);
  const mapMax = perImageMax(grids.mapMax, grids.owner, grids.images);
  const mapMin = perImageMin(grids.mapMin, grids.owner, grids.images);
  const suspect = new Array<boolean>(n).fill(false);
  if (input.options.contaminationCheck !== false && n >= CONTAMINATION_MIN_IMAGES) {
    report.suspects = contaminationSuspects(input.fitFiles, mapMax);
    const byFile = new Set(report.suspects.map((s) => s.file));
    input.fitFiles.forEach((f, i) => (suspect[i] = byFile.has(f)));
    for (const s of report.suspects) {
      warnings.push({
        code: 'CONTAMINATED_TRAINING_IMAGE',
        message: `${s.file} scores as an outlier among the training images (score ${s.score.toFixed(2)}, robust z ${s.z.toFixed(1)}): it may show a defect. Inspect it and remove it from the good set if so, then re-fit.`,
        file: s.file,
      });
    }
  }
  const imageScores = await imageScoresOf(model, input, grids, suspect, mapMax, warnings);
  return { imageScores, mapMax, mapMin, suspect, ...(grids.maps ? { maps: grids.maps } : {}) };
}

/**
 * The training images' out-of-sample image scores in the model's definition. A new model with the
 * standardised score fits the standardisation here (leave-one-out standardised scores); a resumed model
 * keeps its standardisation and its new images are standardised by it.
 */
async function imageScoresOf(model: Model, input: FitCalibrationInput, grids: OutOfSampleGrids, suspect: boolean[], mapMax: Float32Array, warnings: PartscanWarning[]): Promise<Float32Array> {
  const kind = input.resumed ? (input.resumed.standardization ? 'standardized' : 'max') : (input.options.imageScore ?? 'standardized');
  if (kind === 'max') return mapMax; // the header already says 'max'
  const keepRow = (r: number): boolean => !suspect[grids.owner[r]!];
  let z: Float32Array;
  if (input.resumed) {
    z = standardizeDistances(grids.dist, grids.rows, model.standardization!);
  } else {
    let keptRows = 0;
    for (let r = 0; r < grids.rows; r++) if (keepRow(r)) keptRows++;
    if (keptRows < MIN_STANDARDIZE_IMAGES) {
      warnings.push({
        code: 'IMAGE_SCORE_MAX',
        message: `Too few good training images (${keptRows}) to fit the per-position standardisation: the image score is the anomaly map's maximum. Fit on ${MIN_STANDARDIZE_IMAGES} or more good images.`,
      });
      return mapMax;
    }
    const fitted = fitStandardization(grids.dist, grids.rows, grids.P, keepRow);
    await model.setStandardization(fitted.standardization);
    z = fitted.standardized;
  }
  const { gridW, gridH } = model.header.embedding;
  const session = await BlurredMaxSession.create(gridW, gridH, model.size, model.header.postprocess.blurSigma, input.options.threads ?? defaultThreads());
  try {
    const rowScores = new Float32Array(grids.rows);
    for (let r0 = 0; r0 < grids.rows; r0 += 64) {
      const c = Math.min(64, grids.rows - r0);
      rowScores.set(await session.run(z.subarray(r0 * grids.P, (r0 + c) * grids.P), c), r0);
    }
    return perImageMax(rowScores, grids.owner, grids.images);
  } finally {
    await session.dispose();
  }
}

/** A scored image before its key is known. */
interface FileRow {
  row: number[];
  file: string;
  source?: CalibrationSource;
}

/** Rows [image score, map max, map min] of the training images that are no contamination suspects, then the held-out ones kept. */
function kept(fitFiles: readonly string[], training: TrainingScores | undefined, heldOut: { kept: { row: number[]; file: string }[] }): FileRow[] {
  const rows: FileRow[] = [];
  if (training) {
    for (let i = 0; i < training.imageScores.length; i++) {
      if (!training.suspect[i]) rows.push({ row: [training.imageScores[i]!, training.mapMax[i]!, training.mapMin[i]!], file: fitFiles[i]!, source: 'leaveOneOut' });
    }
  }
  return [...rows, ...heldOut.kept.map((r) => ({ ...r, source: 'heldOut' as const }))];
}

/** sha256 of image files' bytes (the pool's row keys), from the fit's guards where they hashed them already. */
class FileHashes {
  constructor(
    private readonly known: ReadonlyMap<string, string> | undefined,
    /** Keys of images labelled by QA review: their rows are flagged as reviewed. */
    private readonly reviewed: ReadonlySet<string> | undefined,
  ) {}

  async keyed(rows: readonly FileRow[]): Promise<KeyedRow[]> {
    const out: KeyedRow[] = [];
    for (let i = 0; i < rows.length; i += 16) {
      const part = rows.slice(i, i + 16);
      const keys = await Promise.all(part.map((r) => this.known?.get(r.file) ?? sha256File(r.file)));
      part.forEach((r, k) => {
        const key = keys[k]!;
        out.push({ row: r.row, key, ...(r.source ? { source: r.source } : {}), ...(this.reviewed?.has(key) ? { reviewed: true } : {}) });
      });
    }
    return out;
  }
}

/** Scores images with the fitted model, in batches of 8, reporting 'calibrate' progress. */
async function scoreRows(model: Model, files: string[], options: FitCalibrationInput['options'], keepMaps = false): Promise<{ rows: number[][]; maps: Float32Array[] }> {
  const { onProgress, signal } = options;
  const rows: number[][] = [];
  const maps: Float32Array[] = [];
  for (let i = 0; i < files.length; i += 8) {
    for (const r of await model.score(files.slice(i, i + 8), signal ? { signal } : {})) {
      rows.push(poolRow(r));
      if (keepMaps) maps.push(r.anomalyMap);
    }
    onProgress?.({ stage: 'calibrate', done: Math.min(files.length, i + 8), total: files.length });
  }
  return { rows, maps };
}

/**
 * Stage 4: held-out good images, scored by the fitted model (they are out of sample as they are). One
 * that scores like a defect — a robust outlier pooled with the training images' leave-one-out scores —
 * is left out and named.
 */
async function heldOutScores(model: Model, input: FitCalibrationInput, training: TrainingScores | undefined, warnings: PartscanWarning[]): Promise<{ kept: { row: number[]; file: string }[]; excluded: number }> {
  const files = input.heldOut;
  if (files.length === 0) return { kept: [], excluded: 0 };
  const { rows } = await scoreRows(model, files, input.options);
  const all = rows.map((row, i) => ({ row, file: files[i]! }));
  const loo = training ? Array.from(training.mapMax).filter((_, i) => !training.suspect[i]) : [];
  const pool = [...loo, ...rows.map((r) => r[1]!)];
  if (pool.length < 5) return { kept: all, excluded: 0 };
  const { z, outlier } = scoreOutliers(pool);
  const out = outlier.slice(loo.length);
  if (!out.some(Boolean) || out.filter((o) => !o).length < 3) return { kept: all, excluded: 0 };
  files.forEach((f, i) => {
    if (out[i]) {
      warnings.push({
        code: 'CALIBRATION_OUTLIER',
        message: `Calibration image ${f} scores like a defect (score ${rows[i]![1]!.toFixed(2)}, robust z ${z[loo.length + i]!.toFixed(1)}) and was left out of the thresholds: inspect it and remove it from the good images if it shows a defect.`,
        file: f,
      });
    }
  });
  return { kept: all.filter((_, i) => !out[i]), excluded: out.filter(Boolean).length };
}

/** Stage 5: labelled defects, scored by the fitted model (with maps and masks for an F1 pixel threshold). */
async function defectScores(model: Model, input: FitCalibrationInput): Promise<{ rows: number[][]; maps?: Float32Array[]; masks?: Uint8Array[] } | undefined> {
  const defects = input.defects;
  if (defects.length === 0) return undefined;
  const withMasks = pixelF1OnMaps(input);
  const { rows, maps } = await scoreRows(model, defects.map((s) => s.path), input.options, withMasks);
  if (!withMasks) return { rows };
  const { loadMask } = await import('../preprocess/preprocess.js');
  const masks = await Promise.all(defects.map((s) => loadMask(s.maskPath!, model.size, model.size)));
  return { rows, maps, masks };
}

/** Stage 6: the thresholds from the pool, by the rule; none (with a warning) without good scores. */
function chooseThresholds(
  pool: CalibrationPool,
  input: FitCalibrationInput,
  training: TrainingScores | undefined,
  defect: { rows: number[][]; maps?: Float32Array[]; masks?: Uint8Array[] } | undefined,
  warnings: PartscanWarning[],
): Thresholds | undefined {
  const o = input.options;
  const manual = o.manualThresholds;
  if (pool.good.rows < MIN_TAIL_SCORES && manual?.image !== undefined && manual.pixel !== undefined) {
    // Manual thresholds need no scores; without any, the normalisation is a step at each threshold.
    return {
      image: manual.image,
      pixel: manual.pixel,
      method: { image: 'manual', pixel: 'manual' },
      imageStats: { min: manual.image, max: manual.image },
      pixelStats: { min: manual.pixel, max: manual.pixel },
      ...(o.band ? { band: { ...o.band } } : {}),
    };
  }
  if (pool.good.rows < MIN_TAIL_SCORES) {
    warnings.push({
      code: 'NO_CALIBRATION',
      message: `Only ${pool.good.rows} out-of-sample score(s) of good images (at least ${MIN_TAIL_SCORES} needed): the model has no thresholds, so no verdicts. Fit on more good images or pass --calibration <dir>.`,
    });
    return undefined;
  }
  const previous = input.resumed?.header.thresholds?.operatingPoint;
  const cal: CalibrationScores = pool.scores();
  if (training?.maps && defect?.maps && defect.masks) {
    cal.good.pixelMaps = training.maps;
    cal.defect = { ...cal.defect!, pixelMaps: defect.maps, masks: defect.masks };
  }
  const target = o.falseRejectTarget ?? previous?.falseRejectTarget;
  const reviewBand = o.reviewBand ?? previous?.reviewBand?.falseRejectRate;
  const sel = selectThresholds(cal, {
    ...(o.thresholdRule ? { rule: o.thresholdRule } : {}),
    ...(target !== undefined ? { falseRejectTarget: target } : {}),
    ...(reviewBand !== undefined && !o.band ? { reviewBand } : {}),
    ...(o.manualThresholds ? { manual: o.manualThresholds } : {}),
    ...(o.band ? { band: o.band } : {}),
  });
  warnings.push(...sel.warnings);
  return sel.thresholds;
}
