import * as ort from 'onnxruntime-node';
import { PartscanError, type PartscanWarning } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { loadOptionsSchema, saveOptionsSchema, scoreOptionsSchema } from '../options/schemas.js';
import type { Backbone, BackboneIdentity } from '../backbone/types.js';
import { OrtBackbone } from '../backbone/ort-backbone.js';
import { loadBackbone, type BackboneSpec } from '../../models/registry.js';
import { channelSources, gatherEmbedding, type ChannelSource } from '../embedding/embedding.js';
import { packedSize, unpackSymmetric } from '../stats/gaussian-stats.js';
import { BufferPool } from '../util/buffer-pool.js';
import { StatsKernels, positionsPerChunk } from '../stats/ort-kernels.js';
import { createSession, defaultThreads } from '../onnx/session.js';
import { preprocessBatch, preprocessTiles, type TileBox } from '../preprocess/preprocess.js';
import { resizeBilinear, mapToOriginal } from '../postprocess/resize.js';
import { UpsampleBlurSession } from '../postprocess/upsample-blur-graph.js';
import { normalizeMap, normalizeScore } from '../postprocess/normalize.js';
import { extractRegions, type Region } from '../postprocess/regions.js';
import {
  imageNormalization,
  pixelNormalization,
  verdict as verdictOf,
  type GoodOnlyRule,
  type Thresholds,
  type Verdict,
  type VerdictBand,
} from '../postprocess/thresholds.js';
import type { Dataset, ImageInfo, PreprocessOptions, Sample, Tensor4D } from '../types.js';
import type { TrainingSetReport } from '../guards/training-set.js';
import { driftScore, parseDriftModel, type DriftModel } from '../guards/drift.js';
import { driftDescriptorFromTensor } from '../guards/tensor-descriptor.js';
import { readModelFile, writeModelFile, type SectionData } from './model-file.js';
import { checkModelSections, parseModelHeader, type ParsedModelHeader } from './header-schema.js';
import { PARTSCAN_VERSION, type ModelHeader } from './header.js';
import { inlineScoringGraph } from './scoring-graph.js';

export { PARTSCAN_VERSION };
export type { ModelHeader };

/** PaDiM's covariance regulariser ε in Σ + ε·I. */
export const DEFAULT_EPSILON = 0.01;
/** Default number of random embedding channels (the paper's small setting). */
export const DEFAULT_CHANNELS = 100;
/** Gaussian blur σ applied to anomaly maps (PaDiM / anomalib). */
export const BLUR_SIGMA = 4;

/** Anything that names images: a folder or dataset root, a list of files, a loaded dataset or samples. */
export type ImageSource = string | string[] | Dataset | Sample[];

/** An image to score: a path, encoded bytes, or an already preprocessed [1,3,S,S] tensor. */
export type ScoreInput = string | Buffer | Tensor4D;

/** Progress events of long operations. */
export interface ProgressEvent {
  /** Which stage is running. */
  stage: 'fit' | 'invert' | 'calibrate' | 'score';
  /** Units done. */
  done: number;
  /** Units in all. */
  total: number;
}

/** Options of {@link fit}. */
export interface FitOptions {
  /** Backbone to use (registry name, weights file, .onnx + layers), or an already created backbone. */
  backbone?: BackboneSpec | Backbone;
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
  /** Share of the good images held out to calibrate thresholds (default 0.1; 0 = none). */
  calibrationSplit?: number;
  /** Extra good images for calibration (used instead of a held-out split when given). */
  calibration?: ImageSource;
  /** Labelled defective images (with masks when available) for F1-adaptive thresholds. */
  defects?: Sample[];
  /** Good-only threshold rule (default max(mean + 3σ, max)). */
  thresholdRule?: GoodOnlyRule;
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
  /** ONNX Runtime intra-op threads. */
  threads?: number;
  /** Progress callback. */
  onProgress?: (e: ProgressEvent) => void;
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
}

