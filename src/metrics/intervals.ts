/**
 * Confidence intervals for the rates a line signs off on — the Clopper–Pearson interval of a binomial
 * proportion (escape and false-reject rates counted on labelled parts) — and the distribution functions
 * behind them and behind the tail model's bounds (postprocess/tail-model.ts): the regularised incomplete
 * beta and gamma functions and their inverses.
 *
 * Why hand-written: mathjs (on the project's package list) has lgamma, erf and quantiles but no
 * incomplete beta or gamma function, and importing it costs more than a whole fit's statistics (measured
 * in README, "Dependencies"); these ~150 lines are checked against mathjs as a float64 oracle in
 * test/intervals.test.ts instead.
 */

import { PartscanError } from '../errors.js';

/** Lanczos coefficients (g = 7, n = 9): |relative error| < 2e-15 for x > 0. */
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos approximation; reflection for x < 0.5). */
export function lnGamma(x: number): number {
  if (!(x > 0)) throw new PartscanError('OPTIONS', `lnGamma needs x > 0, got ${x}.`);
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

const EPS = 1e-15;
const TINY = 1e-300;

/** Continued fraction of the incomplete beta function (modified Lentz), valid for x < (a+1)/(a+b+2). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 1000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) break;
  }
  return h;
}

/** The regularised incomplete beta function I_x(a, b) (the Beta(a, b) CDF at x), a, b > 0. */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (!(a > 0 && b > 0)) throw new PartscanError('OPTIONS', `regularizedBeta needs a, b > 0, got a=${a}, b=${b}.`);
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(a, b, x)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** The regularised lower incomplete gamma function P(a, x) (the Gamma(a, 1) CDF at x), a > 0. */
export function regularizedGammaP(a: number, x: number): number {
  if (!(a > 0)) throw new PartscanError('OPTIONS', `regularizedGammaP needs a > 0, got ${a}.`);
  if (x <= 0) return 0;
  const lnFront = -x + a * Math.log(x) - lnGamma(a);
  if (x < a + 1) {
    // Series.
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n <= 10_000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPS) break;
    }
    return Math.min(1, sum * Math.exp(lnFront));
  }
  // Continued fraction for Q(a, x) (modified Lentz).
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i <= 10_000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) break;
  }
  return Math.max(0, 1 - Math.exp(lnFront) * h);
}

/** Inverts an increasing CDF on [lo, hi] by bisection, to double precision relative to the root (which may be tiny). */
function invert(cdf: (x: number) => number, p: number, lo: number, hi: number): number {
  for (let i = 0; i < 2000; i++) {
    const mid = 0.5 * (lo + hi);
    if (hi - lo <= 1e-15 * Math.abs(mid) || mid === lo || mid === hi) break;
    if (cdf(mid) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

function checkProbability(p: number, what: string): void {
  if (!(p >= 0 && p <= 1)) throw new PartscanError('OPTIONS', `${what} must be a probability in [0, 1], got ${p}.`);
}

/** The p-quantile of Beta(a, b). */
export function betaQuantile(p: number, a: number, b: number): number {
  checkProbability(p, 'betaQuantile p');
  if (p === 0) return 0;
  if (p === 1) return 1;
  return invert((x) => regularizedBeta(x, a, b), p, 0, 1);
}

/** The p-quantile of the χ² distribution with `dof` degrees of freedom (= 2 × the Gamma(dof/2, 1) quantile). */
export function chiSquareQuantile(p: number, dof: number): number {
  checkProbability(p, 'chiSquareQuantile p');
  if (!(dof > 0)) throw new PartscanError('OPTIONS', `chiSquareQuantile needs dof > 0, got ${dof}.`);
  if (p === 0) return 0;
  if (p === 1) return Infinity;
  const a = dof / 2;
  let hi = Math.max(1, a);
  while (regularizedGammaP(a, hi) < p) hi *= 2;
  return 2 * invert((x) => regularizedGammaP(a, x), p, 0, hi);
}

/** A proportion with its confidence interval. */
export interface RateInterval {
  /** Observed proportion k / n (NaN when n = 0). */
  rate: number;
  /** Lower confidence bound. */
  lower: number;
  /** Upper confidence bound. */
  upper: number;
  /** Events counted. */
  count: number;
  /** Trials. */
  total: number;
}

/**
 * The Clopper–Pearson ("exact") two-sided interval of a binomial proportion: `count` events in `total`
 * trials at `confidence` (default 0.95). Conservative: it covers the true rate at least `confidence` of
 * the time for every rate, which matters at the small counts a line sees (3 escapes in 40 defects).
 * NaN bounds when `total` is 0.
 */
export function clopperPearson(count: number, total: number, confidence = 0.95): RateInterval {
  if (!(Number.isInteger(count) && Number.isInteger(total) && count >= 0 && total >= count)) {
    throw new PartscanError('OPTIONS', `clopperPearson needs integers 0 ≤ count ≤ total, got ${count} of ${total}.`);
  }
  if (!(confidence > 0 && confidence < 1)) throw new PartscanError('OPTIONS', `confidence must lie in (0, 1), got ${confidence}.`);
  if (total === 0) return { rate: Number.NaN, lower: Number.NaN, upper: Number.NaN, count, total };
  const alpha = 1 - confidence;
  return {
    rate: count / total,
    lower: count === 0 ? 0 : betaQuantile(alpha / 2, count, total - count + 1),
    upper: count === total ? 1 : betaQuantile(1 - alpha / 2, count + 1, total - count),
    count,
    total,
  };
}
