/**
 * The public data types of scoring and fitting: what goes in (image sources, score inputs, options) and
 * what comes out (results, fit reports, progress). They live apart from the Model class so that the
 * modules that build results (score-result.ts, tiles.ts) need not import the model back.
 * FitOptions is in fit-options.ts: its `resume` field names the Model class itself.
 */

import type { PartscanWarning } from '../errors.js';
import type { Region } from '../postprocess/regions.js';
import type { Verdict } from '../postprocess/thresholds.js';
import type { Dataset, ImageInfo, Sample, Tensor4D } from '../types.js';
import type { RawFrame } from '../preprocess/raw-frame.js';

export type { RawFrame };
import type { TrainingSetReport } from '../guards/training-set.js';

/** Anything that names images: a folder or dataset root, a list of files, a loaded dataset or samples. */
export type ImageSource = string | string[] | Dataset | Sample[];

/**
 * An image to score:
 * - a file path;
 * - encoded bytes (PNG, JPEG, TIFF, WebP…) in any `Uint8Array` (a `Buffer` is one);
 * - a raw camera frame `{ data, width, height, channels: 1 | 3 | 4, stride?, order? }` ({@link RawFrame}):
 *   8-bit, row-major, interleaved, RGB order unless `order: 'bgr'`; scored like the same pixels saved as PNG;
 * - an already preprocessed [1,3,S,S] tensor `{ data: Float32Array, dims }`.
 */
export type ScoreInput = string | Uint8Array | RawFrame | Tensor4D;

/** Progress events of long operations. */
export interface ProgressEvent {
  /** Which stage is running. */
  stage: 'fit' | 'invert' | 'calibrate' | 'score';
  /** Units done. */
  done: number;
  /** Units in all. */
  total: number;
}

/** What the training-set guards found during {@link fit}. */
export interface FitReport {
  /** Images left out (exact duplicates, constant images), with reasons. */
  rejected: TrainingSetReport['rejected'];
  /** Near-duplicate pairs (kept). */
  nearDuplicates: TrainingSetReport['nearDuplicates'];
  /** Likely contaminated training images: in-sample score and robust z, highest first. */
  suspects: {
    /** The training image. */
    file: string;
    /** Its in-sample (leave-one-out) anomaly score. */
    score: number;
    /** Robust z of that score, on the log scale, among the training images. */
    z: number;
  }[];
  /** What a QA review brought (`fit --resume --review`). */
  review?: ReviewJoinSummary;
}

/** What a QA review brought to a model (`calibrate --review`, `fit --resume --review`; model/review-join.ts). */
export interface ReviewJoinSummary {
  /** Parts labelled good. */
  good: number;
  /** Parts labelled defective. */
  defect: number;
  /** Parts the calibration pool held already: their out-of-sample rows were kept, relabelled where the review said so. */
  inPool: number;
  /** Parts that joined with the scores the run recorded. */
  recorded: number;
  /** Parts scored now (the review carried no scores, or did not say which model scored its run). */
  scored: number;
  /** `fit --resume`: reviewed-good parts added to the Gaussians. */
  fitted: number;
}

/** Per-image scoring result. */
export interface ScoreResult {
  /** The input's source (path, '<buffer>', '<frame>' or '<tensor>'). */
  source: string;
  /**
   * Raw image score: the maximum of the blurred per-position standardised distance map for models that
   * have a standardisation (format ≥ 1.3, the default), else the anomaly map's maximum (= `mapMax`).
   * The threshold, the verdict and `normalizedScore` are on this score.
   */
  imageScore: number;
  /** The raw anomaly map's maximum (what the pixel threshold, masks and regions cut). */
  mapMax: number;
  /** Raw anomaly map, size×size (model input resolution), row-major. */
  anomalyMap: Float32Array;
  /** Side of the model input (`anomalyMap` is size×size unless the model is tiled). */
  size: number;
  /** Width of `anomalyMap` (= size, or the original width for tiled models). */
  mapWidth: number;
  /** Height of `anomalyMap` (= size, or the original height for tiled models). */
  mapHeight: number;
  /**
   * The part of the source image the maps cover, in its pixels, when it is not the whole image (a model
   * with a centre crop); absent: the maps stretch over the whole image.
   */
  mapWindow?: {
    /** Left edge. */
    x: number;
    /** Top edge. */
    y: number;
    /** Width. */
    width: number;
    /** Height. */
    height: number;
  };
  /** Image score normalised so the threshold is 0.5 (when the model has thresholds). */
  normalizedScore?: number;
  /** Normalised anomaly map (when the model has thresholds). */
  normalizedMap?: Float32Array;
  /** OK / NG / UNCERTAIN (when the model has thresholds). */
  verdict?: Verdict;
  /** Binary defect mask, mapWidth×mapHeight like `anomalyMap` (1 = defect), when the model has thresholds. */
  mask?: Uint8Array;
  /**
   * Defect regions, highest peak first, when the model has thresholds: `bbox`, `centroid` and `areaPx` in
   * the source image's pixels (`info.width`×`info.height`; the tensor's for tensor input), `mapBbox`,
   * `mapCentroid` and `mapAreaPx` on the anomaly map.
   */
  regions?: Region[];
  /** Original image facts (absent for tensor input). */
  info?: ImageInfo;
  /**
   * Whole-image drift vs the training images (lighting, contrast, colour temperature, focus): `flag`
   * means the image lies far outside what the model was fitted on, so its score may not be meaningful
   * even when it shows no local defect.
   */
  drift?: {
    /** `score` is above the drift model's limit. */
    flag: boolean;
    /** Max |robust z| over the global image features. */
    score: number;
    /** One line per feature beyond the limit, largest first (e.g. 'brightness +35% vs training'). */
    reasons: string[];
    /** Per-feature robust z, in the drift model's feature order. */
    z?: number[];
  };
  /** Non-fatal findings about this input. */
  warnings: PartscanWarning[];
}

/** Options of {@link Model.score}. */
export interface ScoreOptions {
  /** Images per backbone batch (default {@link Model.defaultScoreBatchSize}: 8, up to 32 for large d). */
  batchSize?: number;
  /** Minimum region area in pixels of the anomaly map (model resolution; {@link Region.mapAreaPx}; default 0). */
  minArea?: number;
  /** Morphological opening radius for mask cleanup (default 0). */
  openRadius?: number;
  /** Morphological closing radius (default 0). */
  closeRadius?: number;
  /**
   * Cancels the call: it rejects with a 'CANCELLED' {@link PartscanError} within one batch of the abort
   * (results of the batches already scored are dropped).
   */
  signal?: AbortSignal;
  /** Progress when scoring several images: one 'score' unit per image, reported after each batch. */
  onProgress?: (e: ProgressEvent) => void;
}

/** Anomaly maps of a batch, with what the scoring path computed beside them. */
export interface MapBatch {
  /** One raw anomaly map per image (S×S). */
  maps: Float32Array[];
  /** Image scores from the per-position standardisation [N]; absent when the model has none (the score is then the map's maximum). */
  imageScores?: Float32Array;
  /** Squared grid distances image-major [N, P], as transformed (stepwise path only). */
  d2?: Float32Array;
}
