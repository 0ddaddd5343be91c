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
import type { ExponentialTail } from './tail-model.js';

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

/**
 * How a threshold was obtained: 'false-reject' = at a stated false-reject rate from the tail of
 * out-of-sample good scores (the default, see operating-point.ts); 'f1-adaptive' = F1-best with
 * labelled defects; 'good-sigma' / 'good-quantile' = the rules of partscan ≤ 0.1 on good scores;
 * 'manual' = given by the user.
 */
export type ThresholdMethod = (typeof THRESHOLD_METHODS)[number];

/** Every {@link ThresholdMethod} (for the schemas of model headers and results.json). */
export const THRESHOLD_METHODS = ['false-reject', 'f1-adaptive', 'good-sigma', 'good-quantile', 'manual'] as const;

/** A rate estimated on good parts from the tail model, with its one-sided 95 % upper bound. */
export interface EstimatedRate {
  /** Estimated share of good parts above the threshold. */
  rate: number;
  /** One-sided 95 % upper confidence bound of that share. */
  upper95: number;
}

/**
 * What a model's thresholds promise, and on what evidence (model format 1.3, `thresholds.operatingPoint`).
 * Rates are estimated from out-of-sample scores of good images by the exponential tail model
 * (tail-model.ts); the escape rate, when labelled defects were given, is counted on them.
 */
export interface OperatingPoint {
  /** The false-reject rate asked for (`--false-reject`). */
  falseRejectTarget: number;
  /** Good scores the rates were estimated from, and how many were left out as likely defects. */
  goodScores: { used: number; excluded: number };
  /** The image threshold: estimated false-reject rate and the tail it comes from. */
  image: EstimatedRate & { tail: ExponentialTail };
  /**
   * The pixel threshold: estimated share of good parts that show any defect region (the tail of their
   * raw map maxima).
   */
  pixel: EstimatedRate & { tail: ExponentialTail };
  /** With labelled defects: the escape rate at the image threshold with its 95 % Clopper–Pearson interval. */
  escape?: { rate: number; lower95: number; upper95: number; defects: number };
  /**
   * The review band (`--review-band r`): parts scoring between `threshold` (good parts exceed it with
   * probability r) and the image threshold are UNCERTAIN.
   */
  reviewBand?: { falseRejectRate: number; threshold: number };
}

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
  /** What the thresholds promise (format ≥ 1.3; absent in older files and for manual thresholds without scores). */
  operatingPoint?: OperatingPoint;
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
