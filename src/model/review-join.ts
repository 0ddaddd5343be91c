/**
 * How a QA review joins a model (docs/REVIEW.md): the stages shared by `calibrate --review` and
 * `fit --resume --review`.
 *
 * 1. Open: read and validate the review (review/review-file.ts); it must be of this model — its
 *    `model.sha256` equal to the model's scoring identity (model-identity.ts) — or say it does not know
 *    (null: every part is scored again); resolve and hash its files inside the allowed roots
 *    (review/review-images.ts).
 * 2. Place each reviewed part, by the sha256 of its bytes, against the model's calibration pool:
 *    - a part the pool already holds keeps its out-of-sample row (a training image's leave-one-out
 *      score, not the in-sample score a run gives it), moved to the reviewed class and flagged;
 *    - a new part takes the scores the run recorded (the run was scored by this very model), or is
 *      scored now when the review carries none;
 *    - for `fit --resume`, reviewed-good parts not yet in the Gaussians are fitted (the fit scores them
 *      leave-one-out), and new reviewed defects are scored by the resumed model. Reviewed defects never
 *      join the Gaussians; a reviewed defect that is a training image stays in them, with a warning.
 */

import { PartscanError, type PartscanWarning } from '../errors.js';
import { readReviewFile, parseReview, type ReviewFile } from '../review/review-file.js';
import { resolveReviewImages, type ResolvedReviewItem } from '../review/review-images.js';
import type { Sample } from '../types.js';
import type { ReviewJoinSummary } from './types.js';
import type { CalibrationPool, KeyedRow } from './calibration-pool.js';
import { modelScoringSha256 } from './model-identity.js';
import type { Model } from './model.js';

export type { ReviewJoinSummary };

/** Where a QA review comes from, for {@link calibrate} and {@link fit}. */
export interface ReviewSource {
  /** The review: the path of a `review.json` exported by the report, or a parsed review. */
  review: string | ReviewFile;
  /**
   * Folders the reviewed images must lie in (real paths; symlinks out of them are not followed).
   * Default: the working directory.
   */
  imageRoots?: string[];
  /** Cancels the reading and hashing of the reviewed images. */
  signal?: AbortSignal;
}

/** A review opened against a model: its parts found, hashed, and whether its recorded scores are this model's. */
interface OpenedReview {
  items: ResolvedReviewItem[];
  source: string;
  recordedScoresUsable: boolean;
  warnings: PartscanWarning[];
}

/** Stage 1 (see the module comment). Throws 'REVIEW' for a hostile, stale or foreign review. */
async function openReview(model: Model, src: ReviewSource): Promise<OpenedReview> {
  const source = typeof src.review === 'string' ? src.review : '<review>';
  const review = typeof src.review === 'string' ? await readReviewFile(src.review) : parseReview(src.review, source);
  const warnings: PartscanWarning[] = [];
  const theirs = review.model.sha256;
  const ours = modelScoringSha256(model);
  if (theirs === null) {
    warnings.push({
      code: 'REVIEW_MODEL_UNKNOWN',
      message: `${source} does not say which model scored its run (a run of an older partscan): every reviewed part is scored again by this model.`,
    });
  } else if (theirs !== ours) {
    const named = review.model.path ? ` (${review.model.path})` : '';
    throw new PartscanError('REVIEW', `${source} reviews a run scored by another model${named}: scoring identity ${theirs.slice(0, 12)}…, this model's is ${ours.slice(0, 12)}….`, {
      ...(typeof src.review === 'string' ? { file: src.review } : {}),
      remedy: `apply the review to the model that scored the run${named}, or score the parts with this model (partscan score), review that run's report and export its review`,
    });
  }
  if (review.items.length === 0) {
    throw new PartscanError('REVIEW', `${source} labels no part.`, { remedy: 'label parts in the report (good / defect) before exporting the review' });
  }
  const items = await resolveReviewImages(review, { source, ...(src.imageRoots ? { roots: src.imageRoots } : {}), ...(src.signal ? { signal: src.signal } : {}) });
  return { items, source, recordedScoresUsable: theirs !== null, warnings };
}

function summaryOf(items: readonly ResolvedReviewItem[]): ReviewJoinSummary {
  const good = items.filter((i) => i.label === 'good').length;
  return { good, defect: items.length - good, inPool: 0, recorded: 0, scored: 0, fitted: 0 };
}

function trainingDefectWarning(item: ResolvedReviewItem): PartscanWarning {
  return {
    code: 'REVIEWED_DEFECT_IN_TRAINING',
    message: `${item.file} was labelled defective in review, but it is one of the model's training images: it now counts as a defect in the thresholds, yet its statistics stay in the Gaussians. Remove it from the good images and fit again.`,
    file: item.file,
  };
}

