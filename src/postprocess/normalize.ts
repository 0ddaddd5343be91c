/**
 * Normalisation of raw anomaly scores (Mahalanobis distances) into 0..1 with the decision threshold at
 * exactly 0.5, by a saturating map that stays informative far above the threshold: a clamp at the
 * calibration maximum (anomalib's min–max) would put nearly every defect at 1 — on MVTec bottle, 64
 * of 83 test parts landed in the top histogram bin. Image scores and pixel maps are normalised
 * separately, each with its own threshold and calibration range.
 */

import { PartscanError } from '../errors.js';

/** What normalisation needs: the raw threshold and the raw calibration range. */
export interface NormalizationStats {
  /** Raw score that maps to 0.5 (the decision threshold). */
  threshold: number;
  /** Smallest raw score seen during calibration. */
  min: number;
  /** Largest raw score seen during calibration. */
  max: number;
}

function checkStats(stats: NormalizationStats): void {
  const { threshold, min, max } = stats;
  if (!Number.isFinite(threshold) || !Number.isFinite(min) || !Number.isFinite(max) || max < min) {
    throw new PartscanError(
      'THRESHOLD',
      `Invalid normalisation statistics (threshold ${threshold}, min ${min}, max ${max}): all must be finite and min ≤ max.`,
      { remedy: 'recalibrate the model thresholds' },
    );
  }
}

/**
 * The raw-score unit of the normalisation, `s`: half the distance from the lowest calibration score to
 * the threshold (the spread of the good scores below the threshold), or, when the threshold lies at or
 * below the lowest calibration score (a manual threshold), half the calibration range; 0 when both are
 * 0 (a degenerate calibration). Only the threshold and the calibration range are used, so every stored
 * model has one.
 */
export function normalizationScale(stats: NormalizationStats): number {
  const below = stats.threshold - stats.min;
  if (below > 0) return below / 2;
  const span = stats.max - stats.min;
  return span > 0 ? span / 2 : 0;
}

function normalizeChecked(x: number, threshold: number, scale: number): number {
  if (scale > 0) {
    const z = (x - threshold) / scale;
    if (!Number.isFinite(z)) return Number.isNaN(z) ? z : z > 0 ? 1 : 0;
    const g = 1 - 1 / Math.sqrt(1 + 2 * Math.abs(z));
    return z >= 0 ? 0.5 + 0.5 * g : 0.5 - 0.5 * g;
  }
  // Degenerate calibration (every calibration score identical): no scale, so fall back to a step that
  // keeps the threshold at 0.5 and stays monotone.
  return x > threshold ? 1 : x < threshold ? 0 : x === threshold ? 0.5 : Number.NaN;
}

/**
 * `0.5 ± ½ · (1 − 1/√(1 + 2|z|))` (+ above the threshold, − below) with `z = (x − threshold) / s`
 * ({@link normalizationScale}): strictly increasing, the threshold at exactly 0.5, values in (0, 1) that
 * never reach 1, and a slowly saturating tail. Readings: the lowest calibration score (`z = −2`) maps to
 * 0.224; a score `4s` above the threshold (twice the good spread) to 0.833, `12s` above to 0.9, `40s`
 * above to 0.944, `112s` above to 0.967 — so defects far past the threshold stay apart instead of piling
 * up at 1. Near the threshold its slope is `1 / (threshold − min)`, the min–max map's slope when the
 * threshold sits at the calibration maximum, so an uncertainty band keeps about its width in raw units.
 *
 * Degenerate calibration (`s = 0`) gives a step: 0 below the threshold, 0.5 at it, 1 above it. NaN
 * stays NaN so a broken score is never mistaken for a valid one (+∞ → 1, −∞ → 0).
 * Throws 'THRESHOLD' on non-finite statistics or `max < min`.
 */
export function normalizeScore(x: number, stats: NormalizationStats): number {
  checkStats(stats);
  return normalizeChecked(x, stats.threshold, normalizationScale(stats));
}

/** {@link normalizeScore} applied to every value of a map; returns a new Float32Array. */
export function normalizeMap(map: ArrayLike<number>, stats: NormalizationStats): Float32Array {
  checkStats(stats);
  const scale = normalizationScale(stats);
  const out = new Float32Array(map.length);
  for (let i = 0; i < map.length; i++) out[i] = normalizeChecked(map[i]!, stats.threshold, scale);
  return out;
}
