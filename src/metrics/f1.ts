/**
 * The best F1 score over all decision thresholds (the "F1-max" reported by anomalib), with the
 * threshold that achieves it — the same sweep and cut convention as the F1-adaptive threshold that
 * calibration stores (see ./pr-sweep.ts).
 */

import { sortedByLabel, toBinaryLabels } from './common.js';
import { bestF1Cut, type F1Cut } from './pr-sweep.js';

/** The best operating point found by {@link f1Max}. */
export type F1MaxResult = F1Cut;

/**
 * Maximum F1 over every cut point of the scores (higher = more anomalous; predicted anomalous when
 * score > threshold). Tied items are always on the same side of the cut; among cuts with equal F1 the
 * lower one wins. Returns NaN fields when there are no positives (F1 is undefined); with no negatives
 * the best F1 is 1 with everything flagged. O(n log n). Throws 'INVALID_TENSOR' on NaN scores and
 * 'OPTIONS' on bad labels.
 */
export function f1Max(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): F1MaxResult {
  const { pos, neg } = sortedByLabel(scores, toBinaryLabels(labels, scores.length));
  return bestF1Cut(pos, neg);
}
