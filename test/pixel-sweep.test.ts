/**
 * evaluateRun's pixel metrics from one sort of the run's pixels (src/metrics/pixel-sweep.ts) against
 * the per-subset pixelAuroc / aupro it replaced: the AUROC exactly, the AUPRO to float rounding, for
 * the whole run and every defect type — random runs with ties (fast-check) and real bottle masks.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { aupro, pixelAuroc } from '../src/metrics/index.js';
import { evaluateRun, type EvaluationItem } from '../src/metrics/evaluate.js';
import { loadDataset } from '../src/data/loaders.js';
import { loadMask } from '../src/preprocess/preprocess.js';
import { BOTTLE } from './helpers/shared.js';

/** The metrics as computed before: each subset's pixels flattened and sorted on their own. */
function perSubset(items: EvaluationItem[], fprLimit = 0.3): { overall: [number, number]; perType: Record<string, [number, number]> } {
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

function expectSame(items: EvaluationItem[], fprLimit = 0.3): void {
  const run = evaluateRun(items, { fprLimit });
  const ref = perSubset(items, fprLimit);
  const close = (a: number, b: number, tol: number): void => {
    if (Number.isNaN(b)) expect(a).toBeNaN();
    else expect(Math.abs(a - b)).toBeLessThanOrEqual(tol);
  };
  close(run.pixel_auroc, ref.overall[0], 0);
  close(run.aupro, ref.overall[1], 1e-12);
  for (const [t, [a, p]] of Object.entries(ref.perType)) {
    close(run.per_defect[t]!.pixel_auroc, a, 0);
    close(run.per_defect[t]!.aupro, p, 1e-12);
  }
}

const itemArb = fc.record({
  w: fc.integer({ min: 2, max: 9 }),
  h: fc.integer({ min: 2, max: 9 }),
  type: fc.constantFrom('good', 'crack', 'hole'),
  withMask: fc.boolean(),
  levels: fc.integer({ min: 2, max: 12 }), // few distinct scores: many ties
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
});

describe('pixel metrics from one sort (evaluateRun)', () => {
  it('equal the per-subset exact metrics on random runs with ties, masks missing, several types', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { minLength: 1, maxLength: 8 }), fc.constantFrom(0.3, 1, 0.05), (specs, fprLimit) => {
        const items: EvaluationItem[] = specs.map((s) => {
          let a = s.seed;
          const rnd = (): number => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32);
          const n = s.w * s.h;
          const mask = new Uint8Array(n);
          const anomalous = s.type !== 'good';
          if (anomalous) for (let i = 0; i < n; i++) mask[i] = rnd() < 0.3 ? 1 : 0;
          const map = new Float32Array(n);
          for (let i = 0; i < n; i++) map[i] = Math.floor(rnd() * s.levels) + (mask[i] ? Math.floor(rnd() * 3) : 0);
          return { label: s.type, anomalous, imageScore: rnd(), map, width: s.w, height: s.h, ...(s.withMask || anomalous ? (s.withMask ? { mask } : {}) : {}) };
        });
        expectSame(items, fprLimit);
      }),
      { numRuns: 300 },
    );
  });

  it('equal the per-subset exact metrics with real bottle ground truth (3 defect types)', async () => {
    const ds = await loadDataset(BOTTLE);
    const S = 64;
    let a = 7;
    const rnd = (): number => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const items: EvaluationItem[] = [];
    for (const s of ds.test.filter((_, i) => i % 2 === 0)) {
      const mask = s.maskPath ? await loadMask(s.maskPath, S, S) : undefined;
      const map = new Float32Array(S * S);
      // Scores rounded to 1/16: ties as in blurred maps' plateaus.
      for (let i = 0; i < map.length; i++) map[i] = Math.round((10 + 5 * rnd() + (mask?.[i] ? 3 * rnd() : 0)) * 16) / 16;
      items.push({ label: s.label, anomalous: s.anomalous, imageScore: rnd(), map, ...(mask ? { mask } : {}), width: S, height: S });
    }
    expect(new Set(items.filter((it) => it.anomalous).map((it) => it.label)).size).toBe(3);
    expectSame(items);
  }, 60_000);

  it('refuses an FPR limit outside (0, 1]', () => {
    const item: EvaluationItem = { label: 'good', anomalous: false, imageScore: 1, map: new Float32Array(4), width: 2, height: 2 };
    expect(() => evaluateRun([item], { fprLimit: 0 })).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
  });
});
