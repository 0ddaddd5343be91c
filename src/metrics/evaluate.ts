/**
 * One-call evaluation of a scored test set: image- and pixel-level metrics overall and per defect
 * type. The result's key names (camelCase, like the rest of the API) are a public contract: reports, JSON output and
 * benchmark tables read them.
 */

import { PartscanError } from '../errors.js';
import { DEFAULT_FPR_LIMIT } from './aupro.js';
import { auroc } from './auroc.js';
import { binPixels, subsetPixelMetrics, type BinnedPixels } from './pixel-sweep.js';
import type { MapSize } from './common.js';
import { f1Max } from './f1.js';

/** One scored test image. */
export interface EvaluationItem {
  /** 'good' or the defect type. */
  label: string;
  /** Whether the image shows a defect. */
  anomalous: boolean;
  /** Image-level anomaly score (higher = more anomalous). */
  imageScore: number;
  /** Row-major anomaly map, when pixel metrics are wanted. */
  map?: Float32Array;
  /** Ground-truth mask, same size as `map`, non-zero = defect. Optional for good images (all-negative). */
  mask?: Uint8Array;
  /** Map width; may be omitted for square maps. */
  width?: number;
  /** Map height; may be omitted for square maps. */
  height?: number;
}

/** Options of {@link evaluateRun}. */
export interface EvaluateOptions {
  /** AUPRO integration limit (default 0.3). */
  fprLimit?: number;
}

/**
 * Metrics on one set of images. Every metric is NaN when it is undefined for the set: AUROC and F1
 * without both classes, pixel metrics without maps or without any ground-truth defect pixel.
 * (`JSON.stringify` writes NaN as null.) Pixel metrics treat scores within one bin (2^−15 relative
 * for typical maps) as tied; see src/metrics/pixel-sweep.ts for the resolution and error bound.
 */
export interface SetMetrics {
  /** Image-level ROC AUC. */
  imageAuroc: number;
  /** Pixel-level ROC AUC pooled over all pixels of all images with maps. */
  pixelAuroc: number;
  /** MVTec AUPRO up to the FPR limit, normalised to [0, 1]. */
  aupro: number;
  /** Best image-level F1 over all thresholds. */
  imageF1Max: number;
  /** Number of good images in the set. */
  nGood: number;
  /** Number of defective images in the set. */
  nDefect: number;
}

/** {@link SetMetrics} for the whole test set, plus the same metrics per defect type. */
export interface RunMetrics extends SetMetrics {
  /** Per defect type: metrics on all good images plus that type's images. */
  perDefect: Record<string, SetMetrics>;
}

/** Width and height of an item's map: explicit, or inferred for square maps. */
function mapSizeOf(item: EvaluationItem, index: number): MapSize {
  const n = item.map!.length;
  if (item.width !== undefined || item.height !== undefined) {
    const width = item.width ?? n / item.height!;
    const height = item.height ?? n / item.width!;
    if (Number.isInteger(width) && Number.isInteger(height) && width * height === n) return { width, height };
  } else {
    const side = Math.round(Math.sqrt(n));
    if (side * side === n) return { width: side, height: side };
  }
  throw new PartscanError(
    'OPTIONS',
    `Evaluation item ${index} (${item.label}) has a map of ${n} values and no matching width/height.`,
    { remedy: 'set width and height on items whose maps are not square' },
  );
}

/**
 * Metrics for a subset of items (the whole run, or good + one defect type): `inSet` marks them among
 * all items; the pixel metrics come from the run's pixels binned once ({@link binPixels}).
 */
function evaluateSet(all: readonly EvaluationItem[], inSet: Uint8Array, pixels: BinnedPixels | undefined, fprLimit: number): SetMetrics {
  const items = all.filter((_, i) => inSet[i]);
  const scores = items.map((it) => it.imageScore);
  const labels = items.map((it) => it.anomalous);
  const withMaps = items.some((it) => it.map !== undefined);
  const pixel = withMaps && pixels ? subsetPixelMetrics(pixels, inSet, fprLimit) : { pixelAuroc: NaN, aupro: NaN };
  const nDefect = labels.filter(Boolean).length;
  return {
    imageAuroc: auroc(scores, labels),
    pixelAuroc: pixel.pixelAuroc,
    aupro: pixel.aupro,
    imageF1Max: f1Max(scores, labels).f1,
    nGood: items.length - nDefect,
    nDefect,
  };
}

/**
 * Evaluates a scored test set. Overall metrics use every item; `perDefect[type]` uses all good
 * items plus the anomalous items of that type (so each type's AUROC answers "can this defect be told
 * apart from good parts"). Pixel metrics use only items that have a map; good items without a mask
 * count as all-negative, anomalous items without a mask are left out of the pixel metrics (no
 * ground truth) but still count for the image metrics.
 */
export function evaluateRun(items: readonly EvaluationItem[], options: EvaluateOptions = {}): RunMetrics {
  const fprLimit = options.fprLimit ?? DEFAULT_FPR_LIMIT;
  items.forEach((it, i) => {
    if (it.map !== undefined && it.mask !== undefined && it.mask.length !== it.map.length) {
      throw new PartscanError(
        'MASK',
        `Evaluation item ${i} (${it.label}) has a ${it.mask.length}-pixel mask for a ${it.map.length}-value map.`,
        { remedy: 'resize the ground-truth masks to the anomaly map size (nearest neighbour)' },
      );
    }
  });
  if (!(fprLimit > 0 && fprLimit <= 1)) {
    throw new PartscanError('OPTIONS', `AUPRO FPR limit must be in (0, 1], got ${fprLimit}.`, {
      remedy: 'use the standard 0.3, or another fraction of false-positive pixels',
    });
  }
  const pixels = items.some((it) => it.map !== undefined)
    ? binPixels(
        items.map((it) => it.map),
        items.map((it) => it.mask),
        items.map((it, i) => (it.map ? mapSizeOf(it, i) : undefined)),
        items.map((it) => it.anomalous),
      )
    : undefined;
  const overall = evaluateSet(items, new Uint8Array(items.length).fill(1), pixels, fprLimit);
  const perDefect: Record<string, SetMetrics> = {};
  const types = [...new Set(items.filter((it) => it.anomalous).map((it) => it.label))].sort();
  for (const type of types) {
    // All good items plus this type's, in their input order.
    const inSet = Uint8Array.from(items, (it) => (!it.anomalous || it.label === type ? 1 : 0));
    perDefect[type] = evaluateSet(items, inSet, pixels, fprLimit);
  }
  return { ...overall, perDefect };
}
