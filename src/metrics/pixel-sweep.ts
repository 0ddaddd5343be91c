/**
 * Pixel AUROC and AUPRO of several subsets of one scored test set (the whole set, and good + each
 * defect type) from ONE sort of all its pixels. Sorting dominated evaluation: every subset sorted its
 * pixels again (bottle: 4 sets, 10.5 M pixels sorted twice). A subset's pixels in the global order are
 * the subset's own sorted order, so each subset is a linear sweep. Same values as {@link pixelAuroc}
 * and {@link aupro} per subset: the AUROC exactly (integer counts), the AUPRO up to the summation order
 * of equal scores (float rounding).
 */
import { PartscanError } from '../errors.js';
import { assertMaskMatchesMap, hasPixelTruth, type MapSize } from './common.js';
import { labelComponents } from './components.js';
import { argsortFloat32 } from './sort.js';

/**
 * All pixels with ground truth, flattened over the images and sorted once (ascending, stable); the
 * per-pixel arrays are laid out in that order, so each subset's sweep reads memory sequentially.
 */
export interface SortedPixels {
  /** Scores, ascending. */
  scores: Float32Array;
  /** Per sorted pixel: the index of its image. */
  image: Int32Array;
  /** Per sorted pixel: its global defect region, or −1 for a negative pixel. */
  region: Int32Array;
  /** 1 / size of each global region. */
  inverseRegionSize: Float64Array;
  /** Per image: negative pixels, positive pixels, regions. */
  negatives: Float64Array;
  positives: Float64Array;
  regions: Float64Array;
}

/**
 * Flattens and sorts the pixels of `maps` (one per image; `masks[i]` its ground truth or undefined,
 * `anomalous[i]` whether the image is defective: an anomalous image without a mask has no pixel truth
 * and is left out, a good one without a mask is all-negative). Sizes as in {@link aupro}.
 */
export function sortPixels(
  maps: readonly (Float32Array | undefined)[],
  masks: readonly (Uint8Array | undefined)[],
  sizes: readonly (MapSize | undefined)[],
  anomalous: ArrayLike<boolean>,
): SortedPixels {
  const m = maps.length;
  const negatives = new Float64Array(m);
  const positives = new Float64Array(m);
  const regions = new Float64Array(m);
  const components: (ReturnType<typeof labelComponents> | undefined)[] = new Array(m);
  let total = 0;
  let regionCount = 0;
  for (let i = 0; i < m; i++) {
    const map = maps[i];
    if (!map || !hasPixelTruth(masks[i], anomalous, i)) continue;
    const mask = masks[i];
    total += map.length;
    if (mask) {
      assertMaskMatchesMap(map, mask, i);
      const size = sizes[i]!;
      if (map.length !== size.width * size.height) {
        throw new PartscanError('MASK', `Anomaly map ${i} has ${map.length} values, not ${size.width}×${size.height}.`, {
          remedy: 'pass the maps’ real width and height',
        });
      }
      components[i] = labelComponents(mask, size.width, size.height, 8);
      regions[i] = components[i]!.count;
      regionCount += components[i]!.count;
    }
  }
  const scores = new Float32Array(total);
  const image = new Int32Array(total);
  const region = new Int32Array(total);
  const inverseRegionSize = new Float64Array(regionCount);
  let offset = 0;
  let regionBase = 0;
  for (let i = 0; i < m; i++) {
    const map = maps[i];
    if (!map || !hasPixelTruth(masks[i], anomalous, i)) continue;
    scores.set(map, offset);
    image.fill(i, offset, offset + map.length);
    const c = components[i];
    if (c) {
      for (let k = 0; k < c.count; k++) inverseRegionSize[regionBase + k] = 1 / c.sizes[k]!;
      let neg = 0;
      for (let p = 0; p < map.length; p++) {
        const l = c.labels[p]!;
        region[offset + p] = l === 0 ? -1 : regionBase + l - 1;
        if (l === 0) neg++;
      }
      negatives[i] = neg;
      positives[i] = map.length - neg;
      regionBase += c.count;
    } else {
      region.fill(-1, offset, offset + map.length);
      negatives[i] = map.length;
    }
    offset += map.length;
  }
  const order = argsortFloat32(scores);
  const sortedScores = new Float32Array(total);
  const sortedImage = new Int32Array(total);
  const sortedRegion = new Int32Array(total);
  for (let j = 0; j < total; j++) {
    const k = order[j]!;
    sortedScores[j] = scores[k]!;
    sortedImage[j] = image[k]!;
    sortedRegion[j] = region[k]!;
  }
  return { scores: sortedScores, image: sortedImage, region: sortedRegion, inverseRegionSize, negatives, positives, regions };
}

/**
 * Pixel AUROC and AUPRO (up to `fprLimit`, normalised) of the images with `inSet[image] = 1`; NaN where
 * the subset lacks positive or negative pixels (AUROC) or defect regions (AUPRO), as per subset.
 */
export function subsetPixelMetrics(sp: SortedPixels, inSet: Uint8Array, fprLimit: number): { pixel_auroc: number; aupro: number } {
  let negatives = 0;
  let positives = 0;
  let regionCount = 0;
  for (let i = 0; i < inSet.length; i++) {
    if (!inSet[i]) continue;
    negatives += sp.negatives[i]!;
    positives += sp.positives[i]!;
    regionCount += sp.regions[i]!;
  }
  const { scores, image, region, inverseRegionSize } = sp;
  const n = scores.length;

  // AUROC, ascending: each positive counts the negatives below it, plus ½ per tied negative.
  let pixel_auroc = NaN;
  if (positives > 0 && negatives > 0) {
    let negBelow = 0;
    let twiceSum = 0;
    let i = 0;
    while (i < n) {
      const v = scores[i]!;
      let p = 0;
      let q = 0;
      do {
        if (inSet[image[i]!]) {
          if (region[i]! < 0) q++;
          else p++;
        }
        i++;
      } while (i < n && scores[i] === v);
      twiceSum += p * (2 * negBelow + q);
      negBelow += q;
    }
    pixel_auroc = twiceSum / 2 / positives / negatives;
  }

  // AUPRO, descending: the sweep of `aupro` over the subset's pixels.
  let aupro = NaN;
  if (regionCount > 0 && negatives > 0) {
    let falsePositives = 0;
    let overlapSum = 0;
    let prevFpr = 0;
    let prevPro = 0;
    let area = 0;
    let i = n - 1;
    let closed = false;
    while (i >= 0) {
      const v = scores[i]!;
      do {
        if (inSet[image[i]!]) {
          const r = region[i]!;
          if (r < 0) falsePositives++;
          else overlapSum += inverseRegionSize[r]!;
        }
        i--;
      } while (i >= 0 && scores[i] === v);
      const fpr = Math.min(falsePositives / negatives, 1);
      const pro = Math.min(overlapSum / regionCount, 1);
      if (fpr > fprLimit) {
        const proAtLimit = prevPro + ((pro - prevPro) * (fprLimit - prevFpr)) / (fpr - prevFpr);
        area += ((fprLimit - prevFpr) * (proAtLimit + prevPro)) / 2;
        closed = true;
        break;
      }
      area += ((fpr - prevFpr) * (pro + prevPro)) / 2;
      prevFpr = fpr;
      prevPro = pro;
    }
    if (!closed) area += ((1 - prevFpr) * (1 + prevPro)) / 2;
    aupro = area / fprLimit;
  }
  return { pixel_auroc, aupro };
}
