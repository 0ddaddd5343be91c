/**
 * Whole-image drift detection. A model fitted on good parts silently assumes the imaging conditions
 * of its training set; when the lamp ages, the exposure changes or the lens is knocked out of focus,
 * every image shifts at once. This module fits a robust per-feature Gaussian to global descriptors
 * of the training images (e.g. {@link GLOBAL_STATS_FEATURES}, optionally followed by pooled CNN
 * features — any number of dimensions) and flags new images whose descriptors leave that range.
 *
 * Per feature j, on t(x) = ln x when every training value is > 0 (brightness, contrast, sharpness…
 * change multiplicatively: a ×0.6 and a ×1.67 exposure are equally far; a blur that removes 95 % of
 * the sharpness is far, where on a linear scale a quantity bounded by 0 could never be more than a
 * few scales below its median), else t(x) = x:
 * centre c_j = median t, scale s_j = max(1.4826·MAD_j, floor_j), z_j = (t(x_j) − c_j) / s_j,
 * score = max_j |z_j|, flag when score > k. The floor is `relativeFloor` for log features (a
 * fraction: 0.015 ≈ 1.5 %) and max(relativeFloor·|c_j|, absoluteFloor) for linear ones.
 * - median/MAD, not mean/std, so a few odd training images (which the training-set guards may not
 *   have caught) do not widen the accepted range;
 * - the floor keeps a training set with almost no variation (same lamp, same minute) from alarming
 *   on changes nobody would call drift: a log feature must change by more than about k·relativeFloor
 *   before it can flag.
 * See {@link DEFAULT_DRIFT_K} for the measured false-alarm and detection rates of the defaults.
 *
 * With many dimensions (pooled CNN features) the maximum of many |z| grows by chance; raise k (about
 * +1 per tenfold more dimensions) when appending such features.
 *
 * A {@link DriftModel} is plain JSON (numbers, strings), so it can be stored in the model file as is
 * and read back with {@link parseDriftModel}.
 */

import { z } from 'zod';
import { PartscanError } from '../errors.js';
import { MAD_TO_SIGMA, median } from './robust-stats.js';

/** A fitted drift model: plain JSON. */
export interface DriftModel {
  /** Format tag. */
  kind: 'partscan-drift';
  /** Format version. */
  version: 1;
  /** Feature names, one per descriptor dimension. */
  features: string[];
  /**
   * Per-feature scale: 'log' when every training value was > 0 (the model works on ln x and reasons
   * report percent changes, "brightness +35% vs training"), else 'linear' (reasons report the
   * difference).
   */
  transform: ('log' | 'linear')[];
  /** Per-feature centre: median of the transformed training values. */
  center: number[];
  /** Per-feature robust scale of the transformed values (1.4826·MAD, floored). */
  scale: number[];
  /** Flag threshold on max |z|. */
  k: number;
  /** Number of training descriptors the model was fitted on. */
  n: number;
}

/** Options of {@link fitDriftModel}. */
export interface DriftFitOptions {
  /** Feature names (default `f0`, `f1`, …). */
  names?: readonly string[];
  /** Flag threshold on max |z| (default {@link DEFAULT_DRIFT_K}). */
  k?: number;
  /**
   * Scale floor: for log features in ln units (≈ a fraction of the value), for linear features as a
   * fraction of |median| (default {@link DEFAULT_RELATIVE_FLOOR}).
   */
  relativeFloor?: number;
  /** Absolute scale floor of linear features, one for all or one per feature (default 1e-6). */
  absoluteFloor?: number | readonly number[];
}

/** Result of {@link driftScore}. */
export interface DriftResult {
  /** max |z| over features. */
  score: number;
  /** score > model.k. */
  flag: boolean;
  /** One line per feature with |z| > k, largest first, e.g. 'brightness +35% vs training (z = 7.1)'. */
  reasons: string[];
  /** Per-feature z values, in the model's feature order. */
  z: number[];
}

/**
 * Default flag threshold on max |z|. Measured with the default floor on MVTec bottle (fit on 40
 * train/good images, every 5th): held-out good images score at most 2.2 (0 of 20 test/good and 0 of
 * 169 other train/good flagged); shifted copies of the 20 test/good images score ≥ 6.2 and are all
 * flagged — brightness ×1.4 (clipped: +13 % mean) and ×0.6, contrast ×1.3 and ×0.7 around 128,
 * warm shift R×1.1/B×0.9 and R×1.15/B×0.85, Gaussian blur σ = 3 (sharpness −94 %). Brightness ×1.15
 * and blur σ = 1 are mostly not flagged: they are within a few floors of training.
 */
export const DEFAULT_DRIFT_K = 5;
/**
 * Default scale floor: 1.5 % of the value (ln units for log features). With k = 5 a feature must move
 * by ≥ ~7.5 % before it can flag, however uniform the training images were.
 */
export const DEFAULT_RELATIVE_FLOOR = 0.015;
/** Throws 'INVALID_TENSOR' unless every value is finite. */
function assertFiniteDescriptor(d: readonly number[], what: string): void {
  for (let j = 0; j < d.length; j++) {
    if (!Number.isFinite(d[j]!)) {
      throw new PartscanError('INVALID_TENSOR', `${what} has a non-finite value (${d[j]}) at dimension ${j}.`, {
        remedy: 'check the image decoded correctly; descriptors must be finite numbers',
      });
    }
  }
}

/**
 * Fits a {@link DriftModel} to training descriptors (one row per image, all the same length).
 * Throws 'TRAINING_SET' without descriptors, 'INVALID_TENSOR' for ragged or non-finite rows and
 * 'OPTIONS' for bad options.
 */
