/**
 * The operating curve of a labelled test set: the escape rate a model would have at a series of
 * false-reject rates, measured on the test images themselves. `eval` reports it beside the verdicts at
 * the shipped threshold, so a line sees what a different operating point would buy (and what
 * `partscan calibrate --false-reject r` can move to).
 */

/** False-reject rates of the curve `eval` reports. */
export const OPERATING_CURVE_RATES: readonly number[] = [0, 0.005, 0.01, 0.02, 0.05, 0.1];

/** One point of the curve (snake_case: part of the `eval --json` contract). */
export interface OperatingCurvePoint {
  /** The false-reject rate the point is at: at most this share of the good test images is above `threshold`. */
  false_reject_rate: number;
  /** The share of good test images actually above `threshold` (≤ false_reject_rate; ties and few images make it lower). */
  measured_false_reject_rate: number;
  /** Share of defective test images at or below `threshold`. */
  escape_rate: number;
  /** Raw image-score threshold (scores strictly above it are NG). */
  threshold: number;
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
    if (n === 0) return { false_reject_rate: rate, measured_false_reject_rate: NaN, escape_rate: NaN, threshold: NaN };
    const allowed = Math.min(n - 1, Math.floor(rate * n + 1e-9));
    const threshold = good[n - 1 - allowed]!;
    let above = 0;
    for (let i = n - 1; i >= 0 && good[i]! > threshold; i--) above++;
    let escapes = 0;
    while (escapes < defect.length && defect[escapes]! <= threshold) escapes++;
    return {
      false_reject_rate: rate,
      measured_false_reject_rate: above / n,
      escape_rate: defect.length ? escapes / defect.length : NaN,
      threshold,
    };
  });
}
