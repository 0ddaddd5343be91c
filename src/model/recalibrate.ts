/**
 * `calibrate`: moves a fitted model's operating point without refitting — a new false-reject target or
 * review band, new good images, labelled defects — from the out-of-sample scores the model stores (its
 * calibration pool) plus any new images scored now. Only the thresholds and the pool change: the
 * Gaussians, the standardisation and therefore every score stay as they were.
 */

import { PartscanError, type PartscanWarning } from '../errors.js';
import { sha256File } from '../backbone/weights-cache.js';
import { loadDataset } from '../data/loaders.js';
import { parseOptions } from '../options/parse.js';
import { calibrateOptionsSchema } from '../options/schemas.js';
import { checkThresholdOptions, selectThresholds, type ThresholdRule } from '../postprocess/operating-point.js';
import type { Thresholds } from '../postprocess/thresholds.js';
import type { Sample } from '../types.js';
import { throwIfAborted } from '../util/abort.js';
import { CalibrationPool, poolRow, type KeyedRow } from './calibration-pool.js';
import { reviewRows } from './review-join.js';
import { trainingImages } from './fit.js';
import type { ReviewJoinSummary } from './types.js';
import type { ReviewFile } from '../review/review-file.js';
import type { ImageSource, Model, ProgressEvent } from './model.js';

/** Options of {@link calibrate}. */
export interface CalibrateOptions {
  /** The false-reject rate to set the image threshold at, in (0, 1) (default: the model's current target, else 0.01). */
  falseRejectTarget?: number;
  /** A higher false-reject rate whose threshold starts the UNCERTAIN band (default: the model's current band). */
  reviewBand?: number;
  /** The threshold rule (default 'false-reject'; 'f1' needs labelled defects). */
  thresholdRule?: ThresholdRule;
  /**
   * Labelled defective images to add: an MVTec-style root or labelled CSV list (its defective test
   * images), a folder or list of files that all show defects, or samples.
   */
  defects?: ImageSource;
  /** New good images to add (a folder, a list, or a dataset root's good training images). */
  good?: ImageSource;
  /**
   * A QA review of a run this model scored (a `review.json` path or a parsed review; docs/REVIEW.md):
   * its reviewed parts join the pool as good or defective, with the scores the run recorded. A review
   * of another model is a 'REVIEW' error.
   */
  review?: string | ReviewFile;
  /** Folders the reviewed images must lie in (default: the working directory). */
  imageRoots?: string[];
  /** Images per scoring batch (default: the model's). */
  batchSize?: number;
  /** Cancels the scoring of new images; the model is left unchanged. */
  signal?: AbortSignal;
  /** Progress while new images are scored. */
  onProgress?: (e: ProgressEvent) => void;
}

/** What {@link calibrate} did. */
export interface CalibrationResult {
  /** The new thresholds (also set on the model). */
  thresholds: Thresholds;
  /** The thresholds before. */
  previous: Thresholds | undefined;
  /** Images scored and added to the pool now (`good` and `defects`; reviewed parts are counted in `review`). */
  added: { good: number; defect: number };
  /** What the review brought, when one was given. */
  review?: ReviewJoinSummary;
  /** Caveats about the new operating point. */
  warnings: PartscanWarning[];
}

/** The files of a defect source: a dataset's defective test images, or every file given. */
async function defectFiles(source: ImageSource): Promise<string[]> {
  if (typeof source === 'string') {
    const ds = await loadDataset(source);
    const labelled = ds.test.filter((s) => s.anomalous);
    return (labelled.length ? labelled : ds.train).map((s) => s.path);
  }
  if (Array.isArray(source)) return source.map((s) => (typeof s === 'string' ? s : (s as Sample).path));
  return source.test.filter((s) => s.anomalous).map((s) => s.path);
}

/** Scores files with the model into pool rows [image score, map max, map min]. */
async function scoreRows(model: Model, files: string[], opts: CalibrateOptions, done: { n: number; total: number }): Promise<number[][]> {
  const out: number[][] = [];
  const bs = opts.batchSize ?? model.defaultScoreBatchSize;
  for (let i = 0; i < files.length; i += bs) {
    throwIfAborted(opts.signal, 'The calibration');
    for (const r of await model.score(files.slice(i, i + bs), { batchSize: bs, ...(opts.signal ? { signal: opts.signal } : {}) })) out.push(poolRow(r));
    done.n += Math.min(bs, files.length - i);
    opts.onProgress?.({ stage: 'calibrate', done: done.n, total: done.total });
  }
  return out;
}

