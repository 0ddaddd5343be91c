/**
 * Calibration at the end of a fit: scores the held-out good images (and labelled defects, when given)
 * with the fitted model and stores the thresholds chosen from them. Apart from fit.ts, which plans,
 * extracts and fits the statistics; the threshold rules themselves live in postprocess/threshold-rules.ts.
 */

import type { PartscanWarning } from '../errors.js';
import { scoreOutliers } from '../guards/robust-stats.js';
import { selectThresholds } from '../postprocess/threshold-rules.js';
import type { Thresholds } from '../postprocess/thresholds.js';
import type { FitOptions, Model } from './model.js';

/** Scores calibration images and stores thresholds in the model; returns the good calibration scores kept. */
export async function calibrate(model: Model, goodFiles: string[], opts: FitOptions, warnings: PartscanWarning[], previous?: Thresholds, looScores?: number[]): Promise<number[]> {
  const defects = opts.defects ?? [];
  if (goodFiles.length === 0 && !opts.manualThresholds) {
    if (previous) {
      model.setThresholds(previous);
      warnings.push({ code: 'THRESHOLDS_KEPT', message: 'No calibration images: the resumed model keeps its previous thresholds.' });
    } else {
      warnings.push({
        code: 'NO_CALIBRATION',
        message: 'No calibration images (too few good images to hold some out): the model has no thresholds, so no verdicts. Pass --calibration <dir> or more good images.',
      });
    }
    return [];
  }
  const scoreAll = async (files: string[]): Promise<{ scores: number[]; maps: Float32Array[]; dims: [number, number][] }> => {
    const scores: number[] = [];
    const maps: Float32Array[] = [];
    const dims: [number, number][] = [];
    for (let i = 0; i < files.length; i += 8) {
      const rs = await model.score(files.slice(i, i + 8));
      for (const r of rs) {
        scores.push(r.imageScore);
        maps.push(r.anomalyMap);
        dims.push([r.mapWidth, r.mapHeight]);
      }
      opts.onProgress?.({ stage: 'calibrate', done: Math.min(files.length, i + 8), total: files.length });
    }
    return { scores, maps, dims };
  };
  model.setThresholds(undefined);
  const good = goodFiles.length ? await scoreAll(goodFiles) : { scores: [], maps: [], dims: [] };
  // A held-out "good" image that scores like a defect (robust outlier among the calibration scores)
  // would set the good-only threshold on its own: leave it out and say so.
  // Judged pooled with the training images' leave-one-out scores when there are (the same out-of-sample
  // score distribution, a larger sample), else among the calibration scores alone.
  const pool = [...(looScores ?? []), ...good.scores];
  if (good.scores.length > 0 && pool.length >= 5) {
    const pooled = scoreOutliers(pool);
    const z = pooled.z.slice(pool.length - good.scores.length);
    const keep = pooled.outlier.slice(pool.length - good.scores.length).map((o) => !o);
    if (keep.some((k) => !k) && keep.filter(Boolean).length >= 3) {
      goodFiles.forEach((f, i) => {
        if (!keep[i]) {
          warnings.push({
            code: 'CALIBRATION_OUTLIER',
            message: `Calibration image ${f} scores like a defect (score ${good.scores[i]!.toFixed(2)}, robust z ${z[i]!.toFixed(1)}) and was left out of the thresholds: inspect it and remove it from the good images if it shows a defect.`,
            file: f,
          });
        }
      });
      good.scores = good.scores.filter((_, i) => keep[i]);
      good.maps = good.maps.filter((_, i) => keep[i]);
      good.dims = good.dims.filter((_, i) => keep[i]);
    }
  }
  let defect: { imageScores: number[]; pixelMaps?: Float32Array[]; masks?: Uint8Array[] } | undefined;
  if (defects.length) {
    const d = await scoreAll(defects.map((s) => s.path));
    defect = { imageScores: d.scores };
    if (defects.every((s) => s.maskPath)) {
      const { loadMask } = await import('../preprocess/preprocess.js');
      defect.pixelMaps = d.maps;
      defect.masks = await Promise.all(defects.map((s, i) => loadMask(s.maskPath!, d.dims[i]![0], d.dims[i]![1])));
    }
  }
  const sel = selectThresholds(
    { good: { imageScores: good.scores, pixelMaps: good.maps }, ...(defect ? { defect } : {}) },
    {
      ...(opts.thresholdRule ? { goodRule: opts.thresholdRule } : {}),
      ...(opts.manualThresholds ? { manual: opts.manualThresholds } : {}),
      ...(opts.band ? { band: opts.band } : {}),
    },
  );
  warnings.push(...sel.warnings);
  model.setThresholds(sel.thresholds);
  return good.scores;
}
