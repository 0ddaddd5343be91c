/**
 * The per-position standardisation behind the image score (model format 1.3, `imageScore.kind =
 * 'standardized'`). Some grid positions are naturally noisy on good parts (edges, texture, background
 * clutter), and with the image score as the map's maximum their distances set the score of good parts,
 * so the threshold has to sit above that noise and defects at quiet positions fall below it. The image
 * score is therefore the maximum of the upsampled, blurred map of (distance − centre_p) / spread_p,
 * with centre and spread taken per position from out-of-sample distances of the good training images.
 * The anomaly map itself (masks, regions, pixel threshold) stays the raw distance map: standardising it
 * blows up the noise of near-constant backgrounds.
 *
 * Estimator (docs/THRESHOLDS.md has the comparison on bottle, magnetic tile and the demo):
 * - centre = the median, spread = the 95th percentile minus the median. A high quantile, not the MAD or
 *   the standard deviation, because the image score is about each position's upper tail; quantiles, not
 *   moments, because a few contaminated "good" images must not move them.
 * - spread floored at the median spread over all positions: the standardisation only damps positions
 *   noisier than typical and never amplifies quiet ones (whose tiny spreads would turn noise into
 *   scores), and the spread can never be ~0.
 * The fit's own out-of-sample image scores are standardised leave-one-out as well (each image by the
 * quantiles of the others), so the thresholds see the scores new parts will get.
 */

import { PartscanError } from '../errors.js';
import { lowerBound, median, sortedQuantile } from '../guards/robust-stats.js';

/** The quantile whose distance from the median is a position's spread. */
export const STANDARDIZE_QUANTILE = 0.95;

/** Per-position centre and spread of out-of-sample good distances (section `imageScore.standardize`, [2, P]). */
export interface PositionStandardization {
  /** Per-position median of the good distances [P]. */
  centre: Float32Array;
  /** Per-position spread [P]: 95th percentile − median, floored at its median over positions. */
  spread: Float32Array;
}

/** Smallest spread, in distance units (whatever the data). */
export const MIN_SPREAD = 1e-6;

/**
 * Fewest good images per-position quantiles are estimated from: below 20, the 95th percentile of each
 * position is its maximum or an interpolation toward it, and the standardisation adds more noise than
 * it removes (the image score is then the map's maximum).
 */
export const MIN_STANDARDIZE_IMAGES = 20;

/** The fitted standardisation, and every image's distances standardised out of sample. */
export interface FittedStandardization {
  /** What the model stores and scoring applies. */
  standardization: PositionStandardization;
  /**
   * The n images' distances standardised [n, P]: those that took part (see `keep`) by the quantiles of
   * the others (leave-one-out), the rest by the full quantiles.
   */
  standardized: Float32Array;
}

/**
 * Fits the per-position standardisation to out-of-sample distances `dist` of n good images, image-major
 * [n, P], using the images where `keep(i)` (e.g. not contamination suspects), and standardises all n.
 * Throws 'THRESHOLD' when fewer than {@link MIN_STANDARDIZE_IMAGES} images are kept.
 */
export function fitStandardization(dist: Float32Array, n: number, P: number, keep: (i: number) => boolean = () => true): FittedStandardization {
  if (dist.length !== n * P) throw new PartscanError('INVALID_TENSOR', `Distances hold ${dist.length} values, expected ${n}×${P}.`);
  const kept: number[] = [];
  for (let i = 0; i < n; i++) if (keep(i)) kept.push(i);
  const m = kept.length;
  if (m < MIN_STANDARDIZE_IMAGES) {
    throw new PartscanError('THRESHOLD', `The per-position image score needs out-of-sample distances of at least ${MIN_STANDARDIZE_IMAGES} good images; got ${m}.`, {
      remedy: 'fit on more good images, or use the map-maximum image score (--image-score max)',
    });
  }
  // Columns sorted once, position-major [P, m]: quantiles with one image left out are then O(1).
  const sorted = new Float32Array(P * m);
  for (let p = 0; p < P; p++) {
    const col = sorted.subarray(p * m, (p + 1) * m);
    for (let j = 0; j < m; j++) col[j] = dist[kept[j]! * P + p]!;
    col.sort();
  }
  const centre = new Float32Array(P);
  const rawSpread = new Float64Array(P);
  for (let p = 0; p < P; p++) {
    centre[p] = sortedQuantile(sorted, p * m, m, 0.5);
    rawSpread[p] = sortedQuantile(sorted, p * m, m, STANDARDIZE_QUANTILE) - centre[p]!;
  }
  // The absolute floor only matters when good images were identical at most positions (distances are
  // Mahalanobis units, typically 1–100): scores stay finite.
  const floor = Math.max(median(rawSpread), MIN_SPREAD);
  const spread = Float32Array.from(rawSpread, (s) => Math.max(s, floor));
  const standardized = new Float32Array(n * P);
  const isKept = new Uint8Array(n);
  for (const i of kept) isKept[i] = 1;
  for (let i = 0; i < n; i++) {
    const o = i * P;
    for (let p = 0; p < P; p++) {
      const x = dist[o + p]!;
      if (isKept[i]) {
        // Any one of equal values may stand for the image left out: the rest is the same multiset.
        const skip = lowerBound(sorted, p * m, m, Math.fround(x));
        const c = sortedQuantile(sorted, p * m, m, 0.5, skip);
        const s = Math.max(sortedQuantile(sorted, p * m, m, STANDARDIZE_QUANTILE, skip) - c, floor);
        standardized[o + p] = (x - c) / s;
      } else {
        standardized[o + p] = (x - centre[p]!) / spread[p]!;
      }
    }
  }
  return { standardization: { centre, spread }, standardized };
}

/** Standardises distances [n, P] in place by a fitted standardisation. */
export function standardizeDistances(dist: Float32Array, n: number, s: PositionStandardization): Float32Array {
  const P = s.centre.length;
  for (let i = 0; i < n; i++) for (let p = 0; p < P; p++) dist[i * P + p] = (dist[i * P + p]! - s.centre[p]!) / s.spread[p]!;
  return dist;
}
