import { describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import {
  argsortFloat32,
  aupro,
  auroc,
  evaluateRun,
  f1Max,
  labelComponents,
  pixelAuroc,
  type EvaluationItem,
} from '../src/metrics/index.js';

function expectCode(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isPartscanError(caught), `expected PartscanError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
}

/** Deterministic uniform [0, 1) generator (mulberry32) for large synthetic inputs. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('auroc', () => {
  it('matches hand-computed values', () => {
    // positive 0.35 beats negative 0.1 only; positive 0.8 beats both → 3 of 4 pairs.
    expect(auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75);
    expect(auroc([0.5, 0.5], [0, 1])).toBe(0.5);
    // one tie (½) and one win out of two pairs.
    expect(auroc([0.2, 0.5, 0.5], [false, false, true])).toBe(0.75);
    expect(auroc([1, 2, 3, 4], [0, 0, 1, 1])).toBe(1);
    expect(auroc([4, 3, 2, 1], [0, 0, 1, 1])).toBe(0);
    expect(auroc([-Infinity, Infinity], [0, 1])).toBe(1);
  });

  it('returns NaN when one class is absent', () => {
    expect(auroc([0.1, 0.2], [0, 0])).toBeNaN();
    expect(auroc([0.1, 0.2], [1, 1])).toBeNaN();
    expect(auroc([], [])).toBeNaN();
  });

  it('rejects NaN scores, mismatched lengths and non-binary labels', () => {
    expectCode(() => auroc([0.1, NaN], [0, 1]), 'INVALID_TENSOR');
    expectCode(() => auroc([0.1, 0.2], [0, 1, 1]), 'OPTIONS');
    expectCode(() => auroc([0.1, 0.2], [0, 255]), 'OPTIONS');
    expectCode(() => auroc([0.1, 0.2], [-1, 1]), 'OPTIONS');
  });
});

describe('pixelAuroc', () => {
  const map1 = Float32Array.from([0.9, 0.1, 0.2, 0.3]);
  const mask1 = Uint8Array.from([255, 0, 0, 0]);
  const map2 = Float32Array.from([0.95, 0.0, 0.0, 0.0]);

  it('pools pixels over images; maskless good images are all-negative', () => {
    expect(pixelAuroc([map1], [mask1])).toBe(1);
    // map2's 0.95 is a negative above the only positive: 1 of 7 negatives wins → 6/7.
    expect(pixelAuroc([map1, map2], [mask1, undefined])).toBeCloseTo(6 / 7, 12);
    expect(pixelAuroc([map1, map2], [mask1, new Uint8Array(4)])).toBeCloseTo(6 / 7, 12);
  });

  it('skips anomalous images that have no ground truth', () => {
    expect(pixelAuroc([map1, map2], [mask1, undefined], { anomalous: [true, true] })).toBe(1);
    expect(pixelAuroc([map1, map2], [mask1, undefined], { anomalous: [true, false] })).toBeCloseTo(6 / 7, 12);
  });

  it('returns NaN without positive pixels and rejects size mismatches and NaN', () => {
    expect(pixelAuroc([map2], [undefined])).toBeNaN();
    expectCode(() => pixelAuroc([map1], [new Uint8Array(3)]), 'MASK');
    expectCode(() => pixelAuroc([map1], []), 'OPTIONS');
    expectCode(() => pixelAuroc([Float32Array.from([NaN, 0, 0, 0])], [mask1]), 'INVALID_TENSOR');
  });

  it('handles 83 maps of 224² pixels quickly and accurately', () => {
    // Positives ~ U(0.5, 1.5), negatives ~ U(0, 1): P(pos > neg) = 1 − ½·½·½ = 0.875.
    const rand = rng(7);
    const side = 224;
    const maps: Float32Array[] = [];
    const masks: Uint8Array[] = [];
    for (let m = 0; m < 83; m++) {
      const map = new Float32Array(side * side);
      const mask = new Uint8Array(side * side);
      for (let i = 0; i < map.length; i++) {
        const positive = i % 10 === 0;
        mask[i] = positive ? 255 : 0;
        map[i] = rand() + (positive ? 0.5 : 0);
      }
      maps.push(map);
      masks.push(mask);
    }
    const t0 = performance.now();
    const value = pixelAuroc(maps, masks);
    const ms = performance.now() - t0;
    expect(value).toBeGreaterThan(0.873);
    expect(value).toBeLessThan(0.877);
    expect(ms).toBeLessThan(5000);
    const t1 = performance.now();
    const pro = aupro(maps, masks, { width: side, height: side });
    expect(performance.now() - t1).toBeLessThan(8000);
    // Every 10th pixel is a defect; as 224, 223 and 225 are not multiples of 10, no two touch, so each
    // is its own region and PRO equals the positives' TPR, which at FPR f is min(1, f + 0.5) for these
    // uniforms: ∫₀^0.3 (f + 0.5) df / 0.3 = 0.65.
    expect(pro).toBeGreaterThan(0.64);
    expect(pro).toBeLessThan(0.66);
  });
});

describe('labelComponents', () => {
  it('uses 8-connectivity by default, 4 on request', () => {
    const mask = Uint8Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expect(labelComponents(mask, 3, 3).count).toBe(1);
    const four = labelComponents(mask, 3, 3, 4);
    expect(four.count).toBe(3);
    expect([...four.sizes]).toEqual([1, 1, 1]);
    const two = labelComponents(Uint8Array.from([1, 1, 0, 0, 0, 0, 0, 1, 1]), 3, 3);
    expect(two.count).toBe(2);
    expect([...two.labels]).toEqual([1, 1, 0, 0, 0, 0, 0, 2, 2]);
    expectCode(() => labelComponents(new Uint8Array(8), 3, 3), 'MASK');
  });
});

describe('aupro', () => {
  const size = { width: 4, height: 1 };
  it('is 1 for a perfect map and 0 when every negative outranks every positive', () => {
    const mask = Uint8Array.from([1, 1, 0, 0]);
    expect(aupro([Float32Array.from([0.9, 0.8, 0.1, 0.2])], [mask], size)).toBeCloseTo(1, 12);
    expect(aupro([Float32Array.from([0.1, 0.2, 0.9, 0.8])], [mask], size)).toBe(0);
  });

  it('is ½ for a single region detected by half', () => {
    // Region pixels 1.0, 1.0, 0.0, 0.0; negatives 0.5: curve (0,0)→(0,½)→(1,½)→(1,1).
    const map = Float32Array.from([1, 1, 0, 0, 0.5, 0.5, 0.5, 0.5]);
    const mask = Uint8Array.from([1, 1, 1, 1, 0, 0, 0, 0]);
    expect(aupro([map], [mask], { width: 8, height: 1 })).toBeCloseTo(0.5, 12);
    // Up to FPR 1 the final vertical jump to (1,1) adds no area.
    expect(aupro([map], [mask], { width: 8, height: 1 }, 1)).toBeCloseTo(0.5, 12);
    // Half the region above all negatives, half tied with them: (0,0)→(0,½)→(1,1) → ½ + ¼ over [0,1].
    const tied = Float32Array.from([1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
    expect(aupro([tied], [mask], { width: 8, height: 1 }, 1)).toBeCloseTo(0.75, 12);
  });

  it('averages overlap over regions, not pixels, with diagonal pixels joined (8-connectivity)', () => {
    // 3×3 mask: region A = pixel 0 (alone, detected); region B = pixels 5, 7, 8 (undetected).
    // Pixel 5 (1,2) and 7 (2,1) touch diagonally only, so 8-connectivity merges them with 8.
    const mask = Uint8Array.from([1, 0, 0, 0, 0, 1, 0, 1, 1]);
    const map = Float32Array.from([1, 0.5, 0.5, 0.5, 0.5, 0, 0.5, 0, 0]);
    // Two regions: PRO after the first pixel = (1 + 0)/2 = ½; below the negatives nothing changes.
    expect(aupro([map], [mask], { width: 3, height: 3 })).toBeCloseTo(0.5, 12);
    const mask2 = Uint8Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]); // one diagonal region of 3 pixels
    const map2 = Float32Array.from([1, 0.5, 0.5, 0.5, 0, 0.5, 0.5, 0.5, 0]);
    expect(aupro([map2], [mask2], { width: 3, height: 3 })).toBeCloseTo(1 / 3, 12);
  });

  it('interpolates the PRO exactly at the FPR limit', () => {
    // Negatives at 0.9 (1 of 4 → FPR ¼), then region pixels at 0.5, then negatives at 0.1.
    // Curve (0,0)→(¼,0)→(¼,1)→(1,1): area to 0.3 = 0.05 → 0.05 / 0.3.
    const map = Float32Array.from([0.5, 0.9, 0.1, 0.1, 0.1]);
    const mask = Uint8Array.from([1, 0, 0, 0, 0]);
    expect(aupro([map], [mask], { width: 5, height: 1 })).toBeCloseTo(0.05 / 0.3, 12);
    // Diagonal first segment: positive and a negative tie at the top → (0,0)→(¼,1) then flat.
    const map2 = Float32Array.from([0.9, 0.9, 0.1, 0.1, 0.1]);
    // area = ¼·½ + 0.05·1 = 0.175
    expect(aupro([map2], [mask], { width: 5, height: 1 })).toBeCloseTo(0.175 / 0.3, 12);
  });

  it('counts maskless good images as negatives, skips maskless anomalous ones', () => {
    const map = Float32Array.from([0.9, 0.1]);
    const mask = Uint8Array.from([1, 0]);
    const noisyGood = Float32Array.from([0.95, 0.95]); // both negatives above the positive
    // negatives: 0.95, 0.95, 0.1 → FPR ⅔ before the positive enters: AUPRO 0.
    expect(aupro([map, noisyGood], [mask, undefined], { width: 2, height: 1 })).toBe(0);
    expect(
      aupro([map, noisyGood], [mask, undefined], { width: 2, height: 1 }, 0.3, { anomalous: [true, true] }),
    ).toBeCloseTo(1, 12);
  });

  it('returns NaN without regions and validates its inputs', () => {
    expect(aupro([Float32Array.from([0.1, 0.2])], [undefined], { width: 2, height: 1 })).toBeNaN();
    expectCode(() => aupro([new Float32Array(4)], [new Uint8Array(4)], { width: 4, height: 1 }, 0), 'OPTIONS');
    expectCode(() => aupro([new Float32Array(4)], [new Uint8Array(4)], { width: 3, height: 1 }), 'MASK');
    expectCode(() => aupro([new Float32Array(4)], [new Uint8Array(4)], [], 0.3), 'OPTIONS');
  });
});

describe('f1Max', () => {
  it('matches a hand-computed sweep', () => {
    // cuts above 0.8: F1 ⅔; above 0.4: ½; above 0.35: TP2 FP1 → 0.8; above 0.1: ⅔.
    const r = f1Max([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]);
    expect(r.f1).toBeCloseTo(0.8, 12);
    // Midway between the lowest flagged score (0.35) and the next lower one (0.1).
    expect(r.threshold).toBeCloseTo(0.225, 12);
    expect(r.precision).toBeCloseTo(2 / 3, 12);
    expect(r.recall).toBe(1);
  });

  it('keeps ties on one side of the cut and prefers the lower cut among equal F1', () => {
    // A tie between a positive and a negative cannot be split: everything flagged (TP1 FP1), threshold a
    // hair below the minimum.
    const tie = f1Max([0.5, 0.5], [0, 1]);
    expect(tie).toMatchObject({ f1: 2 / 3, precision: 0.5, recall: 1 });
    expect(tie.threshold).toBeLessThan(0.5);
    expect(tie.threshold).toBeGreaterThan(0.5 - 1e-5);
    // Perfect separation: F1 1, threshold midway between the classes.
    expect(f1Max([0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1]).threshold).toBeCloseTo(0.45, 12);
    const lowVsHigh = f1Max([0.9, 0.5, 0.4, 0.1], [1, 0, 1, 0]); // above 0.5: F1 ⅔; above 0.1: TP2 FP1 → 0.8
    expect(lowVsHigh.threshold).toBeCloseTo(0.25, 12);
    // Equal F1: above 0.8 gives ⅔ (TP1 FP0 of P2), above 0.2 gives ⅔ too (TP2 FP2): the lower cut wins.
    const equalF1 = f1Max([1, 0.8, 0.6, 0.4, 0.2], [1, 0, 0, 1, 0]);
    expect(equalF1.f1).toBeCloseTo(2 / 3, 12);
    expect(equalF1.threshold).toBeCloseTo(0.3, 12);
    // Only positives: everything flagged.
    const all = f1Max([0.3, 0.1], [1, 1]);
    expect(all).toMatchObject({ f1: 1, precision: 1, recall: 1 });
    expect(all.threshold).toBeLessThan(0.1);
  });

  it('returns NaN without positives', () => {
    expect(f1Max([0.3, 0.1], [0, 0]).f1).toBeNaN();
  });
});

describe('argsortFloat32', () => {
  it('sorts negatives, zeros, infinities and ties stably', () => {
    const v = Float32Array.from([3, -1, 0, -0, Infinity, -Infinity, 3, -2.5, 1e-30, -1e-30]);
    const order = argsortFloat32(v);
    const sorted = [...order].map((i) => v[i]!);
    expect(sorted).toEqual([-Infinity, -2.5, -1, -1e-30 as number, -0, 0, 1e-30, 3, 3, Infinity].map((x) => Math.fround(x)));
    expect(order.indexOf(0)).toBeLessThan(order.indexOf(6)); // stable for the two 3s
    expectCode(() => argsortFloat32(Float32Array.from([1, NaN])), 'INVALID_TENSOR');
  });
});

describe('evaluateRun', () => {
  const px = (values: number[]): Float32Array => Float32Array.from(values);
  const items: EvaluationItem[] = [
    { label: 'good', anomalous: false, imageScore: 0.1, map: px([0.1, 0.1, 0.1, 0.1]) },
    { label: 'good', anomalous: false, imageScore: 0.4, map: px([0.2, 0.2, 0.2, 0.2]), mask: new Uint8Array(4) },
    { label: 'crack', anomalous: true, imageScore: 0.35, map: px([0.9, 0.1, 0.1, 0.1]), mask: Uint8Array.from([255, 0, 0, 0]) },
    { label: 'scratch', anomalous: true, imageScore: 0.8, map: px([0.15, 0.1, 0.1, 0.1]), mask: Uint8Array.from([0, 255, 0, 0]) },
    { label: 'scratch', anomalous: true, imageScore: 0.9 }, // no map: image metrics only
  ];

  it('computes overall and per-defect metrics under the public key names', () => {
    const r = evaluateRun(items);
    expect(Object.keys(r).sort()).toEqual(
      ['aupro', 'imageAuroc', 'imageF1Max', 'nDefect', 'nGood', 'perDefect', 'pixelAuroc'].sort(),
    );
    expect(r.nGood).toBe(2);
    expect(r.nDefect).toBe(3);
    // image: positives 0.35, 0.8, 0.9 vs negatives 0.1, 0.4 → 5 of 6 pairs.
    expect(r.imageAuroc).toBeCloseTo(5 / 6, 12);
    expect(r.perDefect.crack!.imageAuroc).toBe(0.5);
    expect(r.perDefect.scratch!.imageAuroc).toBe(1);
    expect(r.perDefect.scratch!.nDefect).toBe(2);
    expect(r.perDefect.scratch!.nGood).toBe(2);
    expect(Object.keys(r.perDefect.crack!).sort()).toEqual(
      ['aupro', 'imageAuroc', 'imageF1Max', 'nDefect', 'nGood', 'pixelAuroc'].sort(),
    );
    // crack pixel: positive 0.9 above all 11 negatives → 1.
    expect(r.perDefect.crack!.pixelAuroc).toBe(1);
    expect(r.perDefect.crack!.aupro).toBeCloseTo(1, 12);
    // scratch pixel: positive 0.1 ties 3+4 negatives at 0.1, is below 0.15 and four 0.2:
    // wins 0 of 11 negatives, ties 6 → 3/11.
    expect(r.perDefect.scratch!.pixelAuroc).toBeCloseTo(3 / 11, 12);
    expect(r.imageF1Max).toBeCloseTo(f1Max([0.1, 0.4, 0.35, 0.8, 0.9], [0, 0, 1, 1, 1]).f1, 12);
  });

  it('reports NaN where a metric is undefined and checks mask sizes', () => {
    const r = evaluateRun(items.filter((it) => !it.anomalous));
    expect(r.imageAuroc).toBeNaN();
    expect(r.pixelAuroc).toBeNaN();
    expect(r.perDefect).toEqual({});
    const noMaps = evaluateRun(items.map(({ map: _m, mask: _k, ...rest }) => rest));
    expect(noMaps.pixelAuroc).toBeNaN();
    expect(noMaps.aupro).toBeNaN();
    expectCode(
      () => evaluateRun([{ label: 'x', anomalous: true, imageScore: 1, map: px([1, 2, 3, 4]), mask: new Uint8Array(3) }]),
      'MASK',
    );
    expectCode(() => evaluateRun([{ label: 'x', anomalous: true, imageScore: 1, map: px([1, 2, 3]) }]), 'OPTIONS');
  });
});
