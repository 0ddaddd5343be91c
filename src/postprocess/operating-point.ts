/**
 * The operating point: the thresholds a model ships, chosen from out-of-sample scores of good images
 * (and labelled defects when there are some) so that a line can sign off on what they do.
 *
 * Rules (`rule`):
 * - **'false-reject'** (default): the image threshold is the score good parts exceed with the stated
 *   probability (`falseRejectTarget`, default 1 %), from the exponential tail of the good scores
 *   (tail-model.ts). With labelled defects this is also the Neyman–Pearson choice — the fewest escapes
 *   subject to the false-reject target: with a continuous estimate of the false-reject rate the lowest
 *   threshold that meets the target is the one with the fewest escapes — and the defects give the
 *   expected escape rate with its Clopper–Pearson interval. The pixel threshold (masks, regions) is set
 *   the same way on the good images' raw map maxima, so good parts show a region no more often than
 *   stated.
 * - **'f1'**: F1-adaptive on image scores (and on pooled pixels when defect masks and good maps are
 *   given); needs labelled defects.
 * - a {@link GoodOnlyRule}: partscan ≤ 0.1's rules on good scores (max(mean + 3σ, max) by default).
 * Manual thresholds win over every rule; the rates at them are still estimated and reported.
 */

import { PartscanError, type PartscanWarning } from '../errors.js';
import { clopperPearson } from '../metrics/intervals.js';
import { fitExponentialTail, MIN_TAIL_SCORES, tailExceedance, tailExceedanceUpper95, tailQuantile, tailSummary, type TailFit } from './tail-model.js';
import { normalizeScore } from './normalize.js';
import { checkFinite, describeRule, f1AdaptiveThreshold, pixelF1Threshold, thresholdFromGood } from './threshold-rules.js';
import {
  imageNormalization,
  type GoodOnlyRule,
  type OperatingPoint,
  type ScoreRange,
  type ThresholdMethod,
  type Thresholds,
  type VerdictBand,
  validateBand,
} from './thresholds.js';

/** Default false-reject target: 1 % of good parts judged NG. */
export const DEFAULT_FALSE_REJECT_TARGET = 0.01;

/** How thresholds are chosen (see the module comment). */
export type ThresholdRule = 'false-reject' | 'f1' | GoodOnlyRule;

/** Out-of-sample scores of good parts, and labelled defects when there are some. */
export interface CalibrationScores {
  /** Good parts (out of sample): one entry per image. */
  good: {
    /** Image scores (the model's image-score definition). */
    imageScores: ArrayLike<number>;
    /** Raw anomaly-map maxima (what the pixel threshold cuts). */
    mapMaxima: ArrayLike<number>;
    /** Raw anomaly-map minima (the low end of the pixel normalisation span). */
    mapMinima: ArrayLike<number>;
    /** Full raw maps, only for an F1-adaptive pixel threshold. */
    pixelMaps?: readonly ArrayLike<number>[];
    /** Good scores left out before these (likely defects); recorded with the operating point. Default 0. */
    excluded?: number;
  };
  /** Labelled defective parts. */
  defect?: {
    /** Image scores. */
    imageScores: ArrayLike<number>;
    /** Raw maps and ground-truth masks, for an F1-adaptive pixel threshold. */
    pixelMaps?: readonly ArrayLike<number>[];
    /** Ground-truth masks (non-zero = defect), one per map. */
    masks?: readonly ArrayLike<number>[];
  };
}

/** How {@link selectThresholds} picks thresholds. */
export interface ThresholdOptions {
  /** The rule (default 'false-reject'). */
  rule?: ThresholdRule;
  /** Share of good parts allowed to be judged NG, in (0, 1) (default {@link DEFAULT_FALSE_REJECT_TARGET}). */
  falseRejectTarget?: number;
  /**
   * A second, higher false-reject rate in (target, 1): parts scoring between its threshold and the image
   * threshold are UNCERTAIN (left to a person).
   */
  reviewBand?: number;
  /** Manual raw thresholds; they win over any rule. */
  manual?: {
    /** Raw image threshold. */
    image?: number;
    /** Raw pixel threshold. */
    pixel?: number;
  };
  /** An explicit uncertainty band in normalised units (instead of `reviewBand`). */
  band?: VerdictBand;
}

/** Result of {@link selectThresholds}. */
export interface ThresholdSelection {
  /** The chosen thresholds, with their operating point. */
  thresholds: Thresholds;
  /** Caveats the user should know (few images, wide bounds, fallbacks). */
  warnings: PartscanWarning[];
}

/** Good images below which the tail extrapolates so far that the thresholds are rough. */
export const FEW_GOOD_IMAGES = 20;

/** Throws 'OPTIONS' unless `rate` is a number in (0, 1); `field` names the option of `entry`. */
export function checkRate(rate: number, field: string, entry = 'selectThresholds'): void {
  if (!(typeof rate === 'number' && rate > 0 && rate < 1)) {
    throw new PartscanError('OPTIONS', `Invalid ${entry} option ${field}: must be a rate in (0, 1), got ${String(rate)}.`, { remedy: 'use e.g. 0.01 for 1 %' });
  }
}