/** Per-image scoring result. */
export interface ScoreResult {
  /** The input's source (path, '<buffer>' or '<tensor>'). */
  source: string;
  /** Raw image score: the maximum of the anomaly map. */
  imageScore: number;
  /** Raw anomaly map, size×size (model input resolution), row-major. */
  anomalyMap: Float32Array;
  /** Side of the model input (`anomalyMap` is size×size unless the model is tiled). */
  size: number;
  /** Width of `anomalyMap` (= size, or the original width for tiled models). */
  mapWidth: number;
  /** Height of `anomalyMap` (= size, or the original height for tiled models). */
  mapHeight: number;
  /** Image score normalised so the threshold is 0.5 (when the model has thresholds). */
  normalizedScore?: number;
  /** Normalised anomaly map (when the model has thresholds). */
  normalizedMap?: Float32Array;
  /** OK / NG / UNCERTAIN (when the model has thresholds). */
  verdict?: Verdict;
  /** Binary defect mask at model resolution (1 = defect), when the model has thresholds. */
  mask?: Uint8Array;
  /** Defect regions at model resolution, when the model has thresholds. */
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
  /** Minimum region area in pixels at model resolution (default 0). */
  minArea?: number;
  /** Morphological opening radius for mask cleanup (default 0). */
  openRadius?: number;
  /** Morphological closing radius (default 0). */
  closeRadius?: number;
}


/** Sections that only `fit --resume` needs. */
const RESUME_SECTIONS: readonly string[] = ['m2', 'samples'];

function sectionSizeError(file: string): PartscanError {
  return new PartscanError('MODEL_FORMAT', `${file}: section sizes do not match the header's grid and embedding size.`, {
    file,
    remedy: 're-fit the model',
  });
}

/** The statistics for resuming among a file's read sections (`m2` or `samples`), size-checked against the header. */
function resumeSections(sections: Map<string, SectionData>, header: ModelHeader, file: string): { m2?: Float32Array; samples?: Float32Array } {
  const P = header.embedding.gridH * header.embedding.gridW;
  const d = header.embedding.channels;
  const m2 = sections.get('m2') as Float32Array | undefined;
  const samples = sections.get('samples') as Float32Array | undefined;
  if ((m2 && m2.length !== P * packedSize(d)) || (samples && samples.length !== P * header.gaussian.images * d)) throw sectionSizeError(file);
  return { ...(m2 ? { m2 } : {}), ...(samples ? { samples } : {}) };
}

interface ModelParts {
  header: ModelHeader;
  channelIndices: Int32Array;
  mean: Float64Array;
  invCovPacked: Float32Array;
  m2?: Float32Array;
  samples?: Float32Array;
  roi?: Uint8Array;
}

/**
 * A fitted PaDiM model: per-position Gaussians over a backbone's embedding, plus thresholds.
 * Load with {@link Model.load}, create with {@link fit}. Scoring is safe to call concurrently.
 */
export class Model {
  /** The model header (what the file describes). */
  readonly header: ModelHeader;
  /** Kept channel indices into the concatenated layers. */
  readonly channelIndices: Int32Array;
  /** Per-position means [P, d]. */
  readonly mean: Float64Array;
  /** Per-position inverse covariances, packed lower triangles [P, d(d+1)/2]. */
  readonly invCovPacked: Float32Array;
  /**
   * Centred scatter matrices for resuming (absent in compact files and in fits that keep samples; in a
   * loaded model, absent until {@link Model.resumeStatistics} has read them).
   */
  get m2(): Float32Array | undefined {
    return this.resume.m2;
  }
  /**
   * The fitted embeddings [P, N, d] for resuming, kept instead of `m2` by fits with at most d/2 samples
   * (absent in compact files; in a loaded model, absent until {@link Model.resumeStatistics} has read them).
   */
  get samples(): Float32Array | undefined {
    return this.resume.samples;
  }
  /** The statistics for resuming, and, when they are still in the file, where to read them (and their sha256). */
  private resume: { m2?: Float32Array; samples?: Float32Array; file?: string; sha256?: string };
  /** Region of interest at model resolution (1 = inspect), if any. */
  roi: Uint8Array | undefined;
  private readonly sources: ChannelSource[];
  private backbone: Backbone | undefined;
  private backbonePromise: Promise<Backbone> | undefined;
  private kernelsPromise: Promise<StatsKernels> | undefined;
  /** Scratch embeddings for scoring, reused across batches. */
  private readonly embeddingPool = new BufferPool();
  private upsampleBlurPromise: Promise<UpsampleBlurSession> | undefined;
  /** The means in float32, as the scoring kernel takes them (made on first score). */
  private mean32: Float32Array | undefined;
  private fullInversePromise: Promise<Float32Array[]> | undefined;
  private fusedScoringPromise: Promise<ort.InferenceSession | undefined> | undefined;
  private readonly threads: number | undefined;

