/**
 * The one precision/recall sweep: eval's F1-max and calibration's F1-adaptive threshold both walk the
 * curve here, so the threshold eval reports is the threshold a model stores for the same data.
 *
 * Cut convention: items scoring strictly above the threshold are predicted anomalous. Every distinct
 * score is a candidate cut (tied items move together, never split); the threshold lies midway between
 * the lowest score predicted anomalous and the next lower distinct score, or a hair (10⁻⁶ of the score
 * range) below the overall minimum when everything is flagged. On equal F1 the lower cut wins (more
 * recall: a missed defect costs more than a re-inspected good part; anomalib's argmax over ascending
 * thresholds picks the same).
 */

/** The F1-best operating point of a precision/recall sweep. */
export interface F1Cut {
  /** Raw threshold; scores strictly above it are predicted anomalous (NaN without positives). */
  threshold: number;
  /** Best F1 (NaN without positives). */
  f1: number;
  /** Precision at the cut. */
  precision: number;
  /** Recall at the cut. */
  recall: number;
}

/** Ascending-sorted scores of one class. */
export type SortedScores = Float32Array | Float64Array;

/**
 * Walks the precision/recall curve from the highest score down over ascending-sorted positive and
 * negative scores, one distinct value at a time, and returns the F1-best cut (see the module's cut
 * convention). O(n) after sorting. Returns NaN fields when there is no positive.
 */
export function bestF1Cut(pos: SortedScores, neg: SortedScores): F1Cut {
  const totalPos = pos.length;
  if (totalPos === 0) return { threshold: NaN, f1: NaN, precision: NaN, recall: NaN };
  let i = pos.length - 1;
  let j = neg.length - 1;
  let tp = 0;
  let fp = 0;
  const lowest = Math.min(pos[0]!, neg.length ? neg[0]! : Infinity);
  const highest = Math.max(pos[pos.length - 1]!, neg.length ? neg[neg.length - 1]! : -Infinity);
  const hair = (highest - lowest) * 1e-6 || Math.abs(lowest) * 1e-6 || 1e-6;
  let best: F1Cut = { threshold: NaN, f1: -1, precision: 0, recall: 0 };
  while (tp < totalPos) {
    const v = Math.max(i >= 0 ? pos[i]! : -Infinity, j >= 0 ? neg[j]! : -Infinity);
    while (i >= 0 && pos[i] === v) {
      tp++;
      i--;
    }
    while (j >= 0 && neg[j] === v) {
      fp++;
      j--;
    }
    // F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P).
    const f1 = (2 * tp) / (tp + fp + totalPos);
    if (f1 >= best.f1) {
      const next = Math.max(i >= 0 ? pos[i]! : -Infinity, j >= 0 ? neg[j]! : -Infinity);
      const threshold = next === -Infinity ? v - hair : (v + next) / 2;
      best = { threshold, f1, precision: tp / (tp + fp), recall: tp / totalPos };
    }
  }
  return best;
}
