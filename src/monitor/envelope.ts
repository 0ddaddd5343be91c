/**
 * The fitted envelope of the drift descriptors: where, in each descriptor (brightness, contrast,
 * per-channel means and spreads, colour ratio, sharpness), the training images lie — and whether a new
 * image lies where they do.
 *
 * A training set is often a mixture (capture setups, supplier lots, shifts). Distance from the
 * mixture's median (the drift guard's z) then reads any one of its sub-populations as a shift. The
 * envelope asks instead whether an image lies *among* the training images: per descriptor, its
 * distance to its k-th nearest training value (1-D kNN, k = {@link ENVELOPE_NEIGHBOURS}), against the
 * same distance of every training image to the others (leave-one-out). An image is *beyond* the
 * envelope when that distance exceeds the training images' own (1 − {@link ENVELOPE_TAIL}) quantile:
 * a good image of the fitted population is beyond with probability ≈ {@link ENVELOPE_TAIL}, wherever
 * in the mixture it comes from; a stream from a setup that was never fitted lies where training images
 * are sparse, so a larger share of its images is beyond.
 *
 * For the reasons and the practical-significance floor, each image also gets its *offset*: its value
 * minus the median of its nearest tenth of the training values ({@link ENVELOPE_LOCAL_SHARE}), in the
 * drift model's units (ln for log descriptors: 0.05 ≈ +5 %).
 *
 * Values are the drift model's z times its scale: transformed units relative to the training median.
 */

import type { DriftModel } from '../guards/drift.js';
import { lowerBound } from '../guards/robust-stats.js';

/** k of the 1-D kNN distance: small enough to follow a small sub-population, large enough to be stable. */
export const ENVELOPE_NEIGHBOURS = 5;
/** Share of training images beyond the envelope (leave-one-out): the expected share for a good stream. */
export const ENVELOPE_TAIL = 0.1;
/** Offsets are taken from the median of the nearest this share of the training values. */
export const ENVELOPE_LOCAL_SHARE = 0.1;

/** One image against the envelope, per descriptor. */
export interface EnvelopeObservation {
  /** Whether the image lies beyond the envelope. */
  beyond: boolean[];
  /** Value minus the median of the nearest tenth of the training values (drift-model units). */
  offset: number[];
}

/**
 * The `count` values of ascending `sorted` nearest to x, as the index range [lo, hi) they fill, and the
 * distance to the farthest of them. `skip` leaves one index out (leave-one-out); the range then spans
 * it. Walks outwards from x's position: O(log n + count).
 */
export function nearestRange(sorted: Float64Array, x: number, count: number, skip = -1): { lo: number; hi: number; farthest: number } {
  let left = lowerBound(sorted, 0, sorted.length, x) - 1;
  let right = left + 1;
  let farthest = 0;
  let taken = 0;
  while (taken < count && (left >= 0 || right < sorted.length)) {
    if (left === skip) left--;
    if (right === skip) right++;
    const dl = left >= 0 ? x - sorted[left]! : Infinity;
    const dr = right < sorted.length ? sorted[right]! - x : Infinity;
    if (dl === Infinity && dr === Infinity) break;
    farthest = Math.min(dl, dr);
    if (dl <= dr) left--;
    else right++;
    taken++;
  }
  return { lo: left + 1, hi: right, farthest };
}

/** Median of sorted[lo, hi). */
function rangeMedian(sorted: Float64Array, lo: number, hi: number): number {
  const m = (lo + hi) >> 1;
  return (hi - lo) % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}

/**
 * Per-descriptor envelopes of a set of training images. Built once per monitor from the model file's
 * stored descriptor z (see `MonitorReference.envelope`): O(F·n log n) for n images.
 */
export class DescriptorEnvelope {
  /** Number of training images. */
  readonly images: number;
  /** Per descriptor: the share of training images beyond their own envelope (≈ {@link ENVELOPE_TAIL}, less with ties). */
  readonly expectedShare: number[] = [];
  /** Per descriptor: the kNN distance beyond which an image is beyond the envelope. */
  readonly cutoff: number[] = [];
  private readonly columns: Float64Array[];
  private readonly scale: readonly number[];
  private readonly neighbours: number;
  private readonly local: number;

  /**
   * @param z training images' drift z, one row per image in the drift model's feature order
   * @param drift the drift model the z come from (its scale turns z into transformed units)
   */
  constructor(z: readonly (readonly number[])[], drift: Pick<DriftModel, 'scale'>) {
    const n = z.length;
    this.images = n;
    this.scale = [...drift.scale];
    this.neighbours = Math.max(1, Math.min(ENVELOPE_NEIGHBOURS, n - 1));
    this.local = Math.max(this.neighbours, Math.min(n, Math.ceil(ENVELOPE_LOCAL_SHARE * n)));
    this.columns = drift.scale.map((s, j) => Float64Array.from(z, (row) => row[j]! * s).sort());
    for (const col of this.columns) {
      const loo = Float64Array.from(col, (x, i) => nearestRange(col, x, this.neighbours, i).farthest).sort();
      const cut = loo[Math.max(0, Math.ceil((1 - ENVELOPE_TAIL) * n) - 1)]!;
      this.cutoff.push(cut);
      this.expectedShare.push(loo.filter((d) => d > cut).length / n);
    }
  }

  /** Where one image (its drift z, same feature order) lies against each descriptor's envelope. */
  observe(z: readonly number[]): EnvelopeObservation {
    const beyond: boolean[] = [];
    const offset: number[] = [];
    this.columns.forEach((col, j) => {
      const x = z[j]! * this.scale[j]!;
      beyond.push(nearestRange(col, x, this.neighbours).farthest > this.cutoff[j]!);
      const { lo, hi } = nearestRange(col, x, this.local);
      offset.push(x - rangeMedian(col, lo, hi));
    });
    return { beyond, offset };
  }
}