  private constructor(parts: ModelParts, backbone: Backbone | undefined, threads?: number) {
    this.header = parts.header;
    this.channelIndices = parts.channelIndices;
    this.mean = parts.mean;
    this.invCovPacked = parts.invCovPacked;
    this.resume = { ...(parts.m2 ? { m2: parts.m2 } : {}), ...(parts.samples ? { samples: parts.samples } : {}) };
    this.roi = parts.roi;
    this.backbone = backbone;
    this.threads = threads;
    this.sources = channelSources(parts.channelIndices, parts.header.backbone.channels);
  }

  /** Number of grid positions P. */
  get positions(): number {
    return this.header.embedding.gridH * this.header.embedding.gridW;
  }

  /** Embedding size d. */
  get dim(): number {
    return this.header.embedding.channels;
  }

  /** Side of the network input and of anomaly maps. */
  get size(): number {
    return this.header.preprocess.cropSize ?? this.header.preprocess.imageSize;
  }

  /** @internal Creates a model from fitted parts. */
  static fromParts(parts: ModelParts, backbone: Backbone | undefined, threads?: number): Model {
    return new Model(parts, backbone, threads);
  }

  /**
   * Loads a `.partscan` file. The backbone embedded in the file is used unless `backbone` is given;
   * a supplied backbone must match the one the model was fitted with (name, weights sha256, layers),
   * otherwise a 'BACKBONE_MISMATCH' error is thrown.
   *
   * The statistics kept for `fit --resume` (scatter matrices or samples: 1.4–1.9 GB at d=550) are not
   * read unless `resumeStatistics` is true: scoring does not need them. {@link Model.resumeStatistics}
   * reads them later, and {@link Model.save} does so by itself.
   *
   * @example
   * const model = await Model.load('bottle.partscan');
   * const r = await model.score('part.png');
   * await model.dispose();
   */
  static async load(
    file: string,
    opts: { backbone?: BackboneSpec | Backbone; threads?: number; verify?: boolean; resumeStatistics?: boolean } = {},
  ): Promise<Model> {
    parseOptions(loadOptionsSchema, opts, 'Model.load');
    const contents = await readModelFile(file, {
      ...(opts.verify === undefined ? {} : { verify: opts.verify }),
      ...(opts.resumeStatistics ? {} : { sections: (name: string) => !RESUME_SECTIONS.includes(name) }),
    });
    // One schema checks every field, and the section shapes against grid and d, before anything is used.
    const header = parseModelHeader(contents.header, file) as unknown as ModelHeader;
    checkModelSections(header as unknown as ParsedModelHeader, contents.sections, file);
    const need = (name: string): SectionData => {
      const s = contents.sections.get(name);
      if (!s) {
        throw new PartscanError('MODEL_FORMAT', `${file} has no "${name}" section.`, { file, remedy: 're-fit the model' });
      }
      return s;
    };
    const parts: ModelParts = {
      header,
      channelIndices: need('channels') as Int32Array,
      mean: need('mean') as Float64Array,
      invCovPacked: need('invCov') as Float32Array,
    };
    const roi = contents.sections.get('roi');
    if (roi) parts.roi = roi as Uint8Array;
    const P = header.embedding.gridH * header.embedding.gridW;
    const d = header.embedding.channels;
    if (parts.mean.length !== P * d || parts.invCovPacked.length !== P * packedSize(d) || parts.channelIndices.length !== d) {
      throw sectionSizeError(file);
    }
    Object.assign(parts, resumeSections(contents.sections, header, file));
    let backbone: Backbone | undefined;
    // A quantized graph cannot be rebuilt from a spec (weights): an embedded int8 backbone is used whatever spec is given.
    const int8Embedded = header.backbone.precision === 'int8' && header.backbone.embedded;
    if (opts.backbone && (isBackbone(opts.backbone) || !int8Embedded)) {
      backbone = isBackbone(opts.backbone) ? opts.backbone : await loadBackbone(opts.backbone, threadOpt(opts.threads));
      assertSameBackbone(header.backbone, backbone.identity, file);
    } else if (header.backbone.embedded) {
      const onnx = contents.sections.get('backbone.onnx') as Uint8Array | undefined;
      if (!onnx) throw new PartscanError('MODEL_FORMAT', `${file}: embedded backbone section missing.`, { file, remedy: 're-fit the model' });
      const { embedded: _e, inputName, ...identity } = header.backbone;
      backbone = await OrtBackbone.create(onnx, identity, { ...threadOpt(opts.threads), inputName });
    }
    const model = new Model(parts, backbone, opts.threads);
    model.modelFile = file;
    const kept = contents.header.sections.find((s) => RESUME_SECTIONS.includes(s.name));
    if (!opts.resumeStatistics && kept) model.resume = { file, sha256: kept.sha256 };
    return model;
  }

