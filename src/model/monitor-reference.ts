/**
 * What line monitoring needs to know about the fit (model format 1.2, header field `monitor`): the
 * image scores good parts get out of sample, how widely good images' drift z vary, and (format 1.4)
 * the training images' drift z themselves, the envelope a stream is compared with. A monitor compares
 * a stream of production scores with these (see src/monitor/). Plain JSON, validated on read.
 */

import { z } from 'zod';
import { PartscanError } from '../errors.js';
import { driftScore, type DriftModel } from '../guards/drift.js';
import { MAD_TO_SIGMA, median, scoreOutliers } from '../guards/robust-stats.js';

/** The calibration reference stored in a model file (header field `monitor`, format ≥ 1.2). */
export interface MonitorReference {
  /** Format tag. */
  kind: 'partscan-monitor-reference';
  /** Format version. */
  version: 1;
  /**
   * Out-of-sample image scores of good images, ascending: the held-out calibration images and, when the
   * fit computed them, the training images scored leave-one-out (same distribution, ten times more of
   * them). Scores that look like defects ({@link scoreOutliers}) are left out.
   */
  scores: number[];
  /** How many of `scores` come from the calibration images and from leave-one-out training scores. */
  sources: {
    /** Scores of calibration images. */
    calibration: number;
    /** Leave-one-out scores of training images. */
    leaveOneOut: number;
  };
  /**
   * Per drift feature (the drift model's order): the robust standard deviation (1.4826·MAD) of the
   * training images' drift z. 1 where the MAD set the drift model's scale, below 1 where its floor did,
   * 0 for a feature that never varied (e.g. the colour ratio of grayscale images): no chart for it.
   * Absent when the model has no drift model.
   */
  driftZScale?: number[];
  /**
   * The training images' drift z (format 1.4): one row per image, in the drift model's feature order,
   * at most {@link ENVELOPE_MAX_IMAGES} (evenly spaced in fit order beyond that), 6 significant digits.
   * The monitor's envelope charts ask whether a stream lies among these images, wherever in a varied
   * training set (setups, lots) it comes from. Absent in older files and without a drift model.
   */
  envelope?: {
    /** Drift z per training image. */
    z: number[][];
  };
}

/** Most training images stored for the envelope: bounds the header (about 90 bytes per image) and the monitor's start-up. */
export const ENVELOPE_MAX_IMAGES = 2000;

/**
 * Builds the reference from a fit's out-of-sample good scores and the training images' drift
 * descriptors. Returns undefined when there are fewer than 5 usable scores (no meaningful reference).
 */
export function buildMonitorReference(input: {
  calibrationScores: readonly number[];
  looScores?: readonly number[];
  drift?: DriftModel;
  trainingDescriptors?: readonly (readonly number[])[];
}): MonitorReference | undefined {
  const loo = input.looScores ?? [];
  const pool = [...loo, ...input.calibrationScores].filter((s) => Number.isFinite(s));
  if (pool.length < 5) return undefined;
  const { outlier } = scoreOutliers(pool);
  const keptLoo = loo.filter((_, i) => !outlier[i]).length;
  const scores = pool.filter((_, i) => !outlier[i]).sort((a, b) => a - b).map(float32Json);
  if (scores.length < 5) return undefined;
  const ref: MonitorReference = {
    kind: 'partscan-monitor-reference',
    version: 1,
    scores,
    sources: { calibration: scores.length - keptLoo, leaveOneOut: keptLoo },
  };
  const descriptors = input.trainingDescriptors ?? [];
  if (input.drift && descriptors.length >= 5) {
    const zs = descriptors.map((d) => driftScore(input.drift!, d).z);
    ref.driftZScale = input.drift.features.map((_, j) => {
      const col = zs.map((row) => row[j]!);
      const c = median(col);
      return float32Json(MAD_TO_SIGMA * median(col.map((v) => Math.abs(v - c))));
    });
    ref.envelope = { z: evenlySpaced(zs, ENVELOPE_MAX_IMAGES).map((row) => row.map((v) => Number(v.toPrecision(6)))) };
  }
  return ref;
}

/** At most `max` items, evenly spaced (all of them when there are fewer). */
function evenlySpaced<T>(items: readonly T[], max: number): T[] {
  if (items.length <= max) return [...items];
  return Array.from({ length: max }, (_, i) => items[Math.floor((i * items.length) / max)]!);
}

/** A float rounded to float32 precision, written with few digits (keeps the header small and stable). */
function float32Json(x: number): number {
  return Number(Math.fround(x).toPrecision(7));
}

/** The schema of {@link MonitorReference} in a model header (part of the header schema). */
export const monitorReferenceSchema = z.object({
  kind: z.literal('partscan-monitor-reference'),
  version: z.literal(1),
  scores: z.array(z.number().finite()).min(5),
  sources: z.object({ calibration: z.number().int().nonnegative(), leaveOneOut: z.number().int().nonnegative() }),
  driftZScale: z.array(z.number().finite().nonnegative()).optional(),
  envelope: z.object({ z: z.array(z.array(z.number().finite())).min(5).max(ENVELOPE_MAX_IMAGES) }).optional(),
});

/**
 * Validates a reference read from a model header. Throws 'MODEL_FORMAT' naming the field when it is
 * not a {@link MonitorReference}; scores are re-sorted so a hand-edited file cannot break the ranks.
 */
export function parseMonitorReference(json: unknown, file?: string): MonitorReference {
  const parsed = monitorReferenceSchema.safeParse(json);
  if (!parsed.success) {
    throw new PartscanError(
      'MODEL_FORMAT',
      `Invalid monitor reference in the model header: ${parsed.error.issues.map((i) => `monitor.${i.path.join('.')}: ${i.message}`).join('; ')}.`,
      { ...(file !== undefined ? { file } : {}), remedy: 're-fit the model with calibration images, or remove the header field "monitor"' },
    );
  }
  const ref = parsed.data as MonitorReference;
  return { ...ref, scores: [...ref.scores].sort((a, b) => a - b) };
}
