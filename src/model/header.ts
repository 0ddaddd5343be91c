/**
 * The model file's header type — everything a `.partscan` file says about itself besides its binary
 * sections — and the partscan version written into it. Below the Model, so that the scoring-graph
 * builder and the file reader can name it without importing the Model.
 */
import { createRequire } from 'node:module';
import type { BackboneIdentity } from '../backbone/types.js';
import type { DriftModel } from '../guards/drift.js';
import type { Thresholds } from '../postprocess/thresholds.js';
import type { PreprocessOptions } from '../types.js';
import type { MonitorReference } from './monitor-reference.js';
import type { CalibrationSummary } from './calibration-pool.js';

const require = createRequire(import.meta.url);
/** partscan's version, recorded in model files: package.json is two levels up in src/model/ and dist/model/ alike. */
export const PARTSCAN_VERSION: string = (require('../../package.json') as { version: string }).version;

/** Everything in a model except the big arrays: the `.partscan` header. */
export interface ModelHeader {
  /** Always 'partscan-model'. */
  format: 'partscan-model';
  /** Container version (major, minor). */
  formatVersion: [number, number];
  /** partscan version that wrote the file. */
  partscanVersion: string;
  /** Backbone identity; `embedded` tells whether its ONNX graph is inside the file. */
  backbone: BackboneIdentity & {
    /** Whether the backbone's ONNX graph is stored in the file (section 'backbone'). */
    embedded: boolean;
    /** Name of the backbone graph's image input. */
    inputName: string;
    /** sha256 of the embedded graph (format 1.4; only when embedded): a swapped graph is refused at load. */
    graphSha256?: string;
  };
  /** Preprocessing recipe, identical at fit and score time. */
  preprocess: PreprocessOptions;
  /** Embedding: channel choice and grid. */
  embedding: {
    /** Embedding size d: the channels kept, drawn at random from the feature layers' channels. */
    channels: number;
    /** Seed of that random channel choice. */
    seed: number;
    /** Channels of the concatenated feature layers the choice was drawn from. */
    totalChannels: number;
    /** Feature grid height (positions per column). */
    gridH: number;
    /** Feature grid width (positions per row). */
    gridW: number;
  };
  /** Gaussian statistics. */
  gaussian: {
    /** Images the statistics were fitted on. */
    images: number;
    /** Covariance regulariser: ε·I is added to every position's covariance. */
    epsilon: number;
    /**
     * How the inverse covariances are stored: packed lower triangles, in float32 ('float32-packed',
     * formats up to 1.4) or, from format 1.5, in float16 with one power-of-two scale per position
     * ('float16-packed': half the bytes; scores within 1e-3 relative of float32, see docs/MODEL-FILE.md).
     * The statistics for resuming are float32 either way.
     */
    storage: 'float32-packed' | 'float16-packed';
    /** Whether the file keeps what `fit --resume` needs to add images. */
    resumable: boolean;
    /**
     * What a resumable file keeps for `fit --resume` (format 1.1; absent in 1.0 files, which keep
     * 'scatter'): the centred scatter matrices (section 'm2'), or, for fits with at most d/2 samples,
     * the samples themselves (section 'samples', smaller than the scatter matrices).
     */
    resumeState?: 'scatter' | 'samples';
  };
  /** Post-processing recipe. */
  postprocess: {
    /** Standard deviation (map pixels) of the Gaussian blur over the upsampled map. */
    blurSigma: number;
    /** How the grid map is upsampled to the input size. */
    upsample: 'bilinear';
  };
  /** Decision thresholds and normalisation (absent until calibrated). */
  thresholds?: Thresholds;
  /** Region of interest, when one was fitted in (section 'roi', size×size, 1 = inspect). */
  roi?: {
    /** ROI mask width in pixels. */
    width: number;
    /** ROI mask height in pixels. */
    height: number;
  };
  /** Fit details. */
  fit: {
    /** Images the thresholds were calibrated on. */
    calibrationImages: number;
    /** What the calibration warned about (few images, no defects, ...). */
    calibrationWarnings: string[];
  };
  /** Tiling (native-resolution tiles), when the model was fitted with it. */
  tiling?: {
    /** Tile side in pixels, at native resolution. */
    tile: number;
    /** Overlap between neighbouring tiles in pixels. */
    overlap: number;
  };
  /** Drift model of global image statistics of the fitted images (absent for tiled models). */
  drift?: DriftModel;
  /** Line monitoring's reference (format 1.2; its training-image envelope 1.4; absent in older files and uncalibrated models). */
  monitor?: MonitorReference;
  /**
   * The image score (format ≥ 1.3): 'standardized' = the maximum of the blurred per-position standardised
   * distance map (section `imageScore.standardize`, postprocess/standardize.ts); 'max' = the anomaly
   * map's maximum. Absent in older files, which score by the map's maximum.
   */
  imageScore?: { kind: 'standardized' | 'max' };
  /** The calibration pool the thresholds were chosen from (format ≥ 1.3; sections `calibration.*`). */
  calibration?: CalibrationSummary;
}