/** The pool row of a part the pool already holds, in the reviewed class, flagged as reviewed. */
function relabelled(item: ResolvedReviewItem, pool: CalibrationPool | undefined, warnings: PartscanWarning[]): KeyedRow | undefined {
  const entry = pool?.entryOf(item.key);
  if (!entry) return undefined;
  if (item.label === 'defect' && entry.label === 'good' && entry.source === 'leaveOneOut') warnings.push(trainingDefectWarning(item));
  const source = item.label === entry.label ? entry.source : 'added';
  return { row: entry.row, key: item.key, source, reviewed: true };
}

/**
 * `calibrate --review`: the reviewed parts as pool rows, by class (stage 2). `score` scores the parts
 * that carry no usable scores (files, in order) into rows [image score, map max, map min].
 */
export async function reviewRows(
  model: Model,
  pool: CalibrationPool,
  src: ReviewSource,
  score: (files: string[]) => Promise<number[][]>,
): Promise<{ good: KeyedRow[]; defect: KeyedRow[]; summary: ReviewJoinSummary; warnings: PartscanWarning[] }> {
  const opened = await openReview(model, src);
  const summary = summaryOf(opened.items);
  // Rows in the review's order (whether recorded or scored now), so both give the same pool.
  const placed = new Array<KeyedRow>(opened.items.length);
  const toScore: number[] = [];
  opened.items.forEach((item, i) => {
    const known = relabelled(item, pool, opened.warnings);
    const { imageScore, mapMax, mapMin } = item;
    if (known) {
      placed[i] = known;
      summary.inPool++;
    } else if (opened.recordedScoresUsable && imageScore !== undefined && mapMax !== undefined && mapMin !== undefined) {
      placed[i] = { row: [imageScore, mapMax, mapMin], key: item.key, reviewed: true };
      summary.recorded++;
    } else toScore.push(i);
  });
  const scored = toScore.length ? await score(toScore.map((i) => opened.items[i]!.path)) : [];
  toScore.forEach((i, k) => (placed[i] = { row: scored[k]!, key: opened.items[i]!.key, reviewed: true }));
  summary.scored = toScore.length;
  const rows = { good: [] as KeyedRow[], defect: [] as KeyedRow[] };
  opened.items.forEach((item, i) => rows[item.label].push(placed[i]!));
  return { ...rows, summary, warnings: opened.warnings };
}

/** What `fit --resume --review` does with a review (stage 2 for a resumed fit). */
export interface ResumeReviewPlan {
  /** Reviewed-good images to add to the Gaussians (real paths). */
  fitGood: string[];
  /** Reviewed defects the pool does not hold: scored by the resumed model. */
  defects: Sample[];
  /** Pool rows the review relabels or flags (parts the pool held). */
  relabelled: { good: KeyedRow[]; defect: KeyedRow[] };
  /** Keys of every reviewed part (the rows the fit adds for them are flagged as reviewed). */
  keys: Set<string>;
  summary: ReviewJoinSummary;
  warnings: PartscanWarning[];
}

/**
 * `fit --resume --review` (see the module comment): which reviewed parts the fit adds to the Gaussians,
 * which defects it scores, and which rows of the resumed model's pool it relabels. A reviewed-good part
 * that is a training image (a leave-one-out row) is not fitted twice. Throws 'OPTIONS' without a model
 * to resume.
 */
export async function planResumeReview(model: Model | undefined, src: ReviewSource): Promise<ResumeReviewPlan> {
  if (!model) {
    throw new PartscanError('OPTIONS', 'fit: a review (--review) joins a fitted model: it needs --resume <model>, the model that scored the reviewed run.', {
      remedy: 'add --resume <model> (API: resume), or use partscan calibrate --review',
    });
  }
  const opened = await openReview(model, src);
  const pool = await model.calibrationScores();
  const plan: ResumeReviewPlan = { fitGood: [], defects: [], relabelled: { good: [], defect: [] }, keys: new Set(opened.items.map((i) => i.key)), summary: summaryOf(opened.items), warnings: opened.warnings };
  for (const item of opened.items) {
    const entry = pool?.entryOf(item.key);
    if (item.label === 'good' && !(entry?.label === 'good' && entry.source === 'leaveOneOut')) {
      plan.fitGood.push(item.path);
      continue;
    }
    const known = relabelled(item, pool, plan.warnings);
    if (known) {
      plan.relabelled[item.label].push(known);
      plan.summary.inPool++;
    } else plan.defects.push({ path: item.path, label: 'reviewed-defect', anomalous: true });
  }
  plan.summary.fitted = plan.fitGood.length;
  plan.summary.scored = plan.defects.length;
  return plan;
}

/** The error of a resumed fit that has no image to add: a review without new good parts, and no images given. */
export function nothingToFitError(review: ReviewSource['review']): PartscanError {
  const source = typeof review === 'string' ? review : 'The review';
  return new PartscanError('REVIEW', `${source} labels no good part that is not already in the model's statistics, and no other images were given, so fit --resume has nothing to add.`, {
    remedy: 'use partscan calibrate --review to join the reviewed parts to the thresholds without refitting',
  });
}
