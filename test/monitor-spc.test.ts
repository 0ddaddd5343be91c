/**
 * Line monitoring's statistics and its guards against bad input: normal quantile and tail, rank
 * transform, Mann–Whitney, EWMA limits (properties), options validation, hostile model headers and
 * run manifests.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PartscanError } from '../src/errors.js';
import { ewmaLimit, mannWhitney, normalQuantile, normalScore, normalUpperTail, percentileIn } from '../src/monitor/spc.js';
import { LineMonitor } from '../src/monitor/line-monitor.js';
import { buildMonitorReference, parseMonitorReference } from '../src/model/monitor-reference.js';
import { fitDriftModel } from '../src/guards/drift.js';
import { renderControlChart } from '../src/report/control-chart.js';
import type { ModelHeader } from '../src/model/model.js';
import type { RunManifest } from '../src/export/results.js';
import { createSeededRng } from '../src/util/prng.js';

describe('normal distribution', () => {
  it('quantile and upper tail are inverse to each other', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-9, max: 1 - 1e-9, noNaN: true }), (p) => {
        const x = normalQuantile(p);
        expect(1 - normalUpperTail(x)).toBeCloseTo(p, 6);
      }),
    );
  });
  it('matches known values', () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
    expect(normalQuantile(0.5)).toBeCloseTo(0, 12);
    expect(normalUpperTail(3)).toBeCloseTo(0.0013499, 6);
    expect(normalQuantile(0)).toBe(-Infinity);
  });
});

describe('rank transform and Mann–Whitney', () => {
  const sortedArray = fc.array(fc.double({ min: -1e3, max: 1e3, noNaN: true }), { minLength: 1, maxLength: 80 }).map((a) => a.sort((x, y) => x - y));
  it('percentiles are monotone in x and stay inside (0, 1)', () => {
    fc.assert(
      fc.property(sortedArray, fc.double({ min: -2e3, max: 2e3, noNaN: true }), fc.double({ min: 0, max: 100, noNaN: true }), (ref, x, dx) => {
        const p = percentileIn(ref, x);
        expect(p).toBeGreaterThan(0);
        expect(p).toBeLessThan(1);
        expect(percentileIn(ref, x + dx)).toBeGreaterThanOrEqual(p);
        expect(Math.abs(normalScore(ref, x))).toBeLessThanOrEqual(-normalQuantile(0.5 / (ref.length + 1)) + 1e-9);
      }),
    );
  });
  it('auc is ½ for the reference against itself, 1 above it, 0 below it', () => {
    fc.assert(
      fc.property(sortedArray, (ref) => {
        expect(mannWhitney(ref, ref).auc).toBeCloseTo(0.5, 12);
        expect(mannWhitney(ref, ref.map((x) => x + 3000)).auc).toBe(1);
        expect(mannWhitney(ref, ref.map((x) => x - 3000)).auc).toBe(0);
      }),
    );
  });
  it('has the nominal false-positive rate on samples of one distribution', () => {
    const rng = createSeededRng(5);
    const ref = Array.from({ length: 300 }, () => rng.nextNormal()).sort((a, b) => a - b);
    let rejected = 0;
    for (let t = 0; t < 2000; t++) {
      if (mannWhitney(ref, Array.from({ length: 50 }, () => rng.nextNormal())).p < 0.05) rejected++;
    }
    expect(rejected / 2000).toBeGreaterThan(0.03);
    expect(rejected / 2000).toBeLessThan(0.07);
  });
  it('EWMA limits grow with the image count towards L·√(λ/(2−λ))', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.01, max: 1, noNaN: true }), fc.double({ min: 0.5, max: 6, noNaN: true }), fc.integer({ min: 1, max: 500 }), (lambda, L, i) => {
        const asymptote = L * Math.sqrt(lambda / (2 - lambda));
        expect(ewmaLimit(lambda, L, i)).toBeLessThanOrEqual(asymptote + 1e-12);
        expect(ewmaLimit(lambda, L, i + 1)).toBeGreaterThanOrEqual(ewmaLimit(lambda, L, i) - 1e-12);
        expect(ewmaLimit(lambda, L, 1)).toBeCloseTo(L * lambda, 10);
      }),
    );
  });
});

/** A model header with a drift model and a reference built from seeded normal data (no images needed). */
function syntheticHeader(seed: number): ModelHeader {
  const rng = createSeededRng(seed);
  const descriptors = Array.from({ length: 200 }, () => [100 * Math.exp(0.1 * rng.nextNormal()), 20 + rng.nextNormal()]);
  const drift = fitDriftModel(descriptors, { names: ['brightness', 'contrast'] });
  const scores = Array.from({ length: 300 }, () => Math.exp(2.5 + 0.2 * rng.nextNormal()));
  const monitor = buildMonitorReference({ calibrationScores: scores.slice(0, 50), looScores: scores.slice(50), drift, trainingDescriptors: descriptors })!;
  const thresholds = { image: 20, pixel: 20, method: { image: 'manual', pixel: 'manual' }, imageStats: { min: 5, max: 25 }, pixelStats: { min: 1, max: 25 } };
  return { drift, monitor, thresholds } as unknown as ModelHeader;
}

