/**
 * From a normalised anomaly map to a binary defect mask and a list of connected defect regions.
 */

import { PartscanError } from '../errors.js';
import { morphClose, morphOpen } from './morphology.js';
import type { MapWindow } from './resize.js';
import { assertMapShape } from './shape.js';

/** A box in pixels: top-left corner and size. */
export interface PixelBox {
  /** Leftmost column. */
  x: number;
  /** Topmost row. */
  y: number;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** A point in pixel-index coordinates: the first pixel's centre is (0, 0). */
export interface PixelPoint {
  /** Column. */
  x: number;
  /** Row. */
  y: number;
}

/**
 * One connected defect region (8-connectivity) of a mask. A scored image's regions
 * ({@link ScoreResult.regions}, results.json, the report) give `bbox`, `centroid` and `areaPx` in the
 * source image's pixels, and the same region on the anomaly map (model resolution, where the mask is
 * computed) as `mapBbox`, `mapCentroid` and `mapAreaPx`. {@link connectedRegions} alone knows only the
 * map: there both are the same.
 */
export interface Region {
  /** 1-based rank: 1 is the region with the highest peak score. */
  id: number;
  /** Number of source-image pixels the region covers (its map pixels times the pixels each one covers, rounded). */
  areaPx: number;
  /** Area as a percentage of the whole image (or map), 0..100. */
  areaPercent: number;
  /** Bounding box in source-image pixels: every source pixel a region pixel of the map covers. */
  bbox: PixelBox;
  /** Mean position in source-image pixels (pixel-index coordinates: the first pixel's centre is (0, 0)). */
  centroid: PixelPoint;
  /** Bounding box on the anomaly map (model resolution, or the stitched map of a tiled model). */
  mapBbox: PixelBox;
  /** Mean position on the anomaly map. */
  mapCentroid: PixelPoint;
  /** Number of map pixels (what `minArea` compares with). */
  mapAreaPx: number;
  /** Highest score inside the region. */
  peakScore: number;
  /** Mean score inside the region. */
  meanScore: number;
}

/**
 * Regions found on a `mapWidth`×`mapHeight` map, in the pixels of the image the map stretches over
 * (as the anomaly map is upsampled onto the photo): `window` is the part of the image the map covers
 * (the whole image, or a centre crop's part: {@link cropWindow}), each map pixel covering
 * `window.width / mapWidth` × `window.height / mapHeight` image pixels. The box covers every image pixel
 * a region pixel touches; the centroid maps centre to centre. The `map*` fields are kept as they were.
 */
export function regionsInImage(regions: readonly Region[], mapWidth: number, mapHeight: number, window: MapWindow): Region[] {
  const sx = window.width / mapWidth;
  const sy = window.height / mapHeight;
  if (sx === 1 && sy === 1 && window.x === 0 && window.y === 0) return regions.map((r) => ({ ...r }));
  return regions.map((r) => {
    const m = r.mapBbox;
    const x0 = Math.floor(m.x * sx + 1e-9);
    const y0 = Math.floor(m.y * sy + 1e-9);
    const x1 = Math.min(window.width, Math.ceil((m.x + m.width) * sx - 1e-9));
    const y1 = Math.min(window.height, Math.ceil((m.y + m.height) * sy - 1e-9));
    return {
      ...r,
      areaPx: Math.round(r.mapAreaPx * sx * sy),
      bbox: { x: window.x + x0, y: window.y + y0, width: x1 - x0, height: y1 - y0 },
      centroid: { x: window.x + (r.mapCentroid.x + 0.5) * sx - 0.5, y: window.y + (r.mapCentroid.y + 0.5) * sy - 0.5 },
    };
  });
}

/** Options for {@link connectedRegions}. */
export interface RegionOptions {
  /** Regions with fewer pixels are dropped (default 0: keep all). */
  minArea?: number;
}

/**
 * The defect mask of a normalised map: 1 where the score is strictly above `threshold` (default
 * 0.5, the calibrated threshold in normalised units) and the ROI says "inspect", else 0. `roi`: 1 (any
 * non-zero) = inspect, 0 = don't care; ignored pixels are never set, whatever their score. NaN scores
 * are never set. Throws 'MASK' when the ROI has a different number of pixels than the map.
 */
export function binaryMask(normMap: ArrayLike<number>, threshold = 0.5, roi?: ArrayLike<number>): Uint8Array {
  if (roi && roi.length !== normMap.length) {
    throw new PartscanError(
      'MASK',
      `The ROI mask has ${roi.length} pixels but the anomaly map has ${normMap.length}.`,
      { remedy: 'give an ROI mask of the same size as the map (see readRoiMask for image files)' },
    );
  }
  const out = new Uint8Array(normMap.length);
  for (let i = 0; i < normMap.length; i++) {
    out[i] = normMap[i]! > threshold && (!roi || roi[i]) ? 1 : 0;
  }
  return out;
}

/**
 * Connected components of `mask` under 8-connectivity (diagonal neighbours join), measured on
 * `scoreMap` (usually the normalised anomaly map). Iterative flood fill with an explicit queue, so
 * large blobs cannot overflow the stack. Regions smaller than `minArea` pixels are dropped; the rest
 * are sorted by peak score (descending; ties: larger area first, then reading order) and numbered
 * from 1 in that order.
 */
export function connectedRegions(
  mask: ArrayLike<number>,
  w: number,
  h: number,
  scoreMap: ArrayLike<number>,
  opts: RegionOptions = {},
): Region[] {
  assertMapShape(mask, w, h, 'mask');
  assertMapShape(scoreMap, w, h, 'score map');
  const minArea = opts.minArea ?? 0;
  if (!Number.isFinite(minArea) || minArea < 0) {
    throw new PartscanError('OPTIONS', `Minimum region area must be a number ≥ 0, got ${minArea}.`, {
      remedy: 'use 0 to keep every region, or a pixel count',
    });
  }
  const n = w * h;
  const seen = new Uint8Array(n);
  const queue = new Int32Array(n);
  const found: (Omit<Region, 'id'> & { first: number })[] = [];
  for (let start = 0; start < n; start++) {
    if (!mask[start] || seen[start]) continue;
    seen[start] = 1;
    let head = 0;
    let tail = 0;
    queue[tail++] = start;
    let area = 0;
    let sumX = 0;
    let sumY = 0;
    let sumScore = 0;
    let peak = -Infinity;
    let minX = w;
    let minY = h;
    let maxX = -1;
    let maxY = -1;
    while (head < tail) {
      const p = queue[head++]!;
      const y = (p / w) | 0;
      const x = p - y * w;
      area++;
      sumX += x;
      sumY += y;
      const s = scoreMap[p]!;
      sumScore += s;
      if (s > peak) peak = s;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
      const y0 = y > 0 ? y - 1 : 0;
      const y1 = y < h - 1 ? y + 1 : h - 1;
      const x0 = x > 0 ? x - 1 : 0;
      const x1 = x < w - 1 ? x + 1 : w - 1;
      for (let ny = y0; ny <= y1; ny++) {
        for (let nx = x0; nx <= x1; nx++) {
          const q = ny * w + nx;
          if (mask[q] && !seen[q]) {
            seen[q] = 1;
            queue[tail++] = q;
          }
        }
      }
    }
    if (area < minArea) continue;
    const bbox = { x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1 };
    const centroid = { x: sumX / area, y: sumY / area };
    found.push({
      first: start,
      areaPx: area,
      areaPercent: (100 * area) / n,
      bbox,
      centroid,
      mapBbox: { ...bbox },
      mapCentroid: { ...centroid },
      mapAreaPx: area,
      peakScore: peak,
      meanScore: sumScore / area,
    });
  }
  found.sort((a, b) => b.peakScore - a.peakScore || b.areaPx - a.areaPx || a.first - b.first);
  return found.map(({ first: _first, ...r }, i) => ({ id: i + 1, ...r }));
}

/** Options for {@link extractRegions}. */
export interface ExtractRegionsOptions {
  /** Normalised threshold (default 0.5). */
  threshold?: number;
  /** Region of interest, 1 = inspect, 0 = don't care (same size as the map). */
  roi?: ArrayLike<number>;
  /** Opening radius for speck removal (default 0: off). */
  openRadius?: number;
  /** Closing radius for hole filling (default 0: off). */
  closeRadius?: number;
  /** Minimum region area in pixels (default 0). */
  minArea?: number;
}

/** Result of {@link extractRegions}. */
export interface ExtractedRegions {
  /** The cleaned 0/1 defect mask. */
  mask: Uint8Array;
  /** Its connected regions, highest peak first. */
  regions: Region[];
}

/**
 * The whole mask pipeline on a normalised `h×w` map: threshold (with ROI), optional opening then
 * closing, connected regions. The returned mask is the cleaned one; pixels outside the ROI stay 0
 * (closing could otherwise grow into them). Region filtering by `minArea` does not remove pixels
 * from the mask.
 */
export function extractRegions(
  normMap: ArrayLike<number>,
  w: number,
  h: number,
  opts: ExtractRegionsOptions = {},
): ExtractedRegions {
  assertMapShape(normMap, w, h, 'anomaly map');
  let mask = binaryMask(normMap, opts.threshold ?? 0.5, opts.roi);
  if (opts.openRadius) mask = morphOpen(mask, w, h, opts.openRadius);
  if (opts.closeRadius) {
    mask = morphClose(mask, w, h, opts.closeRadius);
    if (opts.roi) for (let i = 0; i < mask.length; i++) if (!opts.roi[i]) mask[i] = 0;
  }
  const regionOpts: RegionOptions = opts.minArea === undefined ? {} : { minArea: opts.minArea };
  return { mask, regions: connectedRegions(mask, w, h, normMap, regionOpts) };
}