  /**
   * The statistics for resuming a fit (`m2` or `samples`), read from the model file on first call
   * when {@link Model.load} left them there; empty for compact models.
   */
  async resumeStatistics(): Promise<{
    /** Per-position centred scatter matrices (packed), for fits that stream their statistics. */
    m2?: Float32Array;
    /** The fitted embeddings themselves, for fits with at most d/2 samples. */
    samples?: Float32Array;
  }> {
    const { file, sha256 } = this.resume;
    if (file) {
      const contents = await readModelFile(file, { sections: (name) => RESUME_SECTIONS.includes(name) });
      if (!contents.header.sections.some((s) => s.sha256 === sha256)) {
        throw new PartscanError('MODEL_FORMAT', `${file} changed since the model was loaded: its statistics for resuming are not this model's.`, {
          file,
          remedy: 'load the model again (Model.load) before resuming or saving it',
        });
      }
      this.resume = resumeSections(contents.sections, this.header, file);
    }
    return { ...this.resume };
  }

  /** Path the model was loaded from, if any. */
  modelFile: string | undefined;

  /**
   * Writes the model to `file` atomically. Same model → byte-identical file.
   * @param opts.embedBackbone put the backbone ONNX graph inside (default true: the file is self-contained).
   * @param opts.resumable keep the statistics (scatter matrices or samples) so `fit --resume` can add
   *   images (default true).
   *
   * @example
   * const model = await fit('bottle/train/good');
   * await model.save('bottle.partscan', { resumable: false }); // smaller; cannot be resumed
   */
  async save(file: string, opts: { embedBackbone?: boolean; resumable?: boolean } = {}): Promise<void> {
    parseOptions(saveOptionsSchema, opts, 'Model.save');
    const embed = opts.embedBackbone ?? true;
    if (!embed && this.header.backbone.precision === 'int8') {
      throw new PartscanError('OPTIONS', 'An int8 model must embed its backbone: the quantized graph cannot be rebuilt from the weights alone.', {
        remedy: 'save with the backbone embedded (drop --no-embed-backbone), or fit with --precision fp32',
      });
    }
    const { m2, samples } = opts.resumable === false ? {} : await this.resumeStatistics();
    const resumable = m2 !== undefined || samples !== undefined;
    const backbone = embed ? await this.getBackbone() : undefined;
    const { resumeState: _r, ...gaussian } = this.header.gaussian;
    const header: ModelHeader = {
      ...this.header,
      backbone: { ...this.header.backbone, embedded: embed },
      gaussian: { ...gaussian, resumable, ...(resumable ? { resumeState: m2 ? 'scatter' : 'samples' } : {}) },
    };
    const P = this.positions;
    const d = this.dim;
    const sections: { name: string; data: SectionData; shape: number[] }[] = [
      { name: 'channels', data: this.channelIndices, shape: [d] },
      { name: 'mean', data: this.mean, shape: [P, d] },
      { name: 'invCov', data: this.invCovPacked, shape: [P, packedSize(d)] },
    ];
    if (m2) sections.push({ name: 'm2', data: m2, shape: [P, packedSize(d)] });
    else if (samples) sections.push({ name: 'samples', data: samples, shape: [P, this.header.gaussian.images, d] });
    if (this.roi) sections.push({ name: 'roi', data: this.roi, shape: [this.size, this.size] });
    if (backbone) sections.push({ name: 'backbone.onnx', data: backbone.onnx, shape: [backbone.onnx.length] });
    await writeModelFile(file, header as unknown as Record<string, unknown>, sections);
  }

  /** The backbone, created on first use. */
  async getBackbone(): Promise<Backbone> {
    if (this.backbone) return this.backbone;
    this.backbonePromise ??= (async () => {
      const b = this.header.backbone;
      const spec: BackboneSpec = { backbone: b.name.startsWith('onnx:') ? b.name.slice(5) : b.name, offline: true };
      if (b.seed !== undefined) spec.seed = b.seed;
      const backbone = await loadBackbone(spec, threadOpt(this.threads));
      assertSameBackbone(b, backbone.identity, this.modelFile ?? '<model>');
      this.backbone = backbone;
      return backbone;
    })();
    return this.backbonePromise;
  }

