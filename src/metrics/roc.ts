/**
 * The ROC curve itself (the points whose area {@link auroc} computes), for drawing it.
 */

import { PartscanError } from '../errors.js';
import { toBinaryLabels } from './common.js';

/** ROC curve points, from (0, 0) to (1, 1), one point per distinct score (ties move diagonally). */
export interface RocCurve {
  /** False-positive rates, non-decreasing. */
  fpr: number[];
  /** True-positive rates, non-decreasing. */
  tpr: number[];
}

/**
 * The ROC curve of image scores against binary labels (higher score = more anomalous). Equal scores
 * form one step, so the trapezoid area under the points equals {@link auroc} (ties count half).
 * Needs both classes.
 */
export function rocCurve(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): RocCurve {
  const n = scores.length;
  const binary = toBinaryLabels(labels, n);
  let pos = 0;
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(scores[i]!)) throw new PartscanError('OPTIONS', `Score ${i} is NaN; a ROC curve needs numeric scores.`);
    pos += binary[i]!;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) {
    throw new PartscanError('OPTIONS', `A ROC curve needs good and defective images (got ${neg} good, ${pos} defective).`, {
      remedy: 'evaluate on a labelled set with both classes',
    });
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const fpr = [0];
  const tpr = [0];
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < n; ) {
    const s = scores[order[k]!]!;
    while (k < n && scores[order[k]!]! === s) {
      if (binary[order[k]!]) tp++;
      else fp++;
      k++;
    }
    fpr.push(fp / neg);
    tpr.push(tp / pos);
  }
  return { fpr, tpr };
}
