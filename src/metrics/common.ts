/**
 * Input checks shared by the metrics. Metrics are computed on numbers that came out of long
 * pipelines; a silent NaN or a mask of the wrong size would produce a plausible-looking but wrong
 * number, so every metric validates its inputs and throws a typed error instead.
 */

import { PartscanError } from '../errors.js';

/** Width and height of one anomaly map (row-major, `width·height` values). */
export interface MapSize {
  /** Columns. */
  width: number;
  /** Rows. */
  height: number;
}

/** Options shared by the pixel-level metrics. */
export interface PixelMetricOptions {
  /**
   * Per-image "is anomalous" flags, parallel to the maps. They only matter for images without a
   * mask: a good image without a mask is all-negative (every pixel is a true negative), while an
   * anomalous image without a mask has no pixel ground truth and is skipped. When omitted, every
   * image without a mask is treated as good.
   */
  anomalous?: ArrayLike<boolean>;
}

/**
 * Converts image labels (0/1 or false/true) to booleans. Other values throw 'OPTIONS': a 255 or a
 * −1 here usually means the caller passed a mask value or a sklearn-style ±1 label by mistake.
 */
export function toBinaryLabels(labels: ArrayLike<number | boolean>, n: number): Uint8Array {
  if (labels.length !== n) {
    throw new PartscanError('OPTIONS', `Got ${n} scores but ${labels.length} labels.`, {
      remedy: 'pass one label per score',
    });
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const l = labels[i];
    if (l === true || l === 1) out[i] = 1;
    else if (l !== false && l !== 0) {
      throw new PartscanError('OPTIONS', `Label at index ${i} is ${String(l)}; labels must be 0/1 or false/true.`, {
        remedy: 'use 1 (or true) for anomalous and 0 (or false) for good',
      });
    }
  }
  return out;
}

/** Throws 'INVALID_TENSOR' for a NaN score (±Infinity is allowed: it still has a rank). */
export function assertNotNaN(value: number, where: string): void {
  if (value !== value) {
    throw new PartscanError('INVALID_TENSOR', `${where} is NaN; scores must be numbers.`, {
      remedy: 'check the scoring pipeline for NaN (e.g. a zero-variance feature upstream)',
    });
  }
}

/** Throws 'MASK' unless `mask` has exactly as many pixels as `map`. */
export function assertMaskMatchesMap(map: ArrayLike<number>, mask: ArrayLike<number>, index: number): void {
  if (mask.length !== map.length) {
    throw new PartscanError(
      'MASK',
      `Ground-truth mask ${index} has ${mask.length} pixels but its anomaly map has ${map.length}.`,
      { remedy: 'resize the masks to the anomaly map size (nearest neighbour) before evaluating' },
    );
  }
}

/** Throws 'OPTIONS' unless the parallel per-image arrays have the same length. */
export function assertSameCount(maps: ArrayLike<unknown>, masks: ArrayLike<unknown>, anomalous?: ArrayLike<boolean>): void {
  if (masks.length !== maps.length || (anomalous !== undefined && anomalous.length !== maps.length)) {
    throw new PartscanError(
      'OPTIONS',
      `Got ${maps.length} maps, ${masks.length} masks` + (anomalous ? ` and ${anomalous.length} anomalous flags.` : '.'),
      { remedy: 'pass one mask (or undefined) and one flag per map' },
    );
  }
}

/**
 * Whether image `i` takes part in a pixel metric: images with a mask always do; images without one
 * only when they are good (then every pixel is a negative).
 */
export function hasPixelTruth(mask: Uint8Array | undefined, anomalous: ArrayLike<boolean> | undefined, i: number): boolean {
  return mask !== undefined || anomalous === undefined || !anomalous[i];
}

/**
 * Splits scores by binary label into two ascending-sorted arrays (positives, negatives), checking for
 * NaN scores on the way: the shared first step of AUROC and F1-max.
 */
export function sortedByLabel(
  scores: ArrayLike<number>,
  binary: Uint8Array,
): {
  /** Scores labelled 1, ascending. */
  pos: Float64Array;
  /** Scores labelled 0, ascending. */
  neg: Float64Array;
} {
  const n = binary.length;
  let positives = 0;
  for (let i = 0; i < n; i++) {
    assertNotNaN(scores[i]!, `Score at index ${i}`);
    positives += binary[i]!;
  }
  const pos = new Float64Array(positives);
  const neg = new Float64Array(n - positives);
  let ip = 0;
  let ineg = 0;
  for (let i = 0; i < n; i++) {
    if (binary[i]) pos[ip++] = scores[i]!;
    else neg[ineg++] = scores[i]!;
  }
  pos.sort();
  neg.sort();
  return { pos, neg };
}
