/**
 * Threshold rules on calibration scores, the building blocks of the operating point
 * (operating-point.ts, which chooses among them and records what the thresholds promise):
 * - **F1-adaptive** (anomalib's default) when labelled defective parts are available: the cut that
 *   maximises F1 over the precision/recall curve, separately for image scores and pixel scores.
 * - **Good-only** rules on the distribution of good scores ({@link DEFAULT_GOOD_RULE}), partscan ≤ 0.1's
 *   default, kept as an option (`thresholdRule: { kind: 'sigma', k: 3 }`).
 *
 * Thresholds sit strictly between distinct calibration scores, or at the worst good score for the
 * good-only floor (the "strictly above" convention of thresholds.ts).
 */

import { PartscanError } from '../errors.js';
import { sortedQuantile } from '../guards/robust-stats.js';
import { bestF1Cut, type F1Cut } from '../metrics/pr-sweep.js';
import type { GoodOnlyRule } from './thresholds.js';

/**
 * Default good-only rule: **max(mean + 3σ, worst good score)**.
 *
 * Why: on a production line the expensive error during commissioning is the false reject — an
 * operator who sees good parts rejected stops trusting the station. So the threshold must not
 * reject any of the good calibration parts (the floor at the max), and should leave headroom for
 * good parts not yet seen (mean + 3σ extrapolates past the observed max when the calibration set is
 * large and well-behaved). A high quantile alone does not help: with the 10–50 images a factory
 * typically calibrates on, the 0.99 quantile is just (an interpolation towards) the max, and
 * anomaly scores are right-skewed, so mean + 3σ alone can fall inside the good distribution on
 * small sets — hence both together. Applied to pooled pixel scores the floor is the hottest good
 * pixel, which (since the image score is the map's maximum) is consistent with the image
 * threshold: good parts show no regions. The price is sensitivity; calibrate with labelled
 * defects (F1-adaptive) as soon as some are available.
 */
export const DEFAULT_GOOD_RULE: GoodOnlyRule = { kind: 'sigma', k: 3, floorAtMax: true };

/** The threshold that maximises F1, with the precision and recall at that cut (scores strictly above it are predicted anomalous). */
export type F1Threshold = F1Cut;

/** Throws 'THRESHOLD' naming the first non-finite value of `values` (`what`: e.g. 'good image scores'). */
export function checkFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new PartscanError('THRESHOLD', `The ${what} contain a non-finite value (${values[i]}) at index ${i}.`, {
        remedy: 'check the model and the calibration images; scores must be finite numbers',
      });
    }
  }
}

function checkRule(rule: GoodOnlyRule): void {
  const ok =
    rule.kind === 'quantile'
      ? Number.isFinite(rule.q) && rule.q >= 0 && rule.q <= 1
      : rule.kind === 'sigma' && Number.isFinite(rule.k) && rule.k >= 0;
  if (!ok) {
    throw new PartscanError('OPTIONS', `Invalid good-only threshold rule ${JSON.stringify(rule)}.`, {
      remedy: "use {kind: 'quantile', q} with 0 ≤ q ≤ 1 or {kind: 'sigma', k} with k ≥ 0",
    });
  }
}

/** The q-quantile of ascending-sorted values, interpolating linearly between order statistics (R type 7, NumPy's default). */
export function quantileSorted(sortedAsc: ArrayLike<number>, q: number): number {
  if (sortedAsc.length === 0) throw new PartscanError('THRESHOLD', 'Cannot take a quantile of no values.');
  return sortedQuantile(sortedAsc, 0, sortedAsc.length, q);
}

/** Running mean / variance / extremes (Welford), numerically stable over millions of pixels. */
class Moments {
  n = 0;
  mean = 0;
  private m2 = 0;
  min = Infinity;
  max = -Infinity;
  add(x: number): void {
    this.n++;
    const d = x - this.mean;
    this.mean += d / this.n;
    this.m2 += d * (x - this.mean);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }
  /** Sample standard deviation (0 for fewer than two values). */
  get std(): number {
    return this.n > 1 ? Math.sqrt(this.m2 / (this.n - 1)) : 0;
  }
}

function sigmaThreshold(m: Moments, rule: { k: number; floorAtMax?: boolean }): number {
  const t = m.mean + rule.k * m.std;
  return rule.floorAtMax === false ? t : Math.max(t, m.max);
}

/**
 * Image threshold from good parts only, by `rule` (default {@link DEFAULT_GOOD_RULE}: max(mean + 3σ,
 * worst good score) — see there for why). Throws 'THRESHOLD' when `scores` is empty or not finite.
 */
export function thresholdFromGood(scores: ArrayLike<number>, rule: GoodOnlyRule = DEFAULT_GOOD_RULE): number {
  checkRule(rule);
  if (scores.length === 0) {
    throw new PartscanError('THRESHOLD', 'Cannot calibrate a threshold: there are no good calibration scores.', {
      remedy: 'provide at least one good calibration image (ideally 20 or more)',
    });
  }
  checkFinite(scores, 'good calibration scores');
  if (rule.kind === 'quantile') return quantileSorted(Float64Array.from(scores).sort(), rule.q);
  const m = new Moments();
  for (let i = 0; i < scores.length; i++) m.add(scores[i]!);
  return sigmaThreshold(m, rule);
}

/** Default cap on pooled pixel scores kept for sorting (larger pools are subsampled with a fixed stride). */
export const DEFAULT_MAX_POOLED_PIXELS = 8_000_000;

