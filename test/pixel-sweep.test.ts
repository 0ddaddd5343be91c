/**
 * evaluateRun's pixel metrics from one binning of the run's pixels (src/metrics/pixel-sweep.ts)
 * against the exact per-subset pixelAuroc / aupro, for the whole run and every defect type:
 * - exact (AUROC to the bit, AUPRO to float rounding) when no bin holds two distinct scores;
 * - within the 1e-3 on real-valued maps with real bottle masks;
 * - for hostile scores (few values over the whole float range, ±0, ±Inf, denormals, neighbours one
 *   ulp apart): equal to the exact metrics of the bin-rounded scores, within the data-dependent bound
 *   of the file header, and exact wherever the documented separation holds. No fixed bound holds
 *   there: two scores one ulp apart share a bin (last test).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { aupro, pixelAuroc } from '../src/metrics/index.js';
import { evaluateRun, type EvaluationItem } from '../src/metrics/evaluate.js';
import { binPixels, MAX_SCORE_BINS, MIN_BIN_SHIFT, type BinnedPixels } from '../src/metrics/pixel-sweep.js';
import { loadDataset } from '../src/data/loaders.js';
import { loadMask } from '../src/preprocess/preprocess.js';
import { BOTTLE } from './helpers/shared.js';

/** [pixel AUROC, AUPRO] of the whole run and of good + each defect type. */
interface PerSet {
  overall: [number, number];
  perType: Record<string, [number, number]>;
}

/** The exact metrics: each subset's pixels flattened and sorted on their own. */
function perSubset(items: EvaluationItem[], fprLimit: number): PerSet {
  const of = (set: EvaluationItem[]): [number, number] => {
    const w = set.filter((it) => it.map);
    if (w.length === 0) return [NaN, NaN];
    const maps = w.map((it) => it.map!);
    const masks = w.map((it) => it.mask);
    const anomalous = w.map((it) => it.anomalous);
    const sizes = w.map((it) => ({ width: it.width!, height: it.height! }));
    return [pixelAuroc(maps, masks, { anomalous }), aupro(maps, masks, sizes, fprLimit, { anomalous })];
  };
  const good = items.filter((it) => !it.anomalous);
  const perType: Record<string, [number, number]> = {};
  for (const t of new Set(items.filter((it) => it.anomalous).map((it) => it.label))) perType[t] = of([...good, ...items.filter((it) => it.anomalous && it.label === t)]);
  return { overall: of(items), perType };
}

/** The binned metrics, as evaluateRun reports them. */
function binned(items: EvaluationItem[], fprLimit: number): PerSet {
  const run = evaluateRun(items, { fprLimit });
  const perType: Record<string, [number, number]> = {};
  for (const [t, m] of Object.entries(run.perDefect)) perType[t] = [m.pixelAuroc, m.aupro];
  return { overall: [run.pixelAuroc, run.aupro], perType };
}

function expectWithin(got: PerSet, ref: PerSet, aurocTol: number, auproTol: number): void {
  const close = (a: number, b: number, tol: number): void => {
    if (Number.isNaN(b)) expect(a).toBeNaN();
    else expect(Math.abs(a - b)).toBeLessThanOrEqual(tol);
  };
  expect(Object.keys(got.perType).sort()).toEqual(Object.keys(ref.perType).sort());
  for (const [name, [a, p]] of [['overall', ref.overall], ...Object.entries(ref.perType)] as [string, [number, number]][]) {
    const [ga, gp] = name === 'overall' ? got.overall : got.perType[name]!;
    close(ga, a, aurocTol);
    close(gp, p, auproTol);
  }
}

/** The run's BinnedPixels, built as evaluateRun builds it. */
function binsOf(items: EvaluationItem[]): BinnedPixels {
  return binPixels(
    items.map((it) => it.map),
    items.map((it) => it.mask),
    items.map((it) => (it.map ? { width: it.width!, height: it.height! } : undefined)),
    items.map((it) => it.anomalous),
  );
}

/** Each pixel's score replaced by its bin (< 2^20, exact in float32): the scores rounded to bins. */
function binRounded(items: EvaluationItem[], bp: BinnedPixels): EvaluationItem[] {
  return items.map((it, i) => {
    const [s, e] = [bp.start[i]!, bp.start[i + 1]!];
    return s === e ? it : { ...it, map: Float32Array.from(bp.bin.subarray(s, e)) };
  });
}