/**
 * Checks the operating-point options before any work: rates in (0, 1), a review band above the target,
 * a band in range, finite manual thresholds, and labelled defects for the F1 rule. Throws 'OPTIONS'
 * naming the option. Returns the target and rule with their defaults.
 */
export function checkThresholdOptions(opts: ThresholdOptions, hasDefects: boolean, entry = 'selectThresholds'): { target: number; rule: ThresholdRule } {
  const target = opts.falseRejectTarget ?? DEFAULT_FALSE_REJECT_TARGET;
  checkRate(target, 'falseRejectTarget', entry);
  if (opts.reviewBand !== undefined) {
    checkRate(opts.reviewBand, 'reviewBand', entry);
    if (!(opts.reviewBand > target)) {
      throw new PartscanError('OPTIONS', `Invalid ${entry} option reviewBand: ${opts.reviewBand} must be a higher false-reject rate than the target ${target}.`, {
        remedy: 'e.g. --false-reject 0.01 --review-band 0.05: parts between the 5 % and the 1 % thresholds are UNCERTAIN',
      });
    }
  }
  if (opts.band) validateBand(opts.band);
  for (const [which, v] of Object.entries(opts.manual ?? {})) {
    if (v !== undefined && !Number.isFinite(v)) {
      throw new PartscanError('OPTIONS', `Invalid ${entry} option manual.${which}: the manual threshold must be a finite number, got ${v}.`, { remedy: `pass a raw ${which} score, or leave it out to calibrate` });
    }
  }
  const rule = opts.rule ?? 'false-reject';
  if (rule === 'f1' && !hasDefects && opts.manual?.image === undefined) {
    throw new PartscanError('OPTIONS', `Invalid ${entry} option thresholdRule: 'f1' needs labelled defective images; none were given.`, {
      remedy: 'pass --defects <root or csv>, or use the default false-reject rule',
    });
  }
  return { target, rule };
}

function checkOptions(cal: CalibrationScores, opts: ThresholdOptions): { target: number; rule: ThresholdRule } {
  const checked = checkThresholdOptions(opts, (cal.defect?.imageScores.length ?? 0) > 0);
  if (cal.good.imageScores.length === 0) {
    throw new PartscanError('THRESHOLD', 'Cannot calibrate thresholds without out-of-sample scores of good images.', {
      remedy: 'fit on more good images (20 or more), or pass --calibration <dir>',
    });
  }
  checkFinite(cal.good.imageScores, 'good image scores');
  checkFinite(cal.good.mapMaxima, 'good map maxima');
  checkFinite(cal.defect?.imageScores ?? [], 'defect image scores');
  return checked;
}

/** The image threshold by the rule; `tail` is the good scores' tail. */
function imageThreshold(cal: CalibrationScores, rule: ThresholdRule, target: number, tail: TailFit | undefined): { value: number; method: ThresholdMethod } {
  if (rule === 'false-reject') return { value: tailQuantile(tail!, target), method: 'false-reject' };
  if (rule === 'f1') {
    const good = Array.from(cal.good.imageScores);
    const bad = Array.from(cal.defect!.imageScores);
    const labels = [...good.map(() => 0 as const), ...bad.map(() => 1 as const)];
    return { value: f1AdaptiveThreshold([...good, ...bad], labels).threshold, method: 'f1-adaptive' };
  }
  return { value: thresholdFromGood(cal.good.imageScores, rule), method: rule.kind === 'quantile' ? 'good-quantile' : 'good-sigma' };
}

/** The pixel threshold by the rule; `tail` is the tail of the good map maxima. */
function pixelThreshold(cal: CalibrationScores, rule: ThresholdRule, target: number, tail: TailFit | undefined, warnings: PartscanWarning[]): { value: number; method: ThresholdMethod } {
  const d = cal.defect;
  if (rule === 'f1') {
    if (d?.pixelMaps?.length && d.masks && cal.good.pixelMaps?.length && d.masks.some((m) => Array.prototype.some.call(m, (v: number) => v !== 0))) {
      return { value: pixelF1Threshold(cal.good.pixelMaps, d.pixelMaps, d.masks).threshold, method: 'f1-adaptive' };
    }
    warnings.push({
      code: 'PIXEL_THRESHOLD_GOOD_ONLY',
      message: 'No ground-truth masks with defect pixels for the defective images: the pixel threshold comes from the good images (at the false-reject target).',
    });
  }
  if ((rule === 'false-reject' || rule === 'f1') && tail) return { value: tailQuantile(tail, target), method: 'false-reject' };
  if (rule === 'false-reject' || rule === 'f1') return { value: thresholdFromGood(cal.good.mapMaxima), method: 'good-sigma' };
  return { value: thresholdFromGood(cal.good.mapMaxima, rule), method: rule.kind === 'quantile' ? 'good-quantile' : 'good-sigma' };
}

function rangeOf(...lists: ArrayLike<number>[]): ScoreRange {
  let min = Infinity;
  let max = -Infinity;
  for (const l of lists) {
    for (let i = 0; i < l.length; i++) {
      if (l[i]! < min) min = l[i]!;
      if (l[i]! > max) max = l[i]!;
    }
  }
  return { min, max };
}