/**
 * Pixel threshold from the pooled pixel scores of good calibration maps, by `rule` (default
 * {@link DEFAULT_GOOD_RULE}). The sigma rule streams over all pixels (exact, no copy); the quantile
 * rule sorts a Float32Array pool, subsampled with a deterministic stride when the pool exceeds
 * `maxPooled` values (default 8 M ≈ 120 maps of 256×256; the quantile error from a uniform stride is
 * far below the map's own noise).
 */
export function pixelThresholdFromGood(
  maps: readonly ArrayLike<number>[],
  rule: GoodOnlyRule = DEFAULT_GOOD_RULE,
  maxPooled = DEFAULT_MAX_POOLED_PIXELS,
): number {
  checkRule(rule);
  const total = maps.reduce((s, m) => s + m.length, 0);
  if (total === 0) {
    throw new PartscanError('THRESHOLD', 'Cannot calibrate a pixel threshold: there are no good calibration maps.', {
      remedy: 'provide the anomaly maps of at least one good calibration image',
    });
  }
  for (const m of maps) checkFinite(m, 'good calibration pixel scores');
  if (rule.kind === 'sigma') {
    const moments = new Moments();
    for (const m of maps) for (let i = 0; i < m.length; i++) moments.add(m[i]!);
    return sigmaThreshold(moments, rule);
  }
  const stride = Math.max(1, Math.ceil(total / Math.max(1, maxPooled)));
  const pool = new Float32Array(Math.ceil(total / stride));
  let n = 0;
  let k = 0;
  for (const m of maps) {
    for (let i = 0; i < m.length; i++, k++) if (k % stride === 0) pool[n++] = m[i]!;
  }
  return quantileSorted(pool.subarray(0, n).sort(), rule.q);
}

function noPositives(what: string): PartscanError {
  return new PartscanError('THRESHOLD', `F1-adaptive threshold needs at least one defective ${what}; none was given.`, {
    remedy: 'add labelled defective samples, or use a good-only threshold rule',
  });
}

/**
 * The threshold maximising F1 over all distinct cut points of `scores` against `labels`
 * (1/true = defective), O(n log n). Throws 'THRESHOLD' when there is no positive label (the caller
 * falls back to a good-only rule, see {@link selectThresholds}) or a score is not finite, 'OPTIONS'
 * when the lengths differ.
 */
export function f1AdaptiveThreshold(scores: ArrayLike<number>, labels: ArrayLike<0 | 1 | boolean>): F1Threshold {
  if (scores.length !== labels.length) {
    throw new PartscanError('OPTIONS', `Got ${scores.length} scores but ${labels.length} labels.`, {
      remedy: 'pass one label per score',
    });
  }
  checkFinite(scores, 'calibration scores');
  let nPos = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i]) nPos++;
  if (nPos === 0) throw noPositives('sample');
  const pos = new Float64Array(nPos);
  const neg = new Float64Array(scores.length - nPos);
  let p = 0;
  let q = 0;
  for (let i = 0; i < scores.length; i++) {
    if (labels[i]) pos[p++] = scores[i]!;
    else neg[q++] = scores[i]!;
  }
  return bestF1Cut(pos.sort(), neg.sort());
}

/**
 * F1-adaptive pixel threshold over pooled pixels: every pixel of `goodMaps` is a negative, pixels of
 * `defectMaps` are positive where the matching ground-truth mask is non-zero. Throws 'MASK' when a
 * mask's size differs from its map, 'THRESHOLD' when no mask has a defect pixel.
 */
export function pixelF1Threshold(
  goodMaps: readonly ArrayLike<number>[],
  defectMaps: readonly ArrayLike<number>[],
  defectMasks: readonly ArrayLike<number>[],
): F1Threshold {
  if (defectMaps.length !== defectMasks.length) {
    throw new PartscanError('MASK', `Got ${defectMaps.length} defect maps but ${defectMasks.length} ground-truth masks.`, {
      remedy: 'pass one ground-truth mask per defective calibration image',
    });
  }
  let nPos = 0;
  let nNeg = 0;
  for (const m of goodMaps) {
    checkFinite(m, 'good calibration pixel scores');
    nNeg += m.length;
  }
  defectMaps.forEach((m, k) => {
    const mask = defectMasks[k]!;
    if (mask.length !== m.length) {
      throw new PartscanError(
        'MASK',
        `Ground-truth mask ${k} has ${mask.length} pixels but its anomaly map has ${m.length}.`,
        { remedy: 'resize the masks to the anomaly-map size (nearest neighbour) before calibrating' },
      );
    }
    checkFinite(m, 'defect calibration pixel scores');
    for (let i = 0; i < mask.length; i++) if (mask[i]) nPos++;
    nNeg += m.length;
  });
  nNeg -= nPos;
  if (nPos === 0) throw noPositives('pixel (all ground-truth masks are empty)');
  const pos = new Float32Array(nPos);
  const neg = new Float32Array(nNeg);
  let p = 0;
  let q = 0;
  for (const m of goodMaps) for (let i = 0; i < m.length; i++) neg[q++] = m[i]!;
  defectMaps.forEach((m, k) => {
    const mask = defectMasks[k]!;
    for (let i = 0; i < m.length; i++) {
      if (mask[i]) pos[p++] = m[i]!;
      else neg[q++] = m[i]!;
    }
  });
  return bestF1Cut(pos.sort(), neg.sort());
}

/** Human-readable form of a good-only rule, for messages. */
export function describeRule(rule: GoodOnlyRule): string {
  return rule.kind === 'quantile'
    ? `${rule.q} quantile of good scores`
    : `mean + ${rule.k}σ of good scores${rule.floorAtMax === false ? '' : ', at least the worst good score'}`;
}
