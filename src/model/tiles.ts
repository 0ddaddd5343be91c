/**
 * Tiled scoring of large images: the image is cut into overlapping tiles at native resolution, each
 * tile is scored as one model input, and the tile maps are stitched back into one map of the image.
 */

import { PartscanError } from '../errors.js';
import { preprocessTiles, type TileBox } from '../preprocess/preprocess.js';
import { resizeBilinear } from '../postprocess/resize.js';
import type { ImageInfo, PreprocessOptions, Tensor4D } from '../types.js';
import type { ScoreInput } from './types.js';

/** One image's stitched map at native resolution, with its image score. */
export interface TiledMap {
  /** The stitched raw anomaly map, info.width × info.height. */
  map: Float32Array;
  /** The original image facts. */
  info: ImageInfo;
  /** The maximum over the tile maps (blending can only lower a peak inside an overlap). */
  mapMax: number;
  /** The image score: the maximum over the tiles' standardised scores, or `mapMax` for models without a standardisation. */
  imageScore: number;
}

/**
 * Scores one image tile by tile at native resolution and stitches the maps with overlap blending.
 * `anomalyMaps` turns a batch of preprocessed tiles [n,3,S,S] into one S×S map per tile.
 */
export async function tiledAnomalyMap(
  input: ScoreInput,
  tiling: { tile: number; overlap: number },
  preprocess: PreprocessOptions,
  S: number,
  batchSize: number,
  scoreMaps: (batch: Tensor4D) => Promise<{ maps: Float32Array[]; imageScores?: Float32Array }>,
): Promise<TiledMap> {
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) {
    throw new PartscanError('OPTIONS', 'Tiled models score image files or encoded bytes, not tensors.', {
      remedy: 'pass the image path or bytes',
    });
  }
  const { tile, overlap } = tiling;
  const t = await preprocessTiles(input, preprocess, tile, overlap);
  const per = 3 * S * S;
  const tileMaps: Float32Array[] = [];
  let tileScoreMax = -Infinity;
  for (let i = 0; i < t.boxes.length; i += batchSize) {
    const n = Math.min(batchSize, t.boxes.length - i);
    const b = await scoreMaps({ data: t.tensor.subarray(i * per, (i + n) * per), dims: [n, 3, S, S] });
    tileMaps.push(...b.maps);
    if (b.imageScores) for (const v of b.imageScores) tileScoreMax = Math.max(tileScoreMax, v);
  }
  const { width, height } = t.info;
  const map = stitchTiles(tileMaps, t.boxes, S, width, height, overlap);
  // The image score is the max over tiles (blending can only lower a peak inside an overlap).
  let tileMax = -Infinity;
  for (const m of tileMaps) for (let i = 0; i < m.length; i++) if (m[i]! > tileMax) tileMax = m[i]!;
  return { map, info: t.info, mapMax: tileMax, imageScore: tileScoreMax > -Infinity ? tileScoreMax : tileMax };
}

/**
 * Stitches per-tile maps (S×S each) into a width×height map: each tile map is resized to its box and
 * blended with weights that ramp linearly across the overlap, so seams do not show; pixels covered by
 * one tile take that tile's value.
 */
export function stitchTiles(maps: Float32Array[], boxes: TileBox[], S: number, width: number, height: number, overlap: number): Float32Array {
  const acc = new Float64Array(width * height);
  const wsum = new Float64Array(width * height);
  const ramp = Math.max(1, overlap);
  boxes.forEach((b, k) => {
    const m = b.width === S && b.height === S ? maps[k]! : resizeBilinear(maps[k]!, S, S, b.width, b.height);
    for (let y = 0; y < b.height; y++) {
      const wy = Math.max(1e-3, Math.min(1, (y + 0.5) / ramp, (b.height - y - 0.5) / ramp));
      for (let x = 0; x < b.width; x++) {
        const wx = Math.max(1e-3, Math.min(1, (x + 0.5) / ramp, (b.width - x - 0.5) / ramp));
        const w = wx * wy;
        const o = (b.y + y) * width + b.x + x;
        acc[o]! += w * m[y * b.width + x]!;
        wsum[o]! += w;
      }
    }
  });
  const out = new Float32Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = acc[i]! / wsum[i]!;
  return out;
}
