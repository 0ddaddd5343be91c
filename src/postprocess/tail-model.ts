/**
 * The upper tail of good parts' scores, so that a threshold can be set at a stated false-reject rate
 * beyond what the N observed good images resolve (1 % of 200 images is two images).
 *
 * Model: peaks over threshold with an **exponential** tail (the generalised Pareto distribution with
 * shape ξ = 0). Above u, the score of the k-th largest of n out-of-sample good scores (k ≈ 20 % of n), the
 * excesses are taken as exponential with mean β (their maximum-likelihood estimate is the mean excess),
 * so P(score > t) = (k/n)·exp(−(t − u)/β) for t > u; below u the empirical rate is used.
 *
 * Why exponential rather than a GPD with a fitted shape: an image score is the maximum of a blurred
 * map of distances whose squares are roughly χ² per position, and maxima of such light-tailed fields lie
 * in the Gumbel domain of attraction, whose excesses are exponential (ξ = 0). A fitted ξ adds a parameter
 * whose standard error at k = 40 excesses is about 0.16, enough to move a 1 % threshold by half the
 * spread of good scores; on bottle, magnetic tile and the demo the fitted (PWM, clamped ≥ 0) shape was
 * 0.00–0.09 and moved no verdict (docs/THRESHOLDS.md). test/tail-model.test.ts states how well the
 * estimator recovers known quantiles of exponential, log-normal and gamma samples for n = 20 … 2000.
 */

import { PartscanError } from '../errors.js';
import { betaQuantile, chiSquareQuantile, clopperPearson } from '../metrics/intervals.js';
import { empiricalUpperQuantile, upperBound } from '../guards/robust-stats.js';

/** Share of the good scores whose excesses the tail is fitted to. */
export const TAIL_SHARE = 0.2;
/** Fewest excesses a tail is fitted to (with fewer good scores, all but the smallest are used). */
export const MIN_TAIL_EXCEEDANCES = 5;
/** Fewest good scores a tail model accepts. */
export const MIN_TAIL_SCORES = 3;

/** A fitted exponential tail of good scores (plain JSON: it is stored in the model header). */
export interface ExponentialTail {
  /** Tail family. */
  model: 'exponential';
  /** Good scores it was fitted to. */
  n: number;
  /** Scores above `u` (the excesses fitted). */
  exceedances: number;
  /** Tail origin: the (n − exceedances)-th smallest score. */
  u: number;
  /** Mean excess above `u` (the exponential scale; 0 when the top scores are all equal). */
  beta: number;
}

/** A fitted tail plus the sorted scores below it (for rates at thresholds inside the body). */
export interface TailFit extends ExponentialTail {
  /** The good scores, ascending. */
  sorted: Float64Array;
}

/**
 * Fits an exponential tail to good scores: the top {@link TAIL_SHARE} (at least
 * {@link MIN_TAIL_EXCEEDANCES}, at most n − 1) excesses over the next lower score. Throws 'THRESHOLD'
 * with fewer than {@link MIN_TAIL_SCORES} scores or a non-finite one.
 */
export function fitExponentialTail(scores: ArrayLike<number>, share = TAIL_SHARE): TailFit {
  const n = scores.length;
  if (n < MIN_TAIL_SCORES) {
    throw new PartscanError('THRESHOLD', `A tail model needs at least ${MIN_TAIL_SCORES} good scores; got ${n}.`, {
      remedy: 'fit on more good images (20 or more; hundreds for a false-reject target of 1 %)',
    });
  }
  const sorted = Float64Array.from(scores).sort();
  if (!Number.isFinite(sorted[0]!) || !Number.isFinite(sorted[n - 1]!) || sorted.some(Number.isNaN)) {
    throw new PartscanError('THRESHOLD', 'The good scores contain a non-finite value.', { remedy: 'check the model and the images; scores must be finite' });
  }
  const k = Math.min(n - 1, Math.max(MIN_TAIL_EXCEEDANCES, Math.round(share * n)));
  const u = sorted[n - k - 1]!;
  let sum = 0;
  for (let i = n - k; i < n; i++) sum += sorted[i]! - u;
  return { model: 'exponential', n, exceedances: k, u, beta: sum / k, sorted };
}

/** The tail's share of good scores above u (its empirical exceedance probability). */
function zeta(t: ExponentialTail): number {
  return t.exceedances / t.n;
}

/** The score good parts exceed with probability `rate` (0 < rate < 1): the tail's quantile, or the empirical one inside the body. */
export function tailQuantile(fit: TailFit, rate: number): number {
  if (!(rate > 0 && rate < 1)) throw new PartscanError('OPTIONS', `A false-reject rate must lie in (0, 1), got ${rate}.`, { remedy: 'use e.g. 0.01' });
  if (rate < zeta(fit)) return fit.u + fit.beta * Math.log(zeta(fit) / rate);
  // Inside the body: the lowest score with at most ⌊rate·n⌋ good scores above it (never above u, where
  // the tail takes over), so the empirical rate there never exceeds the one asked for.
  return Math.min(fit.u, empiricalUpperQuantile(fit.sorted, rate));
}

/** Number of sorted values strictly above t. */
function countAbove(sorted: Float64Array, t: number): number {
  return sorted.length - upperBound(sorted, 0, sorted.length, t);
}

/** The estimated share of good parts scoring above `threshold` (the false-reject rate there). */
export function tailExceedance(fit: TailFit, threshold: number): number {
  if (threshold > fit.u) return fit.beta > 0 ? zeta(fit) * Math.exp(-(threshold - fit.u) / fit.beta) : 0;
  return countAbove(fit.sorted, threshold) / fit.n;
}

/**
 * A one-sided 95 % upper confidence bound on {@link tailExceedance}. Above u it bounds both parameters at
 * 97.5 % (Bonferroni): the true exceedance probability of u, Beta(k+1, n−k) since u is the
 * (n−k)-th order statistic, and β, since 2kβ̂/β is χ² with 2k degrees of freedom for exponential
 * excesses. Inside the body it is the Clopper–Pearson bound of the count above the threshold.
 */
export function tailExceedanceUpper95(fit: TailFit, threshold: number): number {
  const { n, exceedances: k } = fit;
  if (threshold > fit.u) {
    if (!(fit.beta > 0)) return 0;
    const zetaUpper = betaQuantile(0.975, k + 1, n - k);
    const betaUpper = (2 * k * fit.beta) / chiSquareQuantile(0.025, 2 * k);
    return Math.min(1, zetaUpper * Math.exp(-(threshold - fit.u) / betaUpper));
  }
  return clopperPearson(countAbove(fit.sorted, threshold), n, 0.9).upper;
}

/** The plain-JSON tail (without the sorted scores), as stored in a model header. */
export function tailSummary(fit: TailFit): ExponentialTail {
  const { sorted: _s, ...tail } = fit;
  return tail;
}
