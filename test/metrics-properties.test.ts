import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { argsortFloat32, aupro, auroc, f1Max, labelComponents, pixelAuroc } from '../src/metrics/index.js';
import { f1AdaptiveThreshold } from '../src/postprocess/threshold-rules.js';

/** O(n²) pairwise AUROC: the definition, ties counting ½. */
function naiveAuroc(scores: number[], labels: boolean[]): number {
  let wins = 0;
  let pairs = 0;
  scores.forEach((p, i) => {
    if (!labels[i]) return;
    scores.forEach((n, j) => {
      if (labels[j]) return;
      pairs++;
      wins += p > n ? 1 : p === n ? 0.5 : 0;
    });
  });
  return pairs === 0 ? NaN : wins / pairs;
}

/** F1 at every distinct threshold, by brute force. */
function naiveF1Max(scores: number[], labels: boolean[]): number {
  const positives = labels.filter(Boolean).length;
  let best = -1;
  for (const t of new Set(scores)) {
    let tp = 0;
    let fp = 0;
    scores.forEach((s, i) => {
      if (s >= t) labels[i] ? tp++ : fp++;
    });
    best = Math.max(best, (2 * tp) / (tp + fp + positives));
  }
  return best;
}

/** Region labels by union-find, an independent implementation of 8-connected labelling. */
function naiveRegions(mask: Uint8Array, w: number, h: number): number[] {
  const parent = [...mask.keys()];
  const find = (a: number): number => (parent[a] === a ? a : (parent[a] = find(parent[a]!)));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      for (const [dx, dy] of [[1, 0], [0, 1], [1, 1], [-1, 1]] as const) {
        const xx = x + dx;
        const yy = y + dy;
        if (xx >= 0 && xx < w && yy < h && mask[yy * w + xx]) parent[find(y * w + x)] = find(yy * w + xx);
      }
    }
  }
  return [...mask].map((v, i) => (v ? find(i) : -1));
}

/** MVTec's procedure written out directly: threshold loop, PRO per region, trapezoid with x_max. */
function naiveAupro(maps: Float32Array[], masks: Uint8Array[], w: number, h: number, limit: number): number {
  const regions = masks.map((m) => naiveRegions(m, w, h));
  const regionPixels = new Map<string, number[]>();
  const negatives: number[] = [];
  maps.forEach((map, m) =>
    map.forEach((v, i) => {
      const r = regions[m]![i]!;
      if (r < 0) negatives.push(v);
      else regionPixels.set(`${m}:${r}`, [...(regionPixels.get(`${m}:${r}`) ?? []), v]);
    }),
  );
  if (regionPixels.size === 0 || negatives.length === 0) return NaN;
  const thresholds = [...new Set(maps.flatMap((m) => [...m]))].sort((a, b) => b - a);
  const xs = [0];
  const ys = [0];
  for (const t of thresholds) {
    xs.push(negatives.filter((v) => v >= t).length / negatives.length);
    let pro = 0;
    for (const px of regionPixels.values()) pro += px.filter((v) => v >= t).length / px.length;
    ys.push(pro / regionPixels.size);
  }
  xs.push(1);
  ys.push(1);
  let area = 0;
  for (let i = 1; i < xs.length; i++) {
    if (xs[i]! <= limit) area += ((xs[i]! - xs[i - 1]!) * (ys[i]! + ys[i - 1]!)) / 2;
    else {
      const yAt = ys[i - 1]! + ((ys[i]! - ys[i - 1]!) * (limit - xs[i - 1]!)) / (xs[i]! - xs[i - 1]!);
      area += ((limit - xs[i - 1]!) * (yAt + ys[i - 1]!)) / 2;
      break;
    }
  }
  return area / limit;
}

// Small integer scores make ties common, which is where rank metrics usually go wrong.
const scoredItems = fc.array(fc.tuple(fc.integer({ min: -8, max: 8 }), fc.boolean()), { minLength: 1, maxLength: 60 });
const bothClasses = scoredItems.filter((xs) => xs.some(([, l]) => l) && xs.some(([, l]) => !l));

