/**
 * The descriptor envelope of line monitoring (src/monitor/envelope.ts) and the charts built on it:
 * nearest-neighbour maths as properties against brute force, the share of good images beyond the
 * envelope, quiet sub-populations of a mixture, the practical floor, and hostile stored envelopes.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fitDriftModel } from '../src/guards/drift.js';
import { DescriptorEnvelope, ENVELOPE_TAIL, nearestRange } from '../src/monitor/envelope.js';
import { LineMonitor, type MonitorInput } from '../src/monitor/line-monitor.js';
import { buildMonitorReference, ENVELOPE_MAX_IMAGES } from '../src/model/monitor-reference.js';
import type { ModelHeader } from '../src/model/model.js';
import { createSeededRng } from '../src/util/prng.js';

describe('nearestRange', () => {
  const sorted = fc.array(fc.double({ min: -100, max: 100, noNaN: true }), { minLength: 2, maxLength: 60 }).map((a) => Float64Array.from(a).sort());

  it('finds the distance to the k-th nearest value, with and without leaving one out (brute force)', () => {
    fc.assert(
      fc.property(sorted, fc.double({ min: -150, max: 150, noNaN: true }), fc.integer({ min: 1, max: 10 }), fc.nat(), (col, x, k, s) => {
        const skip = s % col.length;
        for (const [value, leaveOut] of [[x, -1], [col[skip]!, skip]] as const) {
          const others = [...col].filter((_, i) => i !== leaveOut).map((v) => Math.abs(v - value)).sort((a, b) => a - b);
          const want = others[Math.min(k, others.length) - 1]!;
          const got = nearestRange(col, value, k, leaveOut);
          expect(got.farthest).toBeCloseTo(want, 9);
          // The range holds the k nearest (and the left-out index, which it may span).
          expect(got.hi - got.lo - (leaveOut >= got.lo && leaveOut < got.hi ? 1 : 0)).toBe(Math.min(k, others.length));
        }
      }),
    );
  });
});

/** A drift model and envelope over seeded training descriptors [brightness, contrast]. */
function envelopeOf(rows: number[][]) {
  const drift = fitDriftModel(rows, { names: ['brightness', 'contrast'] });
  const z = rows.map((r) => r.map((v, j) => (Math.log(v) - drift.center[j]!) / drift.scale[j]!));
  return { drift, z, envelope: new DescriptorEnvelope(z, drift) };
}

describe('DescriptorEnvelope', () => {
  const rng = createSeededRng(11);
  // A mixture of three setups, 25 % apart in brightness, as magnetic tile's capture setups are.
  const setup = (k: number): number[] => [100 * 1.25 ** k * Math.exp(0.08 * rng.nextNormal()), 30 * Math.exp(0.1 * rng.nextNormal())];
  const train = Array.from({ length: 600 }, (_, i) => setup(i % 3));
  const { drift, envelope } = envelopeOf(train);
  const zOf = (r: number[]): number[] => r.map((v, j) => (Math.log(v) - drift.center[j]!) / drift.scale[j]!);
  const shareBeyond = (rows: number[][]): number => rows.filter((r) => envelope.observe(zOf(r)).beyond[0]).length / rows.length;

  it('puts about the design share of the training images beyond it (leave-one-out), and as many new good images of any one setup', () => {
    expect(envelope.expectedShare[0]).toBeGreaterThan(ENVELOPE_TAIL - 0.01);
    expect(envelope.expectedShare[0]).toBeLessThanOrEqual(ENVELOPE_TAIL);
    for (const k of [0, 1, 2]) expect(shareBeyond(Array.from({ length: 400 }, () => setup(k)))).toBeLessThan(0.2);
    // A fourth setup, 25 % brighter than the brightest: mostly beyond.
    expect(shareBeyond(Array.from({ length: 400 }, () => setup(3)))).toBeGreaterThan(0.5);
  });

  it('offsets are the distance from the nearest tenth of the training values, in ln units', () => {
    const far = envelope.observe(zOf([100 * 1.25 ** 2 * 1.5, 30]));
    expect(far.beyond[0]).toBe(true);
    expect(far.offset[0]).toBeGreaterThan(Math.log(1.3));
    expect(Math.abs(envelope.observe(zOf([125, 30])).offset[0]!)).toBeLessThan(0.03);
  });

  it('a descriptor that never varied (grayscale colour ratio) has no image beyond it until it changes', () => {
    const flat = new DescriptorEnvelope(Array.from({ length: 50 }, () => [0]), { scale: [0.015] });
    expect(flat.expectedShare[0]).toBe(0);
    expect(flat.observe([0]).beyond[0]).toBe(false);
    expect(flat.observe([2]).beyond[0]).toBe(true);
  });
});