/**
 * The file header's bound on |binned − exact| for the whole run: over the bins holding several
 * distinct scores, Σ Δpositives·Δnegatives / 2 (AUROC) and Σ ΔFPR·ΔPRO / fprLimit (AUPRO); and the
 * number of such bins.
 */
function errorBound(items: EvaluationItem[], bp: BinnedPixels, fprLimit: number): { bound: [number, number]; mixedBins: number } {
  // Per occupied bin: its first score, whether it holds another, negatives, positives, overlap.
  const bins = new Map<number, { first: number; mixed: boolean; neg: number; pos: number; overlap: number }>();
  let [N, P] = [0, 0];
  items.forEach((it, i) => {
    for (let j = bp.start[i]!; j < bp.start[i + 1]!; j++) {
      const v = it.map![j - bp.start[i]!]!;
      const b = bp.bin[j]!;
      let c = bins.get(b);
      if (!c) bins.set(b, (c = { first: v, mixed: false, neg: 0, pos: 0, overlap: 0 }));
      else if (c.first !== v) c.mixed = true;
      const r = bp.region[j]!;
      if (r < 0) {
        c.neg++;
        N++;
      } else {
        c.pos++;
        P++;
        c.overlap += bp.inverseRegionSize[r]!;
      }
    }
  });
  const R = bp.regions.reduce((s, x) => s + x, 0);
  const mixed = [...bins.values()].filter((c) => c.mixed);
  return {
    bound: [mixed.reduce((s, c) => s + ((c.pos / P) * (c.neg / N)) / 2, 0), mixed.reduce((s, c) => s + ((c.neg / N) * (c.overlap / R)) / fprLimit, 0)],
    mixedBins: mixed.length,
  };
}

const lcg = (seed: number): (() => number) => {
  let a = seed;
  return () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32);
};

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The float32 `steps` bit patterns above `v` (NaN past +Infinity). */
function bitNeighbour(v: number, steps: number): number {
  f32[0] = v;
  u32[0] = (u32[0]! + steps) >>> 0;
  return f32[0]!;
}

const itemArb = fc.record({
  w: fc.integer({ min: 2, max: 9 }),
  h: fc.integer({ min: 2, max: 9 }),
  type: fc.constantFrom('good', 'crack', 'hole'),
  withMask: fc.boolean(),
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
});

type ItemSpec = typeof itemArb extends fc.Arbitrary<infer T> ? T : never;

/** Items of random sizes and types whose pixels take the values `score(defect, rnd)`. */
function makeItems(specs: ItemSpec[], score: (defect: boolean, rnd: () => number) => number): EvaluationItem[] {
  return specs.map((s) => {
    const rnd = lcg(s.seed);
    const n = s.w * s.h;
    const mask = new Uint8Array(n);
    const anomalous = s.type !== 'good';
    if (anomalous) for (let i = 0; i < n; i++) mask[i] = rnd() < 0.3 ? 1 : 0;
    const map = new Float32Array(n);
    for (let i = 0; i < n; i++) map[i] = score(mask[i] === 1, rnd);
    return { label: s.type, anomalous, imageScore: rnd(), map, width: s.w, height: s.h, ...(s.withMask ? { mask } : {}) };
  });
}

