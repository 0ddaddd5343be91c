/**
 * Statistical process control building blocks for line monitoring: the standard normal distribution,
 * the rank (normal-score) transform of a value against a reference sample, the EWMA chart's control
 * limit (Roberts 1959; Lucas & Saccucci 1990) and the Mann–Whitney two-sample test.
 */
import { lowerBound, upperBound } from '../guards/robust-stats.js';

/**
 * Standard normal quantile Φ⁻¹(p), 0 < p < 1 (Acklam's rational approximation, relative error
 * < 1.2·10⁻⁹). Returns ±Infinity at p = 0 / 1.
 */
export function normalQuantile(p: number): number {
  if (!(p > 0)) return -Infinity;
  if (!(p < 1)) return Infinity;
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low || p > 1 - low) {
    const q = Math.sqrt(-2 * Math.log(p < low ? p : 1 - p));
    const x = (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
    return p < low ? x : -x;
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/** Standard normal upper tail 1 − Φ(x) (erfc by W. J. Cody's Chebyshev fit as in Numerical Recipes, relative error < 1.2·10⁻⁷). */
export function normalUpperTail(x: number): number {
  const zAbs = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * zAbs);
  const erfc =
    t *
    Math.exp(
      -zAbs * zAbs -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? erfc / 2 : 1 - erfc / 2;
}

/** Number of values in ascending `sorted` below x and equal to x (binary searches). */
export function rankIn(sorted: readonly number[], x: number): { below: number; equal: number } {
  const below = lowerBound(sorted, 0, sorted.length, x);
  return { below, equal: upperBound(sorted, 0, sorted.length, x) - below };
}

/**
 * Mid-rank percentile of x in a reference sample, in (0, 1): (below + equal/2 + 1/2) / (n + 1). A new
 * value equally likely to fall in any of the n + 1 gaps of the reference gets a uniform percentile,
 * whatever the distribution of the scores.
 */
export function percentileIn(sortedReference: readonly number[], x: number): number {
  const { below, equal } = rankIn(sortedReference, x);
  return (below + equal / 2 + 0.5) / (sortedReference.length + 1);
}

/**
 * Normal score of x against a reference sample: Φ⁻¹ of its {@link percentileIn}. Standard normal for
 * a value from the reference's distribution (any distribution: a nonparametric chart statistic), and
 * bounded by the reference size (|u| ≤ Φ⁻¹(1 − 1/(2(n+1)))), so one extreme image moves a chart by a
 * bounded amount.
 */
export function normalScore(sortedReference: readonly number[], x: number): number {
  return normalQuantile(percentileIn(sortedReference, x));
}

/**
 * Control limit of an EWMA chart of standardised observations after i observations (i ≥ 1):
 * L·√(λ/(2−λ)·(1 − (1−λ)^{2i})), the exact standard deviation of the EWMA started at 0 times L.
 */
export function ewmaLimit(lambda: number, limit: number, i: number): number {
  return limit * Math.sqrt((lambda / (2 - lambda)) * (1 - (1 - lambda) ** (2 * i)));
}

/**
 * Mann–Whitney (Wilcoxon rank-sum) test of a window of values against a reference sample, normal
 * approximation: `auc` = P(window value > reference value) + ½·P(tie), z its standardised difference
 * from ½, p the two-sided p-value.
 */
export function mannWhitney(sortedReference: readonly number[], window: readonly number[]): { auc: number; z: number; p: number } {
  const n = sortedReference.length;
  const m = window.length;
  let u = 0;
  for (const x of window) {
    const { below, equal } = rankIn(sortedReference, x);
    u += below + equal / 2;
  }
  const sd = Math.sqrt((m * n * (m + n + 1)) / 12);
  const z = sd > 0 ? (u - (m * n) / 2) / sd : 0;
  return { auc: m * n > 0 ? u / (m * n) : 0.5, z, p: Math.min(1, 2 * normalUpperTail(Math.abs(z))) };
}