/** A header whose training set is the three-setup mixture above, with scores of a log-normal reference. */
function mixtureHeader(seed: number, spread = 0.08): { header: ModelHeader; setup: (k: number) => number[] } {
  const rng = createSeededRng(seed);
  const setup = (k: number): number[] => [100 * 1.25 ** k * Math.exp(spread * rng.nextNormal()), 30 * Math.exp(0.1 * rng.nextNormal())];
  const descriptors = Array.from({ length: 600 }, (_, i) => setup(i % 3));
  const drift = fitDriftModel(descriptors, { names: ['brightness', 'contrast'] });
  // As many out-of-sample scores as training images, as a fit stores.
  const scores = Array.from({ length: 600 }, () => Math.exp(2.5 + 0.2 * rng.nextNormal()));
  const monitor = buildMonitorReference({ calibrationScores: [], looScores: scores, drift, trainingDescriptors: descriptors })!;
  return { header: { drift, monitor } as unknown as ModelHeader, setup };
}

function stream(header: ModelHeader, rows: number[][], seed: number): MonitorInput[] {
  const rng = createSeededRng(seed);
  const d = header.drift!;
  return rows.map((r, i) => ({
    source: `${i}`,
    imageScore: Math.exp(2.5 + 0.2 * rng.nextNormal()),
    drift: { flag: false, score: 0, reasons: [], z: r.map((v, j) => (Math.log(v) - d.center[j]!) / d.scale[j]!) },
  }));
}

describe('envelope charts', () => {
  it('stay quiet on a long run of any one fitted setup, and alarm on a setup beyond them', () => {
    const { header, setup } = mixtureHeader(3);
    for (const k of [0, 1, 2]) {
      const mon = new LineMonitor(header);
      for (const r of stream(header, Array.from({ length: 1000 }, () => setup(k)), k)) mon.push(r);
      expect(mon.result().alarm, `setup ${k}: ${mon.result().reasons.join('; ')}`).toBe(false);
    }
    const mon = new LineMonitor(header);
    const rows = [...Array.from({ length: 100 }, (_, i) => setup(i % 3)), ...Array.from({ length: 100 }, () => setup(3))];
    stream(header, rows, 9).forEach((r, i) => mon.push(r, i));
    const r = mon.result();
    expect(r.firstAlarmAt!).toBeGreaterThanOrEqual(100);
    expect(r.firstAlarmAt!).toBeLessThan(150);
    expect(r.reasons[0]).toMatch(/^brightness beyond the fitted range: \d+ of the last 50 images \(about 5 expected\), a median \+1\d % from the nearest training images/);
  });

  it('alarm on a shift beyond a uniform training set only when it is larger than minShift', () => {
    const { header, setup } = mixtureHeader(4, 0.005);
    const shifted = (f: number) => stream(header, Array.from({ length: 300 }, () => setup(1)).map(([b, c]) => [b! * f, c!]), 5);
    for (const [f, minShift, alarms] of [[1.02, undefined, false], [1.02, 0.01, true], [1.05, undefined, true]] as const) {
      const mon = new LineMonitor(header, minShift === undefined ? {} : { minShift: { brightness: minShift } });
      for (const r of shifted(f)) mon.push(r);
      expect(mon.result().alarm, `×${f}, minShift ${minShift}: ${mon.result().reasons.join('; ')}`).toBe(alarms);
    }
  });
});

describe('the stored envelope', () => {
  const { header } = mixtureHeader(6);

  it('holds at most ENVELOPE_MAX_IMAGES rows, evenly spaced', () => {
    const rng = createSeededRng(1);
    const descriptors = Array.from({ length: ENVELOPE_MAX_IMAGES + 501 }, () => [100 * Math.exp(0.1 * rng.nextNormal()), 30]);
    const drift = fitDriftModel(descriptors, { names: ['brightness', 'contrast'] });
    const ref = buildMonitorReference({ calibrationScores: [], looScores: [1, 2, 3, 4, 5, 6], drift, trainingDescriptors: descriptors })!;
    expect(ref.envelope!.z).toHaveLength(ENVELOPE_MAX_IMAGES);
  });

  it('a hostile envelope is a typed MODEL_FORMAT error, not a crash', () => {
    const env = header.monitor!.envelope!;
    for (const envelope of [{ z: env.z.map((row) => [...row, 1]) }, { z: [[Number.NaN, 1], ...env.z] }, { z: env.z.slice(0, 3) }, { z: 'rows' }]) {
      expect(() => new LineMonitor({ ...header, monitor: { ...header.monitor!, envelope } } as ModelHeader)).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT' }));
    }
    expect(() => new LineMonitor({ ...header, drift: undefined } as unknown as ModelHeader)).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT' }));
  });
});