describe('auroc properties', () => {
  it('equals the O(n²) pairwise definition', () => {
    fc.assert(
      fc.property(scoredItems, (xs) => {
        const s = xs.map(([v]) => v / 4);
        const l = xs.map(([, b]) => b);
        const fast = auroc(s, l);
        const slow = naiveAuroc(s, l);
        if (Number.isNaN(slow)) expect(fast).toBeNaN();
        else expect(fast).toBeCloseTo(slow, 12);
      }),
      { numRuns: 300 },
    );
  });

  it('AUROC(s) + AUROC(−s) = 1', () => {
    fc.assert(
      fc.property(bothClasses, (xs) => {
        const l = xs.map(([, b]) => b);
        expect(auroc(xs.map(([v]) => v), l) + auroc(xs.map(([v]) => -v), l)).toBeCloseTo(1, 12);
      }),
      { numRuns: 200 },
    );
  });

  it('is invariant to strictly increasing transforms of the scores', () => {
    fc.assert(
      fc.property(bothClasses, fc.integer({ min: 1, max: 5 }), (xs, a) => {
        const l = xs.map(([, b]) => b);
        const s = xs.map(([v]) => v);
        expect(auroc(s.map((v) => a * v * v * v + 7), l)).toBe(auroc(s, l));
        expect(auroc(s.map((v) => Math.exp(v / a)), l)).toBe(auroc(s, l));
      }),
      { numRuns: 200 },
    );
  });

  it('is invariant to permuting the items', () => {
    fc.assert(
      fc.property(
        bothClasses.chain((xs) => fc.tuple(fc.constant(xs), fc.shuffledSubarray(xs, { minLength: xs.length }))),
        ([xs, shuffled]) => {
          expect(auroc(shuffled.map(([v]) => v), shuffled.map(([, b]) => b))).toBe(
            auroc(xs.map(([v]) => v), xs.map(([, b]) => b)),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('is 1 for a perfect ranking and 0 for a reversed one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 50 }), (nNeg, nPos) => {
        const s = [...Array(nNeg + nPos).keys()];
        const l = s.map((i) => i >= nNeg);
        expect(auroc(s, l)).toBe(1);
        expect(auroc(s.map((v) => -v), l)).toBe(0);
      }),
    );
  });

  it('pixelAuroc equals auroc on the concatenated pixels', () => {
    fc.assert(
      fc.property(fc.array(bothClasses.filter((xs) => xs.length >= 2), { minLength: 1, maxLength: 4 }), (images) => {
        const maps = images.map((xs) => Float32Array.from(xs.map(([v]) => v)));
        const masks = images.map((xs) => Uint8Array.from(xs.map(([, b]) => (b ? 255 : 0))));
        const all = images.flat();
        expect(pixelAuroc(maps, masks)).toBeCloseTo(auroc(all.map(([v]) => v), all.map(([, b]) => b)), 12);
      }),
      { numRuns: 100 },
    );
  });
});

describe('f1Max properties', () => {
  it('equals the brute-force maximum over all thresholds, and its fields are consistent', () => {
    fc.assert(
      fc.property(scoredItems.filter((xs) => xs.some(([, l]) => l)), (xs) => {
        const s = xs.map(([v]) => v);
        const l = xs.map(([, b]) => b);
        const r = f1Max(s, l);
        expect(r.f1).toBeCloseTo(naiveF1Max(s, l), 12);
        if (r.precision + r.recall > 0) {
          expect(r.f1).toBeCloseTo((2 * r.precision * r.recall) / (r.precision + r.recall), 12);
        }
        // The cut convention: scores strictly above the threshold are flagged, and they give that F1.
        let tp = 0;
        let fp = 0;
        s.forEach((v, i) => {
          if (v > r.threshold) l[i] ? tp++ : fp++;
        });
        const positives = l.filter(Boolean).length;
        expect((2 * tp) / (tp + fp + positives)).toBeCloseTo(r.f1, 12);
        // The threshold lies between distinct scores: no score sits on it.
        expect(s).not.toContain(r.threshold);
        // Same data, same answer as calibration's F1-adaptive threshold.
        expect(f1AdaptiveThreshold(s, l)).toEqual(r);
      }),
      { numRuns: 300 },
    );
  });
});

describe('aupro properties', () => {
  const image = (w: number, h: number) =>
    fc.tuple(
      fc.array(fc.integer({ min: 0, max: 6 }), { minLength: w * h, maxLength: w * h }),
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: w * h, maxLength: w * h }),
    );
  const dataset = fc
    .tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 5 }))
    .chain(([w, h]) =>
      fc.tuple(
        fc.constant(w),
        fc.constant(h),
        fc.array(image(w, h), { minLength: 1, maxLength: 3 }),
        fc.constantFrom(0.05, 0.3, 0.5, 1),
      ),
    );

  it('equals a direct threshold-by-threshold evaluation of the MVTec definition', () => {
    fc.assert(
      fc.property(dataset, ([w, h, images, limit]) => {
        const maps = images.map(([s]) => Float32Array.from(s, (v) => v / 2));
        // mask value 2 → defect (about ⅓ of pixels), so regions of several shapes appear.
        const masks = images.map(([, m]) => Uint8Array.from(m, (v) => (v === 2 ? 1 : 0)));
        const fast = aupro(maps, masks, { width: w, height: h }, limit);
        const slow = naiveAupro(maps, masks, w, h, limit);
        if (Number.isNaN(slow)) expect(fast).toBeNaN();
        else expect(fast).toBeCloseTo(slow, 9);
      }),
      { numRuns: 300 },
    );
  });

  it('lies in [0, 1] and is 1 when every defect pixel outscores every good pixel', () => {
    fc.assert(
      fc.property(dataset, ([w, h, images, limit]) => {
        const masks = images.map(([, m]) => Uint8Array.from(m, (v) => (v === 2 ? 1 : 0)));
        const maps = images.map(([s], k) => Float32Array.from(s, (v, i) => v / 10 + masks[k]![i]!));
        const value = aupro(maps, masks, { width: w, height: h }, limit);
        const hasBoth = masks.some((m) => m.includes(1)) && masks.some((m) => m.includes(0));
        if (hasBoth) expect(value).toBeCloseTo(1, 12);
        const noisy = aupro(images.map(([s]) => Float32Array.from(s)), masks, { width: w, height: h }, limit);
        if (!Number.isNaN(noisy)) {
          expect(noisy).toBeGreaterThanOrEqual(0);
          expect(noisy).toBeLessThanOrEqual(1 + 1e-12);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('labelComponents agrees with a union-find labelling', () => {
    fc.assert(
      fc.property(
        fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 })).chain(([w, h]) =>
          fc.tuple(fc.constant(w), fc.constant(h), fc.array(fc.integer({ min: 0, max: 1 }), { minLength: w * h, maxLength: w * h })),
        ),
        ([w, h, bits]) => {
          const mask = Uint8Array.from(bits);
          const ours = labelComponents(mask, w, h);
          const theirs = naiveRegions(mask, w, h);
          // Same partition: two pixels share a label in one labelling iff they do in the other.
          for (let i = 0; i < bits.length; i++) {
            for (let j = 0; j < bits.length; j++) {
              expect(ours.labels[i] === ours.labels[j]).toBe(theirs[i] === theirs[j]);
            }
          }
          expect(ours.count).toBe(new Set(theirs.filter((r) => r >= 0)).size);
          expect([...ours.sizes].reduce((a, b) => a + b, 0)).toBe(bits.filter(Boolean).length);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('argsortFloat32 properties', () => {
  it('sorts like a stable comparison sort', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true }), { maxLength: 300 }), (xs) => {
        const v = Float32Array.from(xs);
        const order = [...argsortFloat32(v)];
        const expected = [...v.keys()].sort((a, b) => v[a]! - v[b]! || (Object.is(v[a], -0) ? -1 : 0) - (Object.is(v[b], -0) ? -1 : 0) || a - b);
        // Compare values (−0 and 0 may be ordered either way relative to each other) and stability of equal keys.
        expect(order.map((i) => v[i])).toEqual(expected.map((i) => v[i]));
        for (let k = 1; k < order.length; k++) {
          if (Object.is(v[order[k]!], v[order[k - 1]!])) expect(order[k]!).toBeGreaterThan(order[k - 1]!);
        }
      }),
      { numRuns: 200 },
    );
  });
});