  private kernels(): Promise<StatsKernels> {
    this.kernelsPromise ??= StatsKernels.create(this.dim, this.threads);
    return this.kernelsPromise;
  }

  /**
   * Default images per scoring batch. Every batch streams all P inverse covariances (d=550 at 224 px:
   * 3.8 GB) through the Mahalanobis GEMMs, so large d wants larger batches: about 32 MB of inverse
   * per image, between 8 and 32 images (d=100 → 8, d=550 → 32).
   */
  get defaultScoreBatchSize(): number {
    const inverseBytes = this.positions * this.dim * this.dim * 4;
    return Math.min(32, Math.max(8, Math.ceil(inverseBytes / (32 * 1024 * 1024))));
  }

  private upsampleBlur(): Promise<UpsampleBlurSession> {
    const { gridW, gridH } = this.header.embedding;
    this.upsampleBlurPromise ??= UpsampleBlurSession.create(gridW, gridH, this.size, this.header.postprocess.blurSigma, this.threads ?? defaultThreads());
    return this.upsampleBlurPromise;
  }

  /** Full (unpacked) inverse covariances in position chunks, expanded once on first score. */
  private fullInverses(): Promise<Float32Array[]> {
    this.fullInversePromise ??= Promise.resolve().then(() => {
      const P = this.positions;
      const d = this.dim;
      const tri = packedSize(d);
      const chunk = positionsPerChunk(d, P);
      const out: Float32Array[] = [];
      for (let p0 = 0; p0 < P; p0 += chunk) {
        const pc = Math.min(chunk, P - p0);
        const full = new Float32Array(pc * d * d);
        for (let q = 0; q < pc; q++) unpackSymmetric(this.invCovPacked, (p0 + q) * tri, d, full, q * d * d);
        out.push(full);
      }
      return out;
    });
    return this.fullInversePromise;
  }

  /**
   * Raw anomaly maps of a preprocessed batch [N,3,S,S]: Mahalanobis distance per grid position,
   * bilinear upsampling (align_corners=false) to S×S, Gaussian blur σ=4. Returns one map per image.
   */
  async anomalyMaps(batch: Tensor4D, transformSquared?: (d2: number) => number): Promise<Float32Array[]> {
    const [n, , h, w] = batch.dims;
    if (h !== this.size || w !== this.size) {
      throw new PartscanError('INVALID_TENSOR', `Input tensor is ${w}×${h}; this model expects ${this.size}×${this.size}.`, {
        remedy: 'preprocess with the model header\'s preprocess options',
      });
    }
    if (!transformSquared) {
      const fused = await this.fusedScoring();
      if (fused) return this.fusedMaps(fused, batch);
    }
    const backbone = await this.getBackbone();
    const d2 = backbone.withFeatures
      ? await backbone.withFeatures(batch, (maps) => this.gridDistances(maps, n))
      : await this.gridDistances(await backbone.extract(batch), n);
    return this.mapsFromDistances(d2, n, transformSquared);
  }

  /**
   * Anomaly maps from squared grid distances [P, N] (optionally transformed per distance, e.g. the
   * leave-one-out rescaling): the tail of {@link anomalyMaps}, for distances computed elsewhere.
   */
  async mapsFromDistances(d2: Float32Array, n: number, transformSquared?: (d2: number) => number): Promise<Float32Array[]> {
    const P = this.positions;
    // Image-major squared distances [N, P] (optionally transformed, e.g. leave-one-out rescaling).
    const byImage = new Float32Array(n * P);
    for (let i = 0; i < n; i++) {
      const o = i * P;
      if (transformSquared) for (let p = 0; p < P; p++) byImage[o + p] = transformSquared(d2[p * n + i]!);
      else for (let p = 0; p < P; p++) byImage[o + p] = d2[p * n + i]!;
    }
    return perImage(await (await this.upsampleBlur()).run(byImage, n), n, this.size * this.size);
  }

  /**
   * One ONNX Runtime session for the whole scoring path (see {@link inlineScoringGraph}), created on
   * first use; undefined where the graph cannot be one (tiled models, d=550 at 224 px: its inverse
   * covariances exceed what one in-memory graph holds, and batches there are dominated by the
   * Mahalanobis GEMMs anyway) or the backbone cannot be merged: those score session by session.
   */
  private fusedScoring(): Promise<ort.InferenceSession | undefined> {
    this.fusedScoringPromise ??= (async () => {
      let bytes: Uint8Array | undefined;
      try {
        bytes = await inlineScoringGraph(this);
      } catch (e) {
        if (e instanceof PartscanError) return undefined; // e.g. a backbone graph that cannot be merged
        throw e;
      }
      return bytes && createSession(bytes, this.threads ?? defaultThreads());
    })();
    return this.fusedScoringPromise;
  }

