/**
 * Raw anomaly map → ScoreResult: image score, normalisation, verdict, mask and regions, and the
 * whole-image drift flag. Pure functions over what the model holds, so the model's scoring paths
 * (whole image or tiled) share one way of turning a map into a result.
 */

import { normalizeMap, normalizeScore } from '../postprocess/normalize.js';
import { extractRegions, regionsInImage } from '../postprocess/regions.js';
import { cropWindow, type MapWindow } from '../postprocess/resize.js';
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
  /** The network input side before a centre crop, when the model crops (the map then covers the crop's part of the image). */
  imageSize?: number;
}

/**
 * Builds a result from a raw anomaly map of mapWidth×mapHeight. The image score is the map's maximum
 * unless `scoreOverride` is given (tiled scoring passes the maximum over its unblended tile maps).
 */
export function buildScoreResult(
  ctx: ScoreResultContext,
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  source: string,
  info: ImageInfo | undefined,
  opts: ScoreOptions,
  scoreOverride?: number,
): ScoreResult {
  let imageScore = -Infinity;
  if (scoreOverride !== undefined) imageScore = scoreOverride;
  else for (let i = 0; i < map.length; i++) if (map[i]! > imageScore) imageScore = map[i]!;
  const result: ScoreResult = { source, imageScore, anomalyMap: map, size: ctx.size, mapWidth, mapHeight, warnings: [] };
  if (info) result.info = info;
  const window = info ? mapWindow(ctx, mapWidth, mapHeight, info) : undefined;
  if (window && (window.width !== info!.width || window.height !== info!.height)) result.mapWindow = window;
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
    // Boxes in the source image's pixels (the map stretches over the whole image); a tiled model's map
    // already has them, and a tensor's source is the tensor itself.
    const inImage = window ? regionsInImage(regions, mapWidth, mapHeight, window) : regions;
    Object.assign(result, { normalizedScore, normalizedMap, verdict: verdictOf(normalizedScore, t.band), mask, regions: inImage });
  }
  return result;
}

/**
 * The part of the source image a result's map covers: all of it (a tiled model's map is the image's
 * own size), or with a centre crop the crop's part.
 */
export function mapWindow(ctx: Pick<ScoreResultContext, 'size' | 'imageSize'>, mapWidth: number, mapHeight: number, info: { width: number; height: number }): MapWindow {
  const square = mapWidth === ctx.size && mapHeight === ctx.size;
  return square && ctx.imageSize !== undefined ? cropWindow(ctx.imageSize, ctx.size, info.width, info.height) : { x: 0, y: 0, width: info.width, height: info.height };
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
