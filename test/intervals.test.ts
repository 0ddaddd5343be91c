/**
 * The distribution functions behind the rate intervals (src/metrics/intervals.ts), checked against
 * mathjs as a float64 oracle (lgamma, combinations) and against their defining properties.
 */
import fc from 'fast-check';
import { combinations, lgamma } from 'mathjs';
import { describe, expect, it } from 'vitest';
import { betaQuantile, chiSquareQuantile, clopperPearson, lnGamma, regularizedBeta, regularizedGammaP } from '../src/metrics/intervals.js';

/** P(X ≤ k) for X ~ Binomial(n, p), summed exactly with mathjs's binomial coefficients (n ≤ 60). */
function binomialCdf(k: number, n: number, p: number): number {
  let s = 0;
  for (let i = 0; i <= k; i++) s += Number(combinations(n, i)) * p ** i * (1 - p) ** (n - i);
  return s;
}

/** Simpson's rule on [a, b] with m (even) intervals. */
function simpson(f: (x: number) => number, a: number, b: number, m = 20_000): number {
  const h = (b - a) / m;
  let s = f(a) + f(b);
  for (let i = 1; i < m; i++) s += (i % 2 ? 4 : 2) * f(a + i * h);
  return (s * h) / 3;
}

describe('lnGamma', () => {
  // mathjs's own lgamma is good to about 1e-12 relative below x = 0.5 (checked against mpmath), so that is the bar.
  it('agrees with mathjs lgamma to 1e-11 relative over (0, 1000]', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-3, max: 1000, noNaN: true }), (x) => {
        const want = lgamma(x) as number;
        expect(Math.abs(lnGamma(x) - want)).toBeLessThanOrEqual(1e-11 * Math.max(1, Math.abs(want)));
      }),
      { seed: 22, numRuns: 300 },
    );
  });
  it('refuses x ≤ 0 with a typed error', () => {
    expect(() => lnGamma(0)).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
  });
});

describe('regularizedBeta / regularizedGammaP', () => {
  it('equal the binomial CDF identity P(X ≤ k) = I_{1−p}(n−k, k+1)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.double({ min: 0.001, max: 0.999, noNaN: true }), fc.nat(), (n, p, kRaw) => {
        const k = kRaw % n;
        expect(regularizedBeta(1 - p, n - k, k + 1)).toBeCloseTo(binomialCdf(k, n, p), 10);
      }),
      { seed: 7, numRuns: 200 },
    );
  });
  it('P(a, x) equals the integral of the Gamma(a) density (Simpson, mathjs lgamma)', () => {
    // a ≥ 1: the density is bounded at 0, so Simpson's rule converges (series and continued-fraction branches both hit).
    for (const [a, x] of [[1, 0.7], [2, 1.5], [7.5, 9], [40, 35], [3, 12], [1.5, 0.01]] as const) {
      const density = (t: number) => (t <= 0 ? (a === 1 ? 1 : 0) : Math.exp((a - 1) * Math.log(t) - t - (lgamma(a) as number)));
      expect(regularizedGammaP(a, x)).toBeCloseTo(simpson(density, 0, x), 8);
    }
  });
  it('are 0 and 1 at the ends', () => {
    expect(regularizedBeta(0, 2, 3)).toBe(0);
    expect(regularizedBeta(1, 2, 3)).toBe(1);
    expect(regularizedGammaP(2, 0)).toBe(0);
  });
});

describe('quantiles', () => {
  // Where the CDF is steep (a, b < 1 near 0 or 1) the root cannot be closer than a few ulps: the test
  // asks that the CDF brackets p within 4 ulps of the returned quantile.
  it('betaQuantile inverts regularizedBeta (to a few ulps)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.2, max: 200, noNaN: true }), fc.double({ min: 0.2, max: 200, noNaN: true }), fc.double({ min: 0.001, max: 0.999, noNaN: true }), (a, b, p) => {
        const x = betaQuantile(p, a, b);
        const ulp = Number.EPSILON * Math.max(x, 1e-300);
        expect(regularizedBeta(x - 4 * ulp, a, b)).toBeLessThanOrEqual(p + 1e-12);
        expect(regularizedBeta(Math.min(1, x + 4 * ulp), a, b)).toBeGreaterThanOrEqual(p - 1e-12);
      }),
      { seed: 3, numRuns: 200 },
    );
  });
  it('chiSquareQuantile matches known table values', () => {
    // Abramowitz & Stegun table 26.8.
    expect(chiSquareQuantile(0.95, 1)).toBeCloseTo(3.841459, 5);
    expect(chiSquareQuantile(0.975, 10)).toBeCloseTo(20.483177, 5);
    expect(chiSquareQuantile(0.025, 84)).toBeCloseTo(60.539811, 4);
  });
});

describe('clopperPearson', () => {
  it('has its bounds where the binomial tail probabilities are α/2 (exact definition)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.nat(), (n, kRaw) => {
        const k = kRaw % (n + 1);
        const ci = clopperPearson(k, n);
        expect(ci.rate).toBe(k / n);
        expect(ci.lower).toBeLessThanOrEqual(k / n);
        expect(ci.upper).toBeGreaterThanOrEqual(k / n);
        // Upper: P(X ≤ k | upper) = 0.025; lower: P(X ≥ k | lower) = 0.025.
        if (k < n) expect(binomialCdf(k, n, ci.upper)).toBeCloseTo(0.025, 8);
        else expect(ci.upper).toBe(1);
        if (k > 0) expect(1 - binomialCdf(k - 1, n, ci.lower)).toBeCloseTo(0.025, 8);
        else expect(ci.lower).toBe(0);
      }),
      { seed: 11, numRuns: 200 },
    );
  });
  it('gives NaN bounds for no trials and refuses counts that do not fit', () => {
    expect(clopperPearson(0, 0).upper).toBeNaN();
    for (const [k, n] of [[3, 2], [-1, 5], [1.5, 4]] as const) {
      expect(() => clopperPearson(k, n)).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
    }
    expect(() => clopperPearson(1, 4, 1)).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
  });
});