  /** Raw anomaly maps of a preprocessed batch from the single scoring session. */
  private async fusedMaps(session: ort.InferenceSession, batch: Tensor4D): Promise<Float32Array[]> {
    const [n] = batch.dims;
    const SS = this.size * this.size;
    const out = await session.run({ input: new ort.Tensor('float32', batch.data.subarray(0, n * 3 * SS), [...batch.dims]) }, ['anomaly_map']);
    return perImage(out.anomaly_map!.data as Float32Array, n, SS);
  }

  /** Squared Mahalanobis distances [P, N] for backbone maps of N images. */
  private async gridDistances(maps: Tensor4D[], n: number): Promise<Float32Array> {
    const { gridH, gridW } = this.header.embedding;
    const first = maps[0]!;
    if (first.dims[2] !== gridH || first.dims[3] !== gridW) {
      throw new PartscanError('BACKBONE_MISMATCH', `Backbone grid ${first.dims[3]}×${first.dims[2]} differs from the model's ${gridW}×${gridH}.`, {
        remedy: 'score with the backbone and image size the model was fitted with',
      });
    }
    // Pooled: a fresh [P, N, d] array per batch (220 MB at d=550, N=32) costs more in page faults than the gather.
    const emb = gatherEmbedding(maps, this.sources, this.embeddingPool.acquire(this.positions * n * this.dim)).data;
    try {
      return await this.embeddingDistances(emb, n);
    } finally {
      this.embeddingPool.release(emb);
    }
  }

  /** Squared Mahalanobis distances [P, N] of embeddings [P, N, d] (e.g. the fit's own, kept). */
  async embeddingDistances(emb: Float32Array, n: number): Promise<Float32Array> {
    const P = this.positions;
    const d = this.dim;
    this.mean32 ??= Float32Array.from(this.mean);
    const mean = this.mean32;
    const [kernels, inverses] = await Promise.all([this.kernels(), this.fullInverses()]);
    const out = new Float32Array(P * n);
    let p0 = 0;
    for (const inv of inverses) {
      const pc = inv.length / (d * d);
      const r = await kernels.mahalanobisSquared(emb.subarray(p0 * n * d, (p0 + pc) * n * d), mean.subarray(p0 * d, (p0 + pc) * d), inv, pc, n);
      out.set(r, p0 * n);
      p0 += pc;
    }
    return out;
  }

  /**
   * Scores one image.
   *
   * @example
   * const r = await model.score('part.png');
   * if (r.verdict === 'NG') console.log(r.normalizedScore, r.regions);
   */
  async score(input: ScoreInput, opts?: ScoreOptions): Promise<ScoreResult>;
  /**
   * Scores several images (batched through the backbone).
   *
   * @example
   * const results = await model.score(['a.png', 'b.png', 'c.png'], { batchSize: 8 });
   */
  async score(input: ScoreInput[], opts?: ScoreOptions): Promise<ScoreResult[]>;
  async score(input: ScoreInput | ScoreInput[], opts: ScoreOptions = {}): Promise<ScoreResult | ScoreResult[]> {
    parseOptions(scoreOptionsSchema, opts, 'Model.score');
    if (Array.isArray(input)) return this.scoreMany(input, opts);
    return (await this.scoreMany([input], opts))[0]!;
  }

  private async scoreMany(inputs: ScoreInput[], opts: ScoreOptions): Promise<ScoreResult[]> {
    const bs = Math.max(1, opts.batchSize ?? this.defaultScoreBatchSize);
    const results: ScoreResult[] = [];
    if (this.header.tiling) {
      for (const input of inputs) results.push(await this.scoreTiled(input, bs, opts));
      return results;
    }
    // Pipeline: decode/resize batch k+1 (sharp's threads) while ORT runs batch k.
    let pending: ReturnType<Model['prepare']> | undefined = inputs.length ? this.prepare(inputs.slice(0, bs)) : undefined;
    for (let i = 0; i < inputs.length; i += bs) {
      const current = pending!;
      pending = i + bs < inputs.length ? this.prepare(inputs.slice(i + bs, i + 2 * bs)) : undefined;
      pending?.catch(() => undefined); // surfaced when awaited
      const { tensor, infos, sources } = await current;
      const maps = await this.anomalyMaps(tensor);
      maps.forEach((map, k) => {
        const r = this.finish(map, this.size, this.size, sources[k]!, infos[k], opts);
        this.addDrift(r, tensor.data, k);
        results.push(r);
      });
    }
    return results;
  }

