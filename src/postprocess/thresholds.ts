/**
 * Decision thresholds as a model stores and applies them: the {@link Thresholds} record, the
 * normalisation it defines and the OK / NG / UNCERTAIN {@link verdict}. How thresholds are chosen
 * from calibration scores is in threshold-rules.ts.
 *
 * Convention used everywhere in partscan: a score is anomalous when it is **strictly above** its
 * threshold (normalised: strictly above 0.5). Thresholds chosen by the rules therefore sit strictly
 * between distinct calibration scores, or at the worst good score for the good-only floor, so
 * calibration parts are classified the same whichever side of "≥ / >" a reader assumes.
 */

import { PartscanError } from '../errors.js';
import type { NormalizationStats } from './normalize.js';

/** Good-only rule: the q-quantile of good scores (linear interpolation between order statistics, "type 7"). */
export interface QuantileRule {
  /** Discriminant. */
  kind: 'quantile';
  /** Quantile, 0..1. */
  q: number;
}

/** Good-only rule: mean + k·σ of good scores (sample standard deviation). */
export interface SigmaRule {
  /** Discriminant. */
  kind: 'sigma';
  /** Number of standard deviations above the mean, ≥ 0. */
  k: number;
  /** Never below the worst good score (default true). */
  floorAtMax?: boolean;
}

/** Rule for a threshold from good parts only. */
export type GoodOnlyRule = QuantileRule | SigmaRule;

/** A typical uncertainty band around the normalised threshold 0.5, for {@link verdict}. */
export const DEFAULT_UNCERTAIN_BAND: VerdictBand = { low: 0.45, high: 0.55 };

/** How a threshold was obtained. */
export type ThresholdMethod = 'f1-adaptive' | 'good-sigma' | 'good-quantile' | 'manual';

/** Raw-score range seen during calibration (the normalisation span). */
export interface ScoreRange {
  /** Smallest raw score. */
  min: number;
  /** Largest raw score. */
  max: number;
}

/** Uncertainty band in normalised units: below `low` OK, above `high` NG, in between UNCERTAIN. */
export interface VerdictBand {
  /** Lower edge, 0 ≤ low ≤ 0.5. */
  low: number;
  /** Upper edge, 0.5 ≤ high ≤ 1. */
  high: number;
}

/** The calibrated decision thresholds stored with a model. */
export interface Thresholds {
  /** Raw image-score threshold (maps to normalised 0.5). */
  image: number;
  /** Raw pixel-score threshold (maps to normalised 0.5 in anomaly maps). */
  pixel: number;
  /** How each threshold was obtained. */
  method: {
    /** Method of the image threshold. */
    image: ThresholdMethod;
    /** Method of the pixel threshold. */
    pixel: ThresholdMethod;
  };
  /** Raw image-score range of the calibration set. */
  imageStats: ScoreRange;
  /** Raw pixel-score range of the calibration set. */
  pixelStats: ScoreRange;
  /** Optional uncertainty band for verdicts; absent = binary decision at 0.5. */
  band?: VerdictBand;
}

/** A part's verdict. */
export type Verdict = 'OK' | 'NG' | 'UNCERTAIN';

/** Normalisation statistics for image scores. */
export function imageNormalization(t: Thresholds): NormalizationStats {
  return { threshold: t.image, min: t.imageStats.min, max: t.imageStats.max };
}

/** Normalisation statistics for pixel scores (anomaly maps). */
export function pixelNormalization(t: Thresholds): NormalizationStats {
  return { threshold: t.pixel, min: t.pixelStats.min, max: t.pixelStats.max };
}

/** Throws 'OPTIONS' unless `0 ≤ low ≤ 0.5 ≤ high ≤ 1`. */
export function validateBand(band: VerdictBand): void {
  const { low, high } = band;
  if (!(Number.isFinite(low) && Number.isFinite(high) && low >= 0 && low <= 0.5 && high >= 0.5 && high <= 1)) {
    throw new PartscanError(
      'OPTIONS',
      `Invalid uncertainty band [${low}, ${high}]: it must satisfy 0 ≤ low ≤ 0.5 ≤ high ≤ 1 (normalised units).`,
      { remedy: 'use e.g. [0.45, 0.55], or no band for a binary decision' },
    );
  }
}

/**
 * The verdict for a normalised image score: without a band, NG when strictly above 0.5, else OK;
 * with a band, OK below `low`, NG above `high`, UNCERTAIN in `[low, high]`. A NaN score (a broken
 * pipeline) is NG: a part that could not be judged is never passed.
 */
export function verdict(normalisedScore: number, band?: VerdictBand): Verdict {
  if (Number.isNaN(normalisedScore)) return 'NG';
  if (!band) return normalisedScore > 0.5 ? 'NG' : 'OK';
  validateBand(band);
  if (normalisedScore > band.high) return 'NG';
  if (normalisedScore < band.low) return 'OK';
  return 'UNCERTAIN';
}