describe('LineMonitor', () => {
  it('refuses invalid options with a typed OPTIONS error naming the field', () => {
    const header = syntheticHeader(1);
    for (const [field, value] of [['window', 3], ['lambda', 0], ['limit', -1], ['clip', Number.NaN], ['alpha', 0.7], ['maxPoints', 0], ['typo', 1]] as const) {
      const err = (() => {
        try {
          new LineMonitor(header, { [field]: value } as never);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(PartscanError);
      expect((err as PartscanError).code).toBe('OPTIONS');
      expect((err as PartscanError).message).toContain(field === 'typo' ? 'typo' : field);
    }
  });

  it('a stationary synthetic stream stays quiet; the same stream 15 % brighter alarms with the reason in percent', () => {
    const header = syntheticHeader(2);
    const rng = createSeededRng(3);
    const d = header.drift!;
    const z = (...x: number[]) => x.map((v, j) => ((d.transform[j] === 'log' ? Math.log(v) : v) - d.center[j]!) / d.scale[j]!);
    const quiet = new LineMonitor(header);
    const loud = new LineMonitor(header);
    for (let i = 0; i < 400; i++) {
      const b = 100 * Math.exp(0.1 * rng.nextNormal());
      const c = 20 + rng.nextNormal();
      const s = Math.exp(2.5 + 0.2 * rng.nextNormal());
      quiet.push({ source: `${i}`, imageScore: s, verdict: s > 20 ? 'NG' : 'OK', drift: { flag: false, score: 0, reasons: [], z: z(b, c) } });
      loud.push({ source: `${i}`, imageScore: s, verdict: s > 20 ? 'NG' : 'OK', drift: { flag: false, score: 0, reasons: [], z: z(b * 1.15, c) } });
    }
    expect(quiet.result().alarm, quiet.result().reasons.join("; ")).toBe(false);
    const r = loud.result();
    expect(r.alarm).toBe(true);
    expect(r.firstAlarmAt!).toBeLessThan(60);
    expect(r.reasons[0]).toMatch(/^brightness beyond the fitted range: \d+ of the last \d+ images \(about \d+ expected\), a median \+\d+ % from the nearest training images/);
  });

  it('keeps at most maxPoints chart points, the most recent, while monitoring every image', () => {
    const mon = new LineMonitor(syntheticHeader(7), { maxPoints: 10 });
    for (let i = 0; i < 57; i++) mon.push({ source: `${i}`, imageScore: 12 });
    const r = mon.result();
    expect(r.images).toBe(57);
    expect(r.points.map((p) => p.index)).toEqual(Array.from({ length: 10 }, (_, k) => 47 + k));
  });

  it('rejects a hostile monitor reference in a model header with MODEL_FORMAT', () => {
    const header = syntheticHeader(4);
    for (const bad of [{ ...header.monitor, scores: [1, 2] }, { ...header.monitor, kind: 'x' }, { ...header.monitor, driftZScale: [-1, 1] }, 'scores']) {
      expect(() => new LineMonitor({ ...header, monitor: bad } as ModelHeader)).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT' }));
    }
    expect(parseMonitorReference({ ...header.monitor, scores: [5, 4, 3, 2, 1] }).scores).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('control chart section', () => {
  const header = syntheticHeader(6);
  const mon = new LineMonitor(header);
  for (let i = 0; i < 30; i++) mon.push({ source: `${i}`, imageScore: 10 + (i % 7), verdict: 'OK', drift: { flag: false, score: 0, reasons: [], z: [0.1, -0.1] } });
  const base = { createdBy: 'partscan', version: '0', model: { path: 'm', thresholds: header.thresholds! }, results: [] } as RunManifest;

  it('escapes every text from the manifest', () => {
    const monitor = { ...mon.result(), alarm: true, firstAlarmAt: 3, reasons: ['<script>alert(1)</script>'], features: ['<img src=x onerror=alert(1)>', 'contrast'] };
    const html = renderControlChart({ ...base, monitor } as RunManifest);
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;script&gt;');
    expect(html.match(/<svg/g)).toHaveLength(2);
  });

  it('leaves the section out for runs without a valid monitor', () => {
    expect(renderControlChart(base)).toBe('');
    expect(renderControlChart({ ...base, monitor: { ...mon.result(), points: [{ index: 'x' }] } } as RunManifest)).toBe('');
  });
});