/** Scores files into pool rows keyed by the sha256 of their bytes. */
async function scoreKeyed(model: Model, files: string[], opts: CalibrateOptions, done: { n: number; total: number }): Promise<KeyedRow[]> {
  const [rows, keys] = await Promise.all([scoreRows(model, files, opts, done), Promise.all(files.map((f) => sha256File(f)))]);
  return rows.map((row, i) => ({ row, key: keys[i]! }));
}

/**
 * Re-picks a fitted model's thresholds (see the module comment) and sets them, with the extended
 * calibration pool, on `model`; save the model to keep them. Throws 'OPTIONS' for invalid options
 * (before any image is read), 'THRESHOLD' for a model that stores no calibration scores (fitted by
 * partscan ≤ 0.1 or on fewer than 3 images: fit it again), 'REVIEW' for a malformed review, a review of
 * another model, or one naming files outside `imageRoots` or missing, 'CANCELLED' when `signal` aborts.
 *
 * @example
 * const model = await Model.load('bottle.partscan');
 * const r = await calibrate(model, { falseRejectTarget: 0.005, defects: 'bottle-defects/' });
 * console.log(r.thresholds.operatingPoint?.escape);
 * await model.save('bottle-0.5pct.partscan');
 *
 * // QA labelled parts of a run this model scored, in the run's report:
 * await calibrate(model, { review: 'review.json', imageRoots: ['/data/line3'] });
 */
export async function calibrate(model: Model, opts: CalibrateOptions = {}): Promise<CalibrationResult> {
  parseOptions(calibrateOptionsSchema, opts, 'calibrate');
  const previousOp = model.header.thresholds?.operatingPoint;
  const target = opts.falseRejectTarget ?? previousOp?.falseRejectTarget;
  const reviewBand = opts.reviewBand ?? (opts.falseRejectTarget === undefined ? previousOp?.reviewBand?.falseRejectRate : undefined);
  const thresholdOptions = {
    ...(opts.thresholdRule ? { rule: opts.thresholdRule } : {}),
    ...(target !== undefined ? { falseRejectTarget: target } : {}),
    ...(reviewBand !== undefined ? { reviewBand } : {}),
  };
  const stored = await model.calibrationScores();
  checkThresholdOptions(thresholdOptions, opts.defects !== undefined || opts.review !== undefined || (stored?.defect.rows ?? 0) > 0, 'calibrate');
  if (!stored) {
    throw new PartscanError('THRESHOLD', `${model.modelFile ?? 'This model'} stores no out-of-sample calibration scores (it was fitted by partscan ≤ 0.1, or on fewer than 3 good images), so its operating point cannot be moved.`, {
      ...(model.modelFile ? { file: model.modelFile } : {}),
      remedy: 'fit the model again with this partscan version (partscan fit), then calibrate it',
    });
  }
  const good = opts.good ? await trainingImages(opts.good) : [];
  const defects = opts.defects ? await defectFiles(opts.defects) : [];
  if (opts.good && good.length === 0) throw new PartscanError('DATASET', 'calibrate: the good images given hold no image.', { remedy: 'point --good at a folder of good images' });
  if (opts.defects && defects.length === 0) throw new PartscanError('DATASET', 'calibrate: the defects given hold no defective image.', { remedy: 'point --defects at an MVTec-style root, a labelled CSV, or a folder of defective images' });
  const done = { n: 0, total: good.length + defects.length };
  const goodRows = await scoreKeyed(model, good, opts, done);
  const defectRows = await scoreKeyed(model, defects, opts, done);
  const review = opts.review
    ? await reviewRows(model, stored, { review: opts.review, ...(opts.imageRoots ? { imageRoots: opts.imageRoots } : {}), ...(opts.signal ? { signal: opts.signal } : {}) }, (files) => {
        done.total += files.length;
        return scoreRows(model, files, opts, done);
      })
    : undefined;
  throwIfAborted(opts.signal, 'The calibration');
  // A review's label wins over the same image given as --good or --defects.
  const reviewed = new Set([...(review?.good ?? []), ...(review?.defect ?? [])].map((r) => r.key));
  const unreviewed = (r: KeyedRow): boolean => !reviewed.has(r.key);
  const pool = CalibrationPool.merge(stored, { good: [...goodRows.filter(unreviewed), ...(review?.good ?? [])], defect: [...defectRows.filter(unreviewed), ...(review?.defect ?? [])], excluded: 0 });
  const sel = selectThresholds(pool.scores(), thresholdOptions);
  const previous = model.header.thresholds;
  model.setThresholds(sel.thresholds);
  model.setCalibrationScores(pool);
  return {
    thresholds: sel.thresholds,
    previous,
    added: { good: goodRows.length, defect: defectRows.length },
    ...(review ? { review: review.summary } : {}),
    warnings: [...(review?.warnings ?? []), ...sel.warnings],
  };
}
