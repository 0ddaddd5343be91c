/**
 * The one home of partscan's robust statistics — median, MAD scale and robust z — used by the
 * training-set contamination check, calibration outliers, the drift guard and line monitoring.
 * Median/MAD instead of mean/std because the samples they judge may hold the very outliers they look
 * for (a defect among the "good" images, a shifted image among the drift descriptors).
 */

/** Makes the MAD a consistent estimator of the standard deviation for Gaussian data. */
export const MAD_TO_SIGMA = 1.482602218505602;

/** Median of a copy of `values` (mean of the two middle values for even lengths). */
export function median(values: ArrayLike<number>): number {
  const s = Float64Array.from(values).sort();
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Robust z-scores on the raw scale: (x − median) / (MAD_TO_SIGMA·MAD), with a tiny floor on the spread. For
 * right-skewed image scores use {@link logRobustZ} (what the contamination checks use).
 */
export function robustZ(xs: readonly number[]): number[] {
  const c = median(xs);
  const spread = Math.max(MAD_TO_SIGMA * median(xs.map((x) => Math.abs(x - c))), 1e-6 * Math.abs(c), 1e-12);
  return xs.map((x) => (x - c) / spread);
}

/**
 * Robust z of the logarithm of each score: (ln x − median ln x) / (1.4826·MAD(ln x)).
 *
 * Why the logarithm: image scores are maxima of Mahalanobis distances over a map, positive and
 * right-skewed with a spread that grows with the level (leave-one-out scores measured on MVTec bottle,
 * d=100: skewness 4.8; magnetic tile: 4.0). A median/MAD z on the raw scores treats that long but
 * ordinary upper tail as outliers (z > 5 flagged 11 of 209 good bottle images and 35 of 720
 * magnetic-tile ones); on the log scale the rule is scale-free and the bulk much closer to symmetric.
 */
export function logRobustZ(scores: readonly number[]): number[] {
  const logs = scores.map((x) => Math.log(Math.max(x, 1e-12)));
  const c = median(logs);
  const spread = Math.max(MAD_TO_SIGMA * median(logs.map((x) => Math.abs(x - c))), 1e-6); // identical scores are no outliers
  return logs.map((x) => (x - c) / spread);
}

/** {@link logRobustZ} above which a score is an outlier on its own (~3·10⁻⁷ per image for log-normal scores). */
export const CONTAMINATION_Z = 5;
/** Lower {@link logRobustZ} from which a score is an outlier when a gap separates it from the rest... */
export const CONTAMINATION_GAP_FROM_Z = 3;
/** ...of at least this many robust standard deviations (of the log scores) to the next lower score. */
export const CONTAMINATION_GAP = 1.5;

/**
 * Which good-image scores (leave-one-out training scores, or calibration scores pooled with them) score
 * like defects. On the log scale ({@link logRobustZ}) a score is an outlier when z > {@link
 * CONTAMINATION_Z}, or when it belongs to the top group that sits above z = {@link
 * CONTAMINATION_GAP_FROM_Z} and is separated from all lower scores by a gap ≥ {@link CONTAMINATION_GAP}.
 * The gap condition catches a defect in a small, tight training set (e.g. 2× the median where good
 * images vary by ±20%) without flagging the continuous upper tail of good parts that real data show even
 * on the log scale. Clean log-normal samples: ≈0.01 flags per 200 images, ≈0.05 per 25 (simulated).
 * Only high scores count: a low score never looks like a defect.
 */
export function scoreOutliers(scores: readonly number[]): {
  /** Robust z of each score on the log scale ({@link logRobustZ}). */
  z: number[];
  /** Whether each score is an outlier by the rule above. */
  outlier: boolean[];
} {
  const z = logRobustZ(scores);
  const desc = [...z].sort((a, b) => b - a);
  let cut = Infinity; // scores with z ≥ cut are outliers
  for (let i = 0; i < desc.length && desc[i]! > CONTAMINATION_GAP_FROM_Z; i++) {
    if (desc[i]! > CONTAMINATION_Z || desc[i]! - desc[i + 1]! >= CONTAMINATION_GAP) cut = desc[i]!;
  }
  return { z, outlier: z.map((v) => v >= cut) };
}

/**
 * The q-quantile (type 7: linear between order statistics, NumPy's default) of the `m` ascending values
 * `sorted[offset .. offset + m)`, or of the m − 1 values left when the one at relative index `skip` is
 * taken out (leave-one-out, in O(1) once a column is sorted).
 */
export function sortedQuantile(sorted: ArrayLike<number>, offset: number, m: number, q: number, skip = -1): number {
  const count = skip >= 0 ? m - 1 : m;
  const pos = (count - 1) * Math.min(Math.max(q, 0), 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, count - 1);
  // Element j of the remaining values: j-th of the column, one further on from the skipped one.
  const at = (j: number): number => sorted[offset + (skip >= 0 && j >= skip ? j + 1 : j)]!;
  const a = at(lo);
  return a + (pos - lo) * (at(hi) - a);
}

/**
 * The lowest of the n ascending values with at most ⌊rate·n⌋ of them strictly above it (ties aside): the
 * empirical score a share `rate` of the sample exceeds (n ≥ 1).
 */
export function empiricalUpperQuantile(sorted: ArrayLike<number>, rate: number): number {
  const n = sorted.length;
  return sorted[n - 1 - Math.min(n - 1, Math.floor(rate * n + 1e-9))]!;
}

/** Index of the first of `m` ascending values at `offset` that is ≥ x (binary search). */
export function lowerBound(sorted: ArrayLike<number>, offset: number, m: number, x: number): number {
  let lo = 0;
  let hi = m;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[offset + mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first of `m` ascending values at `offset` that is > x (binary search). */
export function upperBound(sorted: ArrayLike<number>, offset: number, m: number, x: number): number {
  let lo = 0;
  let hi = m;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[offset + mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
