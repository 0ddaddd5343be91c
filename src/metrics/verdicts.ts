/**
 * Verdict quality at the threshold a model ships with: what a line engineer signs off on. AUROC and
 * F1-max rank scores over every possible threshold; these count what the model's own OK / NG /
 * UNCERTAIN verdicts did to good and defective parts.
 */

import { PartscanError } from '../errors.js';
import type { Verdict } from '../postprocess/thresholds.js';
import { clopperPearson } from './intervals.js';

/** One judged test image. */
export interface VerdictItem {
  /** 'good' or the defect type. */
  label: string;
  /** Whether the image shows a defect. */
  anomalous: boolean;
  /** The model's verdict at its shipped threshold (and band). */
  verdict: Verdict;
}

/** How many parts of one class got each verdict. */
export interface VerdictCounts {
  /** Parts judged OK. */
  OK: number;
  /** Parts judged NG. */
  NG: number;
  /** Parts judged UNCERTAIN (left to a person). */
  UNCERTAIN: number;
}

/**
 * Verdict quality on one set of images. Rates are NaN when their denominator is 0 (`JSON.stringify`
 * writes null). UNCERTAIN parts go to a person, so they are neither escapes nor false rejects.
 */
export interface VerdictSetQuality {
  /** Defective parts judged OK / defective parts. */
  escape_rate: number;
  /** Good parts judged NG / good parts. */
  false_reject_rate: number;
  /** Parts judged UNCERTAIN / all parts of the set. */
  uncertain_share: number;
  /** Verdict counts of the good parts and of the defective parts (the confusion counts). */
  confusion: {
    /** Verdicts of the good parts. */
    good: VerdictCounts;
    /** Verdicts of the defective parts. */
    defect: VerdictCounts;
  };
  /** Number of good images in the set. */
  n_good: number;
  /** Number of defective images in the set. */
  n_defect: number;
  /** 95 % Clopper–Pearson interval of the escape rate ([lower, upper]; null bounds without defects). */
  escape_rate_ci95: [number, number];
  /** 95 % Clopper–Pearson interval of the false-reject rate (null bounds without good images). */
  false_reject_rate_ci95: [number, number];
}

/** {@link VerdictSetQuality} for the whole test set, plus per defect type (all good parts + that type). */
export interface VerdictQuality extends VerdictSetQuality {
  /** Per defect type: all good images plus that type's images, as in `per_defect` of the metrics. */
  per_defect: Record<string, VerdictSetQuality>;
}

const VERDICTS: readonly Verdict[] = ['OK', 'NG', 'UNCERTAIN'];

function ratio(n: number, d: number): number {
  return d > 0 ? n / d : NaN;
}

function qualityOf(items: readonly VerdictItem[]): VerdictSetQuality {
  const good: VerdictCounts = { OK: 0, NG: 0, UNCERTAIN: 0 };
  const defect: VerdictCounts = { OK: 0, NG: 0, UNCERTAIN: 0 };
  for (const it of items) (it.anomalous ? defect : good)[it.verdict]++;
  const n_good = good.OK + good.NG + good.UNCERTAIN;
  const n_defect = defect.OK + defect.NG + defect.UNCERTAIN;
  const escape = clopperPearson(defect.OK, n_defect);
  const falseReject = clopperPearson(good.NG, n_good);
  return {
    escape_rate: ratio(defect.OK, n_defect),
    false_reject_rate: ratio(good.NG, n_good),
    uncertain_share: ratio(good.UNCERTAIN + defect.UNCERTAIN, n_good + n_defect),
    confusion: { good, defect },
    n_good,
    n_defect,
    escape_rate_ci95: [escape.lower, escape.upper],
    false_reject_rate_ci95: [falseReject.lower, falseReject.upper],
  };
}

/**
 * Counts verdicts against labels: escape rate, false-reject rate, UNCERTAIN share and confusion
 * counts, overall and per defect type (all good images + that type's, like the ranking metrics).
 */
export function verdictQuality(items: readonly VerdictItem[]): VerdictQuality {
  items.forEach((it, i) => {
    if (!VERDICTS.includes(it.verdict)) {
      throw new PartscanError('OPTIONS', `Verdict item ${i} (${it.label}) has verdict ${JSON.stringify(it.verdict)}; expected OK, NG or UNCERTAIN.`, {
        remedy: 'score with a calibrated model (one with thresholds) before counting verdicts',
      });
    }
  });
  const good = items.filter((it) => !it.anomalous);
  const types = [...new Set(items.filter((it) => it.anomalous).map((it) => it.label))].sort();
  const per_defect: Record<string, VerdictSetQuality> = {};
  for (const t of types) per_defect[t] = qualityOf([...good, ...items.filter((it) => it.anomalous && it.label === t)]);
  return { ...qualityOf(items), per_defect };
}
