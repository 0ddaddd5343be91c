/**
 * The options of {@link fit}: apart from the Model (which a fit's `resume` may name) so that model.ts
 * stays the scoring side. Checked by one zod schema (src/options/schemas.ts) at the top of fit.
 */
import type { Backbone } from '../backbone/types.js';
import type { BackboneSpec } from '../backbone/registry.js';
import type { ThresholdRule } from '../postprocess/operating-point.js';
import type { VerdictBand } from '../postprocess/thresholds.js';
import type { PreprocessOptions, Sample } from '../types.js';
import type { Model } from './model.js';
import type { ImageSource, ProgressEvent } from './types.js';
import type { ReviewFile } from '../review/review-file.js';

/** Options of {@link fit}. */
export interface FitOptions {
  /**
   * Backbone to use: a registry name or .onnx path (`'mobilenetv2-int8'`), a spec (`{ name: 'resnet50',
   * weights: 'rn50.safetensors' }`, `{ name: 'net.onnx', layers: [...] }`), or an already created backbone.
   */
  backbone?: string | BackboneSpec | Backbone;
  /** Embedding size d (random channel subset), default 100 (the bundled mobilenetv2-int8: all 152). */
  channels?: number;
  /** Network input side (default 256; the bundled mobilenetv2-int8: 224). */
  imageSize?: number;
  /** Other preprocessing overrides (crop, mean/std, background, kernel, maxPixels). */
  preprocess?: Partial<PreprocessOptions>;
  /** Seed of the channel choice and calibration split (default 0). */
  seed?: number;
  /** Images per backbone batch (default 16). */
  batchSize?: number;
  /**
   * Share of the good images held out of the fit to calibrate the thresholds (default 0: every good
   * image fits the model and calibrates it out of sample, leave-one-out).
   */
  calibrationSplit?: number;
  /** Extra good images for calibration (scored out of sample beside the training images). */
  calibration?: ImageSource;
  /** Labelled defective images (with masks when available): the escape rate at the threshold, or F1-adaptive thresholds. */
  defects?: Sample[];
  /**
   * How thresholds are chosen (default 'false-reject': at `falseRejectTarget` from the tail of the
   * out-of-sample good scores; with defects, the fewest escapes at that target). 'f1': F1-adaptive on
   * labelled defects. A {@link GoodOnlyRule}: partscan ≤ 0.1's rules (max(mean + 3σ, max)). See docs/THRESHOLDS.md.
   */
  thresholdRule?: ThresholdRule;
  /** The false-reject rate the image threshold is set at, in (0, 1) (default 0.01). */
  falseRejectTarget?: number;
  /**
   * A higher false-reject rate in (falseRejectTarget, 1): parts scoring between its threshold and the
   * image threshold are UNCERTAIN (default none).
   */
  reviewBand?: number;
  /**
   * The image score (default 'standardized': the maximum of the blurred per-position standardised
   * distance map; 'max': the anomaly map's maximum, as partscan ≤ 0.1 scored).
   */
  imageScore?: 'standardized' | 'max';
  /** Manual raw thresholds (win over calibration). */
  manualThresholds?: {
    /** Raw image-score threshold. */
    image?: number;
    /** Raw pixel-score threshold. */
    pixel?: number;
  };
  /** Uncertainty band for verdicts in normalised units (default none: binary). */
  band?: VerdictBand;
  /** Covariance regulariser ε (default 0.01). */
  epsilon?: number;
  /** Continue from an existing model: its statistics are kept and the new images added. */
  resume?: Model | string;
  /**
   * A QA review of a run the `resume` model scored (a `review.json` path or a parsed review;
   * docs/REVIEW.md): its reviewed-good parts join the Gaussians (exact incremental update), its reviewed
   * defects join the thresholds' labelled defects and never the Gaussians. A review of another model
   * is a 'REVIEW' error.
   */
  review?: string | ReviewFile;
  /** Folders the reviewed images must lie in (default: the working directory). */
  imageRoots?: string[];
  /** ONNX Runtime intra-op threads. */
  threads?: number;
  /** Progress callback. */
  onProgress?: (e: ProgressEvent) => void;
  /**
   * Cancels the fit: it rejects with a 'CANCELLED' PartscanError within one batch (of the backbone pass,
   * then of each calibration stage). Nothing is written: a fit writes no file until the model is saved.
   */
  signal?: AbortSignal;
  /**
   * Tiling for large images: tiles of `size` px at native resolution, overlapping by `overlap` px; each
   * tile is one training sample of the same per-position model (and is resized to `imageSize`, which
   * defaults to the tile size).
   */
  tile?: {
    /** Tile side in pixels. */
    size: number;
    /** Overlap between neighbouring tiles in pixels. */
    overlap: number;
  };
  /**
   * Region of interest: a PNG the size of the training images, white = inspect, black = don't care.
   * It is fitted into the model (at model resolution); ignored pixels never count in masks and regions.
   */
  roi?: string;
  /**
   * Training-set guards (default true): exact duplicates and constant images are left out, near-duplicates
   * and size / colour-mode outliers reported, and a drift model of global image statistics is stored.
   */
  guards?: boolean;
  /**
   * Contamination check (default true): after fitting, every training image is scored against the model
   * and images whose score is a robust outlier (likely defects among the "good" set) are reported.
   */
  contaminationCheck?: boolean;
  /**
   * Bytes the streaming fit may spend keeping the training embeddings so that the contamination check
   * needs no second backbone pass (default 1/8 of RAM; 0 = always the second pass). Past it the check
   * runs the backbone again and the fit warns 'LOO_SECOND_PASS'.
   */
  contaminationMemory?: number;
  /**
   * Backbone precision (default 'fp32'). 'int8': the ResNet graph is statically quantized (QDQ, int8
   * weights per channel, uint8 activations calibrated on the first good images of the fit) and that
   * graph is the one stored in the model and used for scoring. See docs/PRECISION.md.
   */
  precision?: 'fp32' | 'int8';
}