describe('pixel metrics from one binning (evaluateRun)', () => {
  it('equal the exact metrics on random runs with ties, masks missing, several types, any scale and sign', () => {
    fc.assert(
      fc.property(
        fc.array(itemArb, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 2, max: 12 }), // few distinct levels: many ties
        fc.constantFrom(1, 1e-3, 1e6, 2 ** -100),
        fc.constantFrom(0, -7, 3),
        fc.constantFrom(0.3, 1, 0.05),
        (specs, levels, scale, offset, fprLimit) => {
          const items = makeItems(specs, (defect, rnd) => (offset + Math.floor(rnd() * levels) + (defect ? Math.floor(rnd() * 3) : 0)) * scale);
          // Distinct scores differ by ≥ 1/16 of the larger (levels ≤ 14, |offset| ≤ 7): far apart at the
          // bins' ≤ 2^−11 resolution, so every bin holds one score and binning is exact: tolerance 0 for
          // the AUROC (integer counts), float rounding for the AUPRO — tighter than the 1e-3.
          expectWithin(binned(items, fprLimit), perSubset(items, fprLimit), 0, 1e-12);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('are exact when every distinct score has its own bin, neighbours one bin apart', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { minLength: 1, maxLength: 8 }), fc.constantFrom(0.3, 1, 0.05), (specs, fprLimit) => {
        // Scores over 7 octaves (shift 8), each rounded down to a multiple of 2^8 bit patterns: a bin's
        // lower edge. Distinct scores then lie in distinct bins, often adjacent ones.
        const items = makeItems(specs, (defect, rnd) => {
          f32[0] = 0.5 * 2 ** (7 * rnd()) * (defect ? 1 + rnd() : 1);
          u32[0] = u32[0]! & ~0xff;
          return f32[0]!;
        });
        const bp = binsOf(items);
        expect(bp.shift).toBe(MIN_BIN_SHIFT);
        expect(errorBound(items, bp, fprLimit).mixedBins).toBe(0);
        expectWithin(binned(items, fprLimit), perSubset(items, fprLimit), 0, 1e-12);
      }),
      { numRuns: 200 },
    );
  });

  it('hostile scores: exact metrics of the bin-rounded scores, within the bound, exact where separated', () => {
    const special = [0, -0, 1e-30, -1e-30, 1e30, -1e30, 1, -2.5, 1.401298464324817e-45, 1.1754943508222875e-38, Infinity, -Infinity];
    const valueArb = fc.oneof(fc.float({ noNaN: true }), fc.constantFrom(...special));
    fc.assert(
      fc.property(
        fc.array(itemArb, { minLength: 1, maxLength: 6 }),
        fc.array(valueArb, { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 600 }), { maxLength: 4 }), // neighbours ≤ 600 patterns up
        fc.constantFrom(0.3, 1, 0.05),
        (specs, base, steps, fprLimit) => {
          const neighbours = steps.map((s, i) => bitNeighbour(base[i % base.length]!, s)).filter((v) => !Number.isNaN(v));
          const values = [...base, ...neighbours].sort((x, y) => x - y);
          const k = values.length;
          // Defects lean to the higher scores, so the AUROC is not always ½.
          const items = makeItems(specs, (defect, rnd) => values[Math.max(Math.floor(rnd() * k), defect ? Math.floor(rnd() * k) : 0)]!);
          const bp = binsOf(items);
          expect(bp.binCount).toBeLessThanOrEqual(MAX_SCORE_BINS);
          expect(bp.shift).toBeGreaterThanOrEqual(MIN_BIN_SHIFT);
          expect(bp.shift).toBeLessThanOrEqual(12);
          const got = binned(items, fprLimit);
          // (1) The binned metrics are the exact metrics of the scores rounded to their bins.
          expectWithin(got, perSubset(binRounded(items, bp), fprLimit), 0, 1e-12);
          // (2) Against the true scores: within the data-dependent bound (whole run).
          const exact = perSubset(items, fprLimit);
          const { bound, mixedBins } = errorBound(items, bp, fprLimit);
          for (const m of [0, 1]) {
            if (Number.isNaN(exact.overall[m]!)) expect(got.overall[m]).toBeNaN();
            else expect(Math.abs(got.overall[m]! - exact.overall[m]!)).toBeLessThanOrEqual(bound[m]! + 1e-12);
          }
          // (3) The documented separation: finite scores ≥ 2^(shift−23) apart relative to the larger
          // magnitude, that magnitude normal (≥ 2^−126), never share a bin.
          const binOf = new Map<number, number>();
          items.forEach((it, i) => {
            for (let j = bp.start[i]!; j < bp.start[i + 1]!; j++) binOf.set(it.map![j - bp.start[i]!]! || 0, bp.bin[j]!);
          });
          const seen = [...binOf.keys()];
          for (const v of seen) {
            for (const w of seen) {
              const big = Math.max(Math.abs(v), Math.abs(w));
              if (v !== w && Number.isFinite(big) && big >= 2 ** -126 && Math.abs(v - w) >= 2 ** (bp.shift - 23) * big) expect(binOf.get(v)).not.toBe(binOf.get(w));
            }
          }
          // (4) No bin holding two distinct scores: the exact metrics themselves.
          if (mixedBins === 0) expectWithin(got, exact, 0, 1e-12);
        },
      ),
      { numRuns: 300 },
    );
  });

  describe('real bottle ground truth (3 defect types)', async () => {
    const S = 64;
    const ds = await loadDataset(BOTTLE);
    const samples = ds.test.filter((_, i) => i % 2 === 0);
    const masks = await Promise.all(samples.map((s) => (s.maskPath ? loadMask(s.maskPath, S, S) : undefined)));
    const run = (score: (defect: boolean, rnd: () => number) => number): EvaluationItem[] => {
      const rnd = lcg(7);
      return samples.map((s, k) => {
        const mask = masks[k];
        const map = new Float32Array(S * S);
        for (let i = 0; i < map.length; i++) map[i] = score(mask?.[i] !== undefined && mask[i] !== 0, rnd);
        return { label: s.label, anomalous: s.anomalous, imageScore: rnd(), map, ...(mask ? { mask } : {}), width: S, height: S };
      });
    };

    it('scores on a 1/16 grid (plateaus of blurred maps): exact', () => {
      const items = run((defect, rnd) => Math.round((10 + 5 * rnd() + (defect ? 3 * rnd() : 0)) * 16) / 16);
      expect(new Set(items.filter((it) => it.anomalous).map((it) => it.label)).size).toBe(3);
      // 1/16 steps over [10, 18] are ≥ 2^−9 relative apart, wider than a bin (2^−15): exact.
      expectWithin(binned(items, 0.3), perSubset(items, 0.3), 0, 1e-12);
    });

    it('continuous scores: within the issue’s 1e-3 and within the data-dependent bound', () => {
      // Gamma(2)-distributed background, defects shifted up: ~170 k distinct float32 scores, several
      // per bin, so binning does merge distinct scores here.
      const items = run((defect, rnd) => 2 - Math.log((1 - rnd()) * (1 - rnd())) + (defect ? 3 * rnd() : 0));
      const bp = binsOf(items);
      const { bound, mixedBins } = errorBound(items, bp, 0.3);
      expect(mixedBins).toBeGreaterThan(1000);
      expect(bound[0]).toBeLessThan(1e-3);
      expect(bound[1]).toBeLessThan(1e-3);
      const got = binned(items, 0.3);
      const exact = perSubset(items, 0.3);
      expectWithin(got, exact, 1e-3, 1e-3);
      expect(Math.abs(got.overall[0] - exact.overall[0])).toBeLessThanOrEqual(bound[0]! + 1e-12);
      expect(Math.abs(got.overall[1] - exact.overall[1])).toBeLessThanOrEqual(bound[1]! + 1e-12);
    });
  });

  it('merge distinct scores closer than a bin into one tie: no fixed error bound for hostile inputs', () => {
    // Negatives score 1, positives the next float32 (one ulp up): exact AUROC 1, binned ½.
    const up = bitNeighbour(1, 1);
    const mask = Uint8Array.from([0, 1, 1, 0]);
    const items: EvaluationItem[] = [
      { label: 'good', anomalous: false, imageScore: 0, map: new Float32Array(4).fill(1), width: 2, height: 2 },
      { label: 'crack', anomalous: true, imageScore: 1, map: Float32Array.from(mask, (d) => (d ? up : 1)), mask, width: 2, height: 2 },
    ];
    expect(perSubset(items, 0.3).overall[0]).toBe(1);
    expect(evaluateRun(items).pixelAuroc).toBe(0.5);
  });

  it('chooses the finest bins the range allows: shift 8 for one octave, 12 for ±Infinity', () => {
    const item = (values: number[]): EvaluationItem => ({ label: 'good', anomalous: false, imageScore: 0, map: Float32Array.from(values), width: 2, height: 2 });
    // [1, 2): 2^23 bit patterns, 2^15 bins of 2^8.
    const narrow = binsOf([item([1, 1.5, 1.25, 2 - 2 ** -23])]);
    expect([narrow.shift, narrow.binCount]).toEqual([8, 2 ** 15]);
    const wide = binsOf([item([-Infinity, -0, 0, Infinity])]);
    expect(wide.shift).toBe(12);
    expect(wide.binCount).toBeLessThanOrEqual(MAX_SCORE_BINS);
    // −0 and +0 share a bin, as they are one tie group of the exact metrics.
    expect(wide.bin[1]).toBe(wide.bin[2]);
    expect(wide.bin[0]).toBe(0);
    expect(wide.bin[3]).toBe(wide.binCount - 1);
  });

  it('throw the typed INVALID_TENSOR error on a NaN score', () => {
    const item: EvaluationItem = { label: 'good', anomalous: false, imageScore: 1, map: Float32Array.from([0.5, NaN, 1, 2]), width: 2, height: 2 };
    expect(() => evaluateRun([item])).toThrow(expect.objectContaining({ code: 'INVALID_TENSOR' }));
  });

  it('refuse an FPR limit outside (0, 1]', () => {
    const item: EvaluationItem = { label: 'good', anomalous: false, imageScore: 1, map: new Float32Array(4), width: 2, height: 2 };
    expect(() => evaluateRun([item], { fprLimit: 0 })).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
  });
});
