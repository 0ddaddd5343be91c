/**
 * Raw anomaly map → ScoreResult: image score, normalisation, verdict, mask and regions, and the
 * whole-image drift flag. Pure functions over what the model holds, so the model's scoring paths
 * (whole image or tiled) share one way of turning a map into a result.
 */

import { normalizeMap, normalizeScore } from '../postprocess/normalize.js';
import { extractRegions } from '../postprocess/regions.js';
import { imageNormalization, pixelNormalization, verdict as verdictOf, type Thresholds } from '../postprocess/thresholds.js';
import { driftScore, type DriftModel } from '../guards/drift.js';
import { driftDescriptorFromTensor } from '../guards/tensor-descriptor.js';
import type { ImageInfo, PreprocessOptions } from '../types.js';
import type { ScoreOptions, ScoreResult } from './types.js';

/** What a result is judged against: the model's input side, thresholds and region of interest. */
export interface ScoreResultContext {
  /** Side of the model input. */
  size: number;
  /** The model's thresholds; without them the result carries the raw map and score only. */
  thresholds: Thresholds | undefined;
  /** Region of interest at model resolution (1 = inspect), if any. */
  roi: Uint8Array | undefined;
}

/** Scores computed by the scoring path beside the map (see {@link buildScoreResult}). */
export interface ScoreOverrides {
  /** The image score when it is not the map's maximum (the standardised score). */
  imageScore?: number;
  /** The raw map maximum when it is not the given map's (tiled scoring: the maximum over the unblended tile maps). */
  mapMax?: number;
}

/**
 * Builds a result from a raw anomaly map of mapWidth×mapHeight. `mapMax` is the map's maximum unless
 * given (tiled scoring passes the maximum over its unblended tile maps); the image score is `mapMax`
 * unless given (models with a per-position standardisation pass their standardised score).
 */
export function buildScoreResult(
  ctx: ScoreResultContext,
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  source: string,
  info: ImageInfo | undefined,
  opts: ScoreOptions,
  scores: ScoreOverrides = {},
): ScoreResult {
  let mapMax = -Infinity;
  if (scores.mapMax !== undefined) mapMax = scores.mapMax;
  else for (let i = 0; i < map.length; i++) if (map[i]! > mapMax) mapMax = map[i]!;
  const imageScore = scores.imageScore ?? mapMax;
  const result: ScoreResult = { source, imageScore, mapMax, anomalyMap: map, size: ctx.size, mapWidth, mapHeight, warnings: [] };
  if (info) result.info = info;
  const t = ctx.thresholds;
  if (t) {
    const normalizedScore = normalizeScore(imageScore, imageNormalization(t));
    const normalizedMap = normalizeMap(map, pixelNormalization(t));
    const { mask, regions } = extractRegions(normalizedMap, mapWidth, mapHeight, {
      threshold: 0.5,
      ...(ctx.roi && mapWidth === ctx.size && mapHeight === ctx.size ? { roi: ctx.roi } : {}),
      ...(opts.minArea !== undefined ? { minArea: opts.minArea } : {}),
      ...(opts.openRadius ? { openRadius: opts.openRadius } : {}),
      ...(opts.closeRadius ? { closeRadius: opts.closeRadius } : {}),
    });
    Object.assign(result, { normalizedScore, normalizedMap, verdict: verdictOf(normalizedScore, t.band), mask, regions });
  }
  return result;
}

/** Flags whole-image drift of image `k` of a preprocessed batch [N,3,S,S] against a drift model. */
export function addDrift(r: ScoreResult, driftModel: DriftModel, batch: Float32Array, k: number, S: number, preprocess: PreprocessOptions): void {
  const d = driftScore(driftModel, driftDescriptorFromTensor(batch, k * 3 * S * S, S, preprocess));
  r.drift = { flag: d.flag, score: d.score, reasons: d.reasons, z: d.z };
  if (d.flag) {
    r.warnings.push({
      code: 'DRIFT',
      message: `${r.source}: the whole image differs from the training images (${d.reasons.join('; ')}). Check lighting, camera and focus; the anomaly score may not be meaningful.`,
      ...(r.source.startsWith('<') ? {} : { file: r.source }),
    });
  }
}