  /** Scores one image tile by tile at native resolution and stitches the maps with overlap blending. */
  private async scoreTiled(input: ScoreInput, batchSize: number, opts: ScoreOptions): Promise<ScoreResult> {
    if (typeof input !== 'string' && !Buffer.isBuffer(input)) {
      throw new PartscanError('OPTIONS', 'Tiled models score image files or encoded bytes, not tensors.', {
        remedy: 'pass the image path or bytes',
      });
    }
    const { tile, overlap } = this.header.tiling!;
    const S = this.size;
    const t = await preprocessTiles(input, this.header.preprocess, tile, overlap);
    const per = 3 * S * S;
    const tileMaps: Float32Array[] = [];
    for (let i = 0; i < t.boxes.length; i += batchSize) {
      const n = Math.min(batchSize, t.boxes.length - i);
      tileMaps.push(...(await this.anomalyMaps({ data: t.tensor.subarray(i * per, (i + n) * per), dims: [n, 3, S, S] })));
    }
    const { width, height } = t.info;
    const map = stitchTiles(tileMaps, t.boxes, S, width, height, overlap);
    // The image score is the max over tiles (blending can only lower a peak inside an overlap).
    let tileMax = -Infinity;
    for (const m of tileMaps) for (let i = 0; i < m.length; i++) if (m[i]! > tileMax) tileMax = m[i]!;
    return this.finish(map, width, height, t.info.source, t.info, opts, tileMax);
  }

  private async prepare(part: ScoreInput[]): Promise<{ tensor: Tensor4D; infos: (ImageInfo | undefined)[]; sources: string[] }> {
    const S = this.size;
    const per = 3 * S * S;
    if (part.every((p) => typeof p === 'string' || Buffer.isBuffer(p))) {
      const b = await preprocessBatch(part as (string | Buffer)[], this.header.preprocess);
      return {
        tensor: { data: b.tensor, dims: [part.length, 3, S, S] },
        infos: b.images.map((im) => im.info),
        sources: b.images.map((im) => im.info.source),
      };
    }
    const data = new Float32Array(per * part.length);
    const infos: (ImageInfo | undefined)[] = [];
    const sources: string[] = [];
    for (let k = 0; k < part.length; k++) {
      const p = part[k]!;
      if (typeof p === 'string' || Buffer.isBuffer(p)) {
        const b = await preprocessBatch([p], this.header.preprocess);
        data.set(b.tensor, k * per);
        infos.push(b.images[0]!.info);
        sources.push(b.images[0]!.info.source);
      } else {
        checkTensor(p, S);
        data.set(p.data.subarray(0, per), k * per);
        infos.push(undefined);
        sources.push('<tensor>');
      }
    }
    return { tensor: { data, dims: [part.length, 3, S, S] }, infos, sources };
  }

  private finish(
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
    const result: ScoreResult = { source, imageScore, anomalyMap: map, size: this.size, mapWidth, mapHeight, warnings: [] };
    if (info) result.info = info;
    const t = this.header.thresholds;
    if (t) {
      const normalizedScore = normalizeScore(imageScore, imageNormalization(t));
      const normalizedMap = normalizeMap(map, pixelNormalization(t));
      const { mask, regions } = extractRegions(normalizedMap, mapWidth, mapHeight, {
        threshold: 0.5,
        ...(this.roi && mapWidth === this.size && mapHeight === this.size ? { roi: this.roi } : {}),
        ...(opts.minArea !== undefined ? { minArea: opts.minArea } : {}),
        ...(opts.openRadius ? { openRadius: opts.openRadius } : {}),
        ...(opts.closeRadius ? { closeRadius: opts.closeRadius } : {}),
      });
      Object.assign(result, { normalizedScore, normalizedMap, verdict: verdictOf(normalizedScore, t.band), mask, regions });
    }
    return result;
  }

  private driftModel: DriftModel | undefined | null = null;