export function fitDriftModel(descriptors: readonly (readonly number[])[], options: DriftFitOptions = {}): DriftModel {
  const n = descriptors.length;
  if (n === 0) {
    throw new PartscanError('TRAINING_SET', 'Cannot fit a drift model without training descriptors.', {
      remedy: 'pass the descriptors of the good training images',
    });
  }
  const d = descriptors[0]!.length;
  descriptors.forEach((row, i) => {
    if (row.length !== d) {
      throw new PartscanError('INVALID_TENSOR', `Descriptor ${i} has ${row.length} values, descriptor 0 has ${d}.`, {
        remedy: 'compute every descriptor the same way',
      });
    }
    assertFiniteDescriptor(row, `Descriptor ${i}`);
  });
  const k = options.k ?? DEFAULT_DRIFT_K;
  const relativeFloor = options.relativeFloor ?? DEFAULT_RELATIVE_FLOOR;
  const absoluteFloor = options.absoluteFloor ?? 1e-6;
  const names = options.names ? [...options.names] : Array.from({ length: d }, (_, j) => `f${j}`);
  const floors = typeof absoluteFloor === 'number' ? new Array<number>(d).fill(absoluteFloor) : [...absoluteFloor];
  if (
    !(k > 0) ||
    !(relativeFloor >= 0) ||
    names.length !== d ||
    floors.length !== d ||
    floors.some((f) => !(f > 0))
  ) {
    throw new PartscanError(
      'OPTIONS',
      `Invalid drift model options (k ${k}, relativeFloor ${relativeFloor}, ${names.length} names and ${floors.length} floors for ${d} features).`,
      { remedy: 'use k > 0, relativeFloor ≥ 0, absolute floors > 0, and one name/floor per feature' },
    );
  }
  const transform: ('log' | 'linear')[] = [];
  const center: number[] = [];
  const scale: number[] = [];
  const column = new Float64Array(n);
  for (let j = 0; j < d; j++) {
    const log = descriptors.every((row) => row[j]! > 0);
    for (let i = 0; i < n; i++) column[i] = log ? Math.log(descriptors[i]![j]!) : descriptors[i]![j]!;
    const c = median(column);
    const mad = median(column.map((v) => Math.abs(v - c)));
    const floor = log ? relativeFloor : Math.max(relativeFloor * Math.abs(c), floors[j]!);
    transform.push(log ? 'log' : 'linear');
    center.push(c);
    // A zero floor (relativeFloor 0 on a log feature) with zero MAD would divide by zero.
    scale.push(Math.max(MAD_TO_SIGMA * mad, floor, 1e-12));
  }
  return { kind: 'partscan-drift', version: 1, features: names, transform, center, scale, k, n };
}

/** Formats a signed number with an explicit '+'. */
function signed(x: number, digits: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;
}

/**
 * Scores one descriptor against a drift model: per-feature z, score = max |z|, flag = score > k,
 * and a human-readable reason for each feature beyond k. Throws 'INVALID_TENSOR' when the descriptor
 * length differs from the model's or a value is not finite.
 */
export function driftScore(model: DriftModel, descriptor: readonly number[]): DriftResult {
  if (descriptor.length !== model.features.length) {
    throw new PartscanError(
      'INVALID_TENSOR',
      `Drift descriptor has ${descriptor.length} values but the drift model has ${model.features.length} features.`,
      { remedy: 'compute the descriptor with the same recipe the drift model was fitted with' },
    );
  }
  assertFiniteDescriptor(descriptor, 'Drift descriptor');
  // A non-positive value of a log feature (a black frame's brightness) is clamped to a tiny positive
  // number: its z is then huge, and finite, so results stay JSON-serialisable.
  const t = descriptor.map((x, j) => (model.transform[j] === 'log' ? Math.log(Math.max(x, 1e-12)) : x));
  const zs = t.map((x, j) => (x - model.center[j]!) / model.scale[j]!);
  let score = 0;
  for (const v of zs) score = Math.max(score, Math.abs(v));
  const reasons = zs
    .map((v, j) => ({ v, j }))
    .filter(({ v }) => Math.abs(v) > model.k)
    .sort((a, b) => Math.abs(b.v) - Math.abs(a.v))
    .map(({ v, j }) => {
      const name = model.features[j]!;
      const delta = t[j]! - model.center[j]!;
      const change = model.transform[j] === 'log' ? `${signed(Math.expm1(delta) * 100, 0)}%` : signed(delta, 3);
      return `${name} ${change} vs training (z = ${signed(v, 1)})`;
    });
  return { score, flag: score > model.k, reasons, z: zs };
}

/** The schema of a {@link DriftModel} (also part of the model header's schema). */
export const driftModelSchema = z
  .object({
    kind: z.literal('partscan-drift'),
    version: z.literal(1),
    features: z.array(z.string()),
    transform: z.array(z.enum(['log', 'linear'])),
    center: z.array(z.number()),
    scale: z.array(z.number().positive()),
    k: z.number().positive(),
    n: z.number().int().positive(),
  })
  .refine(
    (m) =>
      m.transform.length === m.features.length && m.center.length === m.features.length && m.scale.length === m.features.length,
    { message: 'features, transform, center and scale must have the same length' },
  );

/**
 * Validates a drift model read back from JSON. Throws 'MODEL_FORMAT' (with the validation details)
 * when it is not a {@link DriftModel}.
 */
export function parseDriftModel(json: unknown, file?: string): DriftModel {
  const parsed = driftModelSchema.safeParse(json);
  if (!parsed.success) {
    throw new PartscanError(
      'MODEL_FORMAT',
      `Invalid drift model: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}.`,
      { ...(file !== undefined ? { file } : {}), remedy: 'refit the model, or remove the drift section to disable drift checks' },
    );
  }
  return parsed.data as DriftModel;
}
