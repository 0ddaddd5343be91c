/**
 * Run manifests around hand-made results, for the report tests: the shape `partscan score` and
 * `partscan eval` write, with the model's thresholds given compactly (one method for image and
 * pixel, calibration spans as [min, max]).
 */

import type { ImageResult, RunManifest } from '../../src/export/results.js';
import type { ThresholdMethod, VerdictBand } from '../../src/postprocess/thresholds.js';

/** The model a test run claims to come from. */
export interface TestModel {
  path: string;
  backbone: string;
  /** Method of both thresholds. */
  method: ThresholdMethod;
  /** Raw image-score threshold. */
  image: number;
  /** Raw pixel-score threshold. */
  pixel: number;
  /** Raw image-score span of calibration, [min, max]. */
  imageSpan: readonly [number, number];
  /** Raw pixel-score span of calibration, [min, max]. */
  pixelSpan: readonly [number, number];
  band: VerdictBand;
}

/** A run manifest of `results` scored by `model`. */
export function runManifest(results: ImageResult[], model: TestModel, extra: Pick<RunManifest, 'createdAt' | 'warnings'> = {}): RunManifest {
  return {
    createdBy: 'partscan',
    version: '0.1.0',
    ...extra,
    model: {
      path: model.path,
      backbone: model.backbone,
      thresholds: {
        image: model.image,
        pixel: model.pixel,
        method: { image: model.method, pixel: model.method },
        imageStats: { min: model.imageSpan[0], max: model.imageSpan[1] },
        pixelStats: { min: model.pixelSpan[0], max: model.pixelSpan[1] },
        band: model.band,
      },
    },
    results,
  };
}