/** Escapes (defects at or below the threshold) with their Clopper–Pearson interval. */
function escapeAt(defectScores: ArrayLike<number>, threshold: number): NonNullable<OperatingPoint['escape']> {
  let escapes = 0;
  for (let i = 0; i < defectScores.length; i++) if (!(defectScores[i]! > threshold)) escapes++;
  const ci = clopperPearson(escapes, defectScores.length);
  return { rate: ci.rate, lower95: ci.lower, upper95: ci.upper, defects: defectScores.length };
}

/**
 * Chooses the image and pixel thresholds from out-of-sample good scores (and labelled defects) by the
 * rule (see the module comment), and records the operating point: the false-reject rate estimated at
 * the image threshold with its 95 % upper bound, the share of good parts expected to show a region, and
 * the escape rate on labelled defects. Throws 'OPTIONS' for invalid options (rates outside (0, 1), a
 * review band below the target, F1 without defects) and 'THRESHOLD' without good scores.
 */
export function selectThresholds(cal: CalibrationScores, opts: ThresholdOptions = {}): ThresholdSelection {
  const { target, rule } = checkOptions(cal, opts);
  const warnings: PartscanWarning[] = [];
  // The tails need a few good scores; the F1, good-only and manual rules do not (their rates then go unreported).
  const tails = cal.good.imageScores.length >= MIN_TAIL_SCORES ? { image: fitExponentialTail(cal.good.imageScores), pixel: fitExponentialTail(cal.good.mapMaxima) } : undefined;
  if (!tails && rule === 'false-reject' && !(opts.manual?.image !== undefined && opts.manual.pixel !== undefined)) {
    throw new PartscanError('THRESHOLD', `Thresholds at a false-reject rate need at least ${MIN_TAIL_SCORES} out-of-sample good scores; got ${cal.good.imageScores.length}.`, {
      remedy: 'fit on more good images (20 or more), or pass --calibration <dir>',
    });
  }
  const image = opts.manual?.image !== undefined ? { value: opts.manual.image, method: 'manual' as const } : imageThreshold(cal, rule, target, tails?.image);
  const pixel = opts.manual?.pixel !== undefined ? { value: opts.manual.pixel, method: 'manual' as const } : pixelThreshold(cal, rule, target, tails?.pixel, warnings);
  const defectScores = cal.defect?.imageScores ?? [];
  const thresholds: Thresholds = {
    image: image.value,
    pixel: pixel.value,
    method: { image: image.method, pixel: pixel.method },
    imageStats: rangeOf(cal.good.imageScores, defectScores),
    pixelStats: rangeOf(cal.good.mapMinima, cal.good.mapMaxima),
  };
  if (opts.band) thresholds.band = { ...opts.band };
  if (!tails) return { thresholds, warnings };
  const op: OperatingPoint = {
    falseRejectTarget: target,
    goodScores: { used: cal.good.imageScores.length, excluded: cal.good.excluded ?? 0 },
    image: { rate: tailExceedance(tails.image, image.value), upper95: tailExceedanceUpper95(tails.image, image.value), tail: tailSummary(tails.image) },
    pixel: { rate: tailExceedance(tails.pixel, pixel.value), upper95: tailExceedanceUpper95(tails.pixel, pixel.value), tail: tailSummary(tails.pixel) },
  };
  if (defectScores.length) op.escape = escapeAt(defectScores, image.value);
  if (!opts.band && opts.reviewBand !== undefined) {
    const low = tailQuantile(tails.image, opts.reviewBand);
    op.reviewBand = { falseRejectRate: opts.reviewBand, threshold: low };
    thresholds.band = { low: Math.min(0.5, normalizeScore(low, imageNormalization(thresholds))), high: 0.5 };
  }
  thresholds.operatingPoint = op;
  warnings.push(...operatingPointWarnings(op, rule));
  return { thresholds, warnings };
}

/** Caveats about an operating point: few good images, a bound far above the target. */
function operatingPointWarnings(op: OperatingPoint, rule: ThresholdRule): PartscanWarning[] {
  const out: PartscanWarning[] = [];
  const pct = (r: number): string => `${(100 * r).toFixed(r > 0 && r < 0.00995 ? 2 : 1)}%`;
  if (op.goodScores.used < FEW_GOOD_IMAGES || op.image.upper95 > 3 * op.falseRejectTarget) {
    out.push({
      code: 'FEW_CALIBRATION_IMAGES',
      message:
        `The false-reject rate at the image threshold is estimated at ${pct(op.image.rate)} from ${op.goodScores.used} good images, ` +
        `but could be as high as ${pct(op.image.upper95)} (95% bound): fit on more good images (hundreds for a target of ${pct(op.falseRejectTarget)}).`,
    });
  }
  if (typeof rule === 'object') {
    out.push({
      code: 'THRESHOLD_GOOD_ONLY',
      message: `The thresholds follow the good-only rule ${describeRule(rule)}; the default rule sets them at a stated false-reject rate instead.`,
    });
  }
  return out;
}
