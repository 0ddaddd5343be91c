/**
 * The operating curve of a labelled test set: the escape rate a model would have at a series of
 * false-reject rates, measured on the test images themselves. `eval` reports it beside the verdicts at
 * the shipped threshold, so a line sees what a different operating point would buy (and what
 * `partscan calibrate --false-reject r` can move to).
 */

import { empiricalUpperQuantile, upperBound } from '../guards/robust-stats.js';

/** False-reject rates of the curve `eval` reports. */
export const OPERATING_CURVE_RATES: readonly number[] = [0, 0.005, 0.01, 0.02, 0.05, 0.1];

/** One point of the curve (part of the `eval --json` contract: docs/schemas/eval.schema.json). */
export interface OperatingCurvePoint {
  /** The false-reject rate the point is at: at most this share of the good test images is above `threshold`. */
  falseRejectRate: number;
  /** The share of good test images actually above `threshold` (≤ falseRejectRate; ties and few images make it lower). */
  measuredFalseRejectRate: number;
  /** Share of defective test images at or below `threshold`. */
  escapeRate: number;
  /** Raw image-score threshold (scores strictly above it are NG). */
  threshold: number;
}

/**
 * Where a row for `threshold` goes among the curve's points: thresholds fall as the false-reject rate
 * rises, so before the first point whose threshold is not above it (after the last when none is).
 */
export function shippedRowIndex(points: readonly { threshold: number }[], threshold: number): number {
  const at = points.findIndex((p) => !(p.threshold > threshold));
  return at < 0 ? points.length : at;
}

/** The false-reject and escape rates at `threshold` (scores strictly above it are NG); NaN for an empty class. */
export function ratesAt(goodScores: readonly number[], defectScores: readonly number[], threshold: number): { falseRejectRate: number; escapeRate: number } {
  return {
    falseRejectRate: goodScores.length ? goodScores.filter((s) => s > threshold).length / goodScores.length : NaN,
    escapeRate: defectScores.length ? defectScores.filter((s) => !(s > threshold)).length / defectScores.length : NaN,
  };
}

/**
 * The lowest threshold that keeps at most ⌊rate·N⌋ of the N good scores strictly above it, and the escape
 * rate of the defect scores there, for each rate. NaN thresholds and rates when a class is empty.
 */
export function operatingCurve(goodScores: ArrayLike<number>, defectScores: ArrayLike<number>, rates: readonly number[] = OPERATING_CURVE_RATES): OperatingCurvePoint[] {
  const good = Float64Array.from(goodScores).sort();
  const defect = Float64Array.from(defectScores).sort();
  const n = good.length;
  return rates.map((rate) => {
    if (n === 0) return { falseRejectRate: rate, measuredFalseRejectRate: NaN, escapeRate: NaN, threshold: NaN };
    const threshold = empiricalUpperQuantile(good, rate);
    const above = n - upperBound(good, 0, n, threshold);
    const escapes = upperBound(defect, 0, defect.length, threshold);
    return {
      falseRejectRate: rate,
      measuredFalseRejectRate: above / n,
      escapeRate: defect.length ? escapes / defect.length : NaN,
      threshold,
    };
  });
}