  /** Flags whole-image drift of image `k` of a preprocessed batch against the stored drift model. */
  private addDrift(r: ScoreResult, batch: Float32Array, k: number): void {
    if (this.driftModel === null) this.driftModel = this.header.drift ? parseDriftModel(this.header.drift, this.modelFile) : undefined;
    if (!this.driftModel) return;
    const S = this.size;
    const d = driftScore(this.driftModel, driftDescriptorFromTensor(batch, k * 3 * S * S, S, this.header.preprocess));
    r.drift = { flag: d.flag, score: d.score, reasons: d.reasons, z: d.z };
    if (d.flag) {
      r.warnings.push({
        code: 'DRIFT',
        message: `${r.source}: the whole image differs from the training images (${d.reasons.join('; ')}). Check lighting, camera and focus; the anomaly score may not be meaningful.`,
        ...(r.source.startsWith('<') ? {} : { file: r.source }),
      });
    }
  }

  /** Maps a result's anomaly map (or normalised map) to the original image size (bilinear), for export. */
  mapToOriginal(map: Float32Array, width: number, height: number): Float32Array {
    if (map.length === width * height) return map; // tiled models already score at native resolution
    return mapToOriginal(map, this.size, width, height);
  }

  /** Replaces the thresholds (e.g. a manual override or a recalibration). */
  setThresholds(t: Thresholds | undefined): void {
    if (t) this.header.thresholds = t;
    else delete this.header.thresholds;
  }

  /** Releases ONNX Runtime sessions. */
  async dispose(): Promise<void> {
    const k = this.kernelsPromise;
    this.kernelsPromise = undefined;
    if (k) await (await k).dispose();
    const u = this.upsampleBlurPromise;
    this.upsampleBlurPromise = undefined;
    if (u) await (await u).dispose();
    const f = this.fusedScoringPromise;
    this.fusedScoringPromise = undefined;
    if (f) await (await f.catch(() => undefined))?.release();
    if (this.backbone) await this.backbone.dispose();
    this.backbone = undefined;
    this.embeddingPool.clear();
    this.backbonePromise = undefined;
  }
}

/** Splits N maps of `size` values laid out one after another into one array per image. */
function perImage(flat: Float32Array, n: number, size: number): Float32Array[] {
  return Array.from({ length: n }, (_, i) => flat.slice(i * size, (i + 1) * size));
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

/** @internal Whether a fit/load option is a backbone object (not a spec). */
export function isBackbone(b: BackboneSpec | Backbone): b is Backbone {
  return typeof (b as Backbone).extract === 'function';
}

/** @internal ORT thread option from a `threads` setting. */
export function threadOpt(threads: number | undefined): { intraOpNumThreads?: number } {
  return threads === undefined ? {} : { intraOpNumThreads: threads };
}

function assertSameBackbone(expected: BackboneIdentity, got: BackboneIdentity, file: string): void {
  const same =
    expected.name === got.name &&
    expected.sha256 === got.sha256 &&
    expected.layers.join(',') === got.layers.join(',') &&
    expected.channels.join(',') === got.channels.join(',') &&
    (expected.precision ?? 'fp32') === (got.precision ?? 'fp32');
  if (!same) {
    throw new PartscanError(
      'BACKBONE_MISMATCH',
      `${file} was fitted with backbone ${expected.name} (weights sha256 ${expected.sha256.slice(0, 12)}…, layers ${expected.layers.join(',')}, ${expected.precision ?? 'fp32'}), ` +
        `but ${got.name} (sha256 ${got.sha256.slice(0, 12)}…, layers ${got.layers.join(',')}, ${got.precision ?? 'fp32'}) was supplied.`,
      { file, remedy: 'score with the same backbone and weights the model was fitted with, or re-fit' },
    );
  }
}

function checkTensor(t: Tensor4D, size: number): void {
  const [n, c, h, w] = t.dims;
  if (n !== 1 || c !== 3 || h !== size || w !== size || t.data.length < 3 * size * size) {
    throw new PartscanError('INVALID_TENSOR', `Tensor input must be [1,3,${size},${size}], got [${t.dims.join(',')}].`, {
      remedy: 'preprocess with the model header\'s preprocess options',
    });
  }
  for (let i = 0; i < t.data.length; i++) {
    if (!Number.isFinite(t.data[i]!)) {
      throw new PartscanError('INVALID_TENSOR', `Tensor input holds a non-finite value (${t.data[i]}) at index ${i}.`, {
        remedy: 'check the preprocessing: NaN/Inf usually come from a division by a zero std or a corrupt decode',
      });
    }
  }
}

