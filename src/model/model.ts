import type * as ort from 'onnxruntime-node';
import { PartscanError, type PartscanWarning } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { loadOptionsSchema, saveOptionsSchema, scoreOptionsSchema } from '../options/schemas.js';
import type { Backbone } from '../backbone/types.js';
import { OrtBackbone } from '../backbone/ort-backbone.js';
import { loadBackbone, type BackboneSpec } from '../backbone/registry.js';
import { assertSameBackbone, isBackbone, threadOpt } from '../backbone/identity.js';
import type { StripedInverse } from '../stats/striped-inverse.js';
import { mapOntoImage } from '../postprocess/resize.js';
import type { PositionStandardization } from '../postprocess/standardize.js';
import type { Thresholds } from '../postprocess/thresholds.js';
import type { ImageInfo, Tensor4D } from '../types.js';
import { parseDriftModel, type DriftModel } from '../guards/drift.js';
import { writeModelFile } from './model-file.js';
import { modelFileContents, readLazySections, readModelParts, resumeSections, RESUME_SECTIONS, type LazySections, type ModelParts } from './model-sections.js';
import { CALIBRATION_SECTIONS, CalibrationPool } from './calibration-pool.js';
import { PARTSCAN_VERSION, type ModelHeader } from './header.js';
import { AnomalyMapper } from './anomaly-maps.js';
import { addDrift, buildScoreResult, mapWindow, type ScoreOverrides, type ScoreResultContext } from './score-result.js';
import { stitchTiles, tiledAnomalyMap } from './tiles.js';
import { prepareBatch, type PreparedBatch } from './score-batch.js';
import { rememberInput } from './result-input.js';
import { throwIfAborted } from '../util/abort.js';
import type { FitReport, ImageSource, MapBatch, ProgressEvent, ScoreInput, ScoreOptions, ScoreResult } from './types.js';

export { PARTSCAN_VERSION, stitchTiles, isBackbone, threadOpt };
export type { FitReport, ImageSource, MapBatch, ModelHeader, ProgressEvent, ScoreInput, ScoreOptions, ScoreResult };

/** PaDiM's covariance regulariser ε in Σ + ε·I. */
export const DEFAULT_EPSILON = 0.01;
/** Default number of random embedding channels (the paper's small setting). */
export const DEFAULT_CHANNELS = 100;
/** Gaussian blur σ applied to anomaly maps (PaDiM / anomalib). */
export const BLUR_SIGMA = 4;

/**
 * A fitted PaDiM model: per-position Gaussians over a backbone's embedding, plus thresholds.
 * Load with {@link Model.load}, create with {@link fit}. Scoring is safe to call concurrently.
 */
export class Model {
  /** The model header (what the file describes). */
  readonly header: ModelHeader;
  /** Warnings raised while fitting (few images, no calibration...); set by {@link fit}, absent on a loaded model. */
  fitWarnings?: PartscanWarning[];
  /** What the training-set guards and the contamination check found while fitting; set by {@link fit}. */
  fitReport?: FitReport;
  /** Kept channel indices into the concatenated layers. */
  readonly channelIndices: Int32Array;
  /** Per-position means [P, d]. */
  readonly mean: Float64Array;
  /**
   * Per-position inverse covariances as scoring uses them: the one copy a model holds (about half the
   * dense d² floats per position; see src/stats/striped-inverse.ts). ONNX Runtime reads them in place.
   */
  readonly inverse: StripedInverse;
  /**
   * Per-position inverse covariances as packed lower triangles [P, d(d+1)/2], made from
   * {@link Model.inverse} on access (a new array while the previous one is garbage; read it once into
   * a variable rather than in a loop).
   */
  get invCovPacked(): Float32Array {
    const cached = this.packedCache?.revision === this.inverse.revision ? this.packedCache.packed.deref() : undefined;
    if (cached) return cached;
    const packed = this.inverse.toPacked();
    this.packedCache = { packed: new WeakRef(packed), revision: this.inverse.revision };
    return packed;
  }
  private packedCache: { packed: WeakRef<Float32Array>; revision: number } | undefined;
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
  /** The statistics for resuming, once read. */
  private resume: { m2?: Float32Array; samples?: Float32Array };
  /** Sections a load left in the file (resume statistics, sections scoring never reads), read on request. */
  private lazy: LazySections | undefined;
  /** Region of interest at model resolution (1 = inspect), if any. */
  roi: Uint8Array | undefined;
  /**
   * The per-position standardisation of the image score (format ≥ 1.3; postprocess/standardize.ts);
   * undefined for models whose image score is the raw map's maximum (older files, `imageScore: 'max'`).
   */
  get standardization(): PositionStandardization | undefined {
    return this.std;
  }
  private std: PositionStandardization | undefined;
  /** The calibration pool, once read or set (a loaded model's stays in the file until asked for: {@link Model.lazy}). */
  private calibration: { pool?: CalibrationPool } = {};
  private backbone: Backbone | undefined;
  private backbonePromise: Promise<Backbone> | undefined;
  /** The scoring sessions and scratch buffers, created on first score (anomaly-maps.ts). */
  private readonly maps: AnomalyMapper;
  private readonly threads: number | undefined;

  private constructor(parts: ModelParts, backbone: Backbone | undefined, threads?: number) {
    this.header = parts.header;
    this.channelIndices = parts.channelIndices;
    this.mean = parts.mean;
    this.inverse = parts.inverse;
    this.resume = { ...(parts.m2 ? { m2: parts.m2 } : {}), ...(parts.samples ? { samples: parts.samples } : {}) };
    this.roi = parts.roi;
    this.std = parts.standardization;
    this.backbone = backbone;
    this.threads = threads;
    this.maps = new AnomalyMapper(this, threads);
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
   * Only what scoring needs is read: the statistics kept for `fit --resume` (scatter matrices or
   * samples: 1.4–1.9 GB at d=550) and any other section stay in the file unless `resumeStatistics` is
   * true; {@link Model.resumeStatistics} reads them later, and {@link Model.save} does so by itself.
   * The inverse covariances are decoded from the file straight into the one copy scoring uses.
   * `warmUp` builds the scoring session before returning ({@link Model.warmUp}).
   *
   * @example
   * const model = await Model.load('bottle.partscan');
   * const r = await model.score('part.png');
   * await model.dispose();
   */
  static async load(
    file: string,
    opts: { backbone?: string | BackboneSpec | Backbone; threads?: number; verify?: boolean; resumeStatistics?: boolean; warmUp?: boolean } = {},
  ): Promise<Model> {
    parseOptions(loadOptionsSchema, opts, 'Model.load');
    const { parts, sections, lazy } = await readModelParts(file, opts);
    const header = parts.header;
    let backbone: Backbone | undefined;
    // A quantized graph cannot be rebuilt from a spec (weights): an embedded int8 backbone is used whatever spec is given.
    const int8Embedded = header.backbone.precision === 'int8' && header.backbone.embedded;
    if (opts.backbone && (isBackbone(opts.backbone) || !int8Embedded)) {
      backbone = isBackbone(opts.backbone) ? opts.backbone : await loadBackbone(opts.backbone, threadOpt(opts.threads));
      assertSameBackbone(header.backbone, backbone.identity, file);
    } else if (header.backbone.embedded) {
      const onnx = sections.get('backbone.onnx') as Uint8Array | undefined;
      if (!onnx) throw new PartscanError('MODEL_FORMAT', `${file}: embedded backbone section missing.`, { file, remedy: 're-fit the model' });
      const { embedded: _e, inputName, graphSha256: _g, ...identity } = header.backbone;
      backbone = await OrtBackbone.create(onnx, identity, { ...threadOpt(opts.threads), inputName });
    }
    const model = new Model(parts, backbone, opts.threads);
    model.modelFile = file;
    model.lazy = lazy;
    if (opts.warmUp) {
      try {
        await model.warmUp();
      } catch (e) {
        await model.dispose();
        throw e;
      }
    }
    return model;
  }

  /**
   * The out-of-sample scores the thresholds were chosen from (the calibration pool), read from the model
   * file on first call; undefined for models without one (older formats, fits with too few images).
   */
  async calibrationScores(): Promise<CalibrationPool | undefined> {
    const { pool } = this.calibration;
    const lazy = this.lazy;
    if (pool || !lazy || !this.header.calibration) return pool;
    const sections = await readLazySections(lazy, Object.values(CALIBRATION_SECTIONS));
    this.calibration.pool = CalibrationPool.fromSections(this.header.calibration, sections, lazy.file);
    return this.calibration.pool;
  }

  /** @internal Replaces the calibration pool (fit, calibrate) and its header summary. */
  setCalibrationScores(pool: CalibrationPool | undefined): void {
    this.calibration = pool ? { pool } : {};
    if (pool) this.header.calibration = pool.summary();
    else delete this.header.calibration;
  }

  /** @internal Sets the per-position standardisation of the image score (fit); the scoring sessions are rebuilt on next use. */
  async setStandardization(s: PositionStandardization | undefined): Promise<void> {
    this.std = s;
    this.header.imageScore = { kind: s ? 'standardized' : 'max' };
    await this.maps.dispose();
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
    const lazy = this.lazy;
    if (lazy && !this.resume.m2 && !this.resume.samples && lazy.entries.some((e) => RESUME_SECTIONS.includes(e.name))) {
      this.resume = resumeSections(await readLazySections(lazy, RESUME_SECTIONS), this.header, lazy.file);
    }
    return { ...this.resume };
  }

  /**
   * Builds what the first score would build — the scoring graph and its ONNX Runtime session (or the
   * session-by-session kernels) — and runs one blank image through it, so that the first real image
   * costs one inference. For a changeover: warm the next part type's model while the line stops.
   *
   * @example
   * const next = await Model.load('cap.partscan');
   * await next.warmUp(); // the first verdict on the line is now a steady-state score
   */
  async warmUp(): Promise<void> {
    const S = this.size;
    await this.anomalyMaps({ data: new Float32Array(3 * S * S), dims: [1, 3, S, S] });
  }

  /**
   * Bytes this model keeps resident, by what it holds: the inverse-covariance stripes, means, ROI and
   * any statistics for resuming read so far, plus its backbone graph three times (the bytes, and the
   * weights of the backbone and scoring sessions). ONNX Runtime's activation arenas come on top (they
   * grow with the batch size: some tens of MB per session at batch 1, 224 px). {@link ModelPool} budgets
   * with it; `npm run bench` reports it beside the measured RSS per model.
   */
  get residentBytes(): number {
    const own = this.inverse.byteLength + this.mean.byteLength * 1.5 + this.channelIndices.byteLength + (this.roi?.byteLength ?? 0);
    const resume = (this.resume.m2?.byteLength ?? 0) + (this.resume.samples?.byteLength ?? 0);
    return own + resume + 3 * (this.backbone?.onnx.byteLength ?? 0);
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
    const resume = opts.resumable === false ? {} : await this.resumeStatistics();
    const backbone = embed ? await this.getBackbone() : undefined;
    const { header, sections } = modelFileContents({
      header: this.header,
      channelIndices: this.channelIndices,
      mean: this.mean,
      inverse: this.inverse,
      resume: { ...(resume.m2 ? { m2: resume.m2 } : {}), ...(resume.samples ? { samples: resume.samples } : {}) },
      ...(this.roi ? { roi: this.roi } : {}),
      size: this.size,
      ...(await this.calibrationScores().then((pool) => (pool ? { pool } : {}))),
      ...(this.standardization ? { standardization: this.standardization } : {}),
      ...(backbone ? { backboneOnnx: backbone.onnx } : {}),
    });
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

  /**
   * Default images per scoring batch. Every batch streams all P inverse covariances (d=550 at 224 px:
   * 3.8 GB) through the Mahalanobis GEMMs, so large d wants larger batches: about 32 MB of inverse
   * per image, between 8 and 32 images (d=100 → 8, d=550 → 32).
   */
  get defaultScoreBatchSize(): number {
    const inverseBytes = this.positions * this.dim * this.dim * 4;
    return Math.min(32, Math.max(8, Math.ceil(inverseBytes / (32 * 1024 * 1024))));
  }

  /**
   * Raw anomaly maps of a preprocessed batch [N,3,S,S]: Mahalanobis distance per grid position,
   * bilinear upsampling (align_corners=false) to S×S, Gaussian blur σ=4. Returns one map per image.
   */
  async anomalyMaps(batch: Tensor4D, transformSquared?: (d2: number) => number): Promise<Float32Array[]> {
    return (await this.scoreMaps(batch, transformSquared)).maps;
  }

  /**
   * {@link anomalyMaps} with what the scoring path computes beside the maps: the standardised image
   * scores (models with a per-position standardisation) and, on the stepwise path, the squared grid
   * distances.
   */
  async scoreMaps(batch: Tensor4D, transformSquared?: (d2: number) => number): Promise<MapBatch> {
    const [, , h, w] = batch.dims;
    if (h !== this.size || w !== this.size) {
      throw new PartscanError('INVALID_TENSOR', `Input tensor is ${w}×${h}; this model expects ${this.size}×${this.size}.`, {
        remedy: 'preprocess with the model header\'s preprocess options',
      });
    }
    if (!transformSquared) {
      const fused = await this.fusedScoring();
      if (fused) return this.fusedMaps(fused, batch);
    }
    return this.maps.stepwiseMaps(await this.getBackbone(), batch, transformSquared);
  }

  /**
   * Anomaly maps from squared grid distances [P, N] (optionally transformed per distance, e.g. the
   * leave-one-out rescaling): the tail of {@link anomalyMaps}, for distances computed elsewhere.
   */
  mapsFromDistances(d2: Float32Array, n: number, transformSquared?: (d2: number) => number): Promise<MapBatch> {
    return this.maps.mapsFromDistances(d2, n, transformSquared);
  }

  /**
   * The single scoring session, or undefined where the model scores session by session (see
   * {@link AnomalyMapper.fusedScoring}). This and fusedMaps stay as seams on the model so that tests can
   * check which path anomalyMaps took.
   */
  private fusedScoring(): Promise<ort.InferenceSession | undefined> {
    return this.maps.fusedScoring();
  }

  /** Raw anomaly maps of a preprocessed batch from the single scoring session. */
  private fusedMaps(session: ort.InferenceSession, batch: Tensor4D): Promise<MapBatch> {
    return this.maps.fusedMaps(session, batch);
  }

  /** Squared Mahalanobis distances [P, N] of embeddings [P, N, d] (e.g. the fit's own, kept). */
  embeddingDistances(emb: Float32Array, n: number): Promise<Float32Array> {
    return this.maps.embeddingDistances(emb, n);
  }

  /**
   * Scores one image: a path, encoded bytes (any Uint8Array), a raw camera frame or a preprocessed
   * tensor ({@link ScoreInput}). Region boxes are in the image's pixels.
   *
   * @example
   * const r = await model.score('part.png');
   * if (r.verdict === 'NG') console.log(r.normalizedScore, r.regions);
   *
   * @example
   * // A camera's raw buffer as the SDK hands it over: no PNG encoding.
   * const r = await model.score({ data: frame.buffer, width: 1280, height: 1024, channels: 3, order: 'bgr' });
   * if (r.verdict !== 'OK') await fs.writeFile('ng.jpg', await renderResult(r, 'overlay', { format: 'jpeg' }));
   */
  async score(input: ScoreInput, opts?: ScoreOptions): Promise<ScoreResult>;
  /**
   * Scores several images (batched through the backbone), with progress after each batch and
   * cancellation by an AbortSignal (a 'CANCELLED' PartscanError within one batch).
   *
   * @example
   * const stop = new AbortController();
   * const results = await model.score(['a.png', 'b.png', 'c.png'], {
   *   batchSize: 8,
   *   signal: stop.signal,
   *   onProgress: (e) => console.log(`${e.done}/${e.total}`),
   * });
   */
  async score(input: ScoreInput[], opts?: ScoreOptions): Promise<ScoreResult[]>;
  async score(input: ScoreInput | ScoreInput[], opts: ScoreOptions = {}): Promise<ScoreResult | ScoreResult[]> {
    parseOptions(scoreOptionsSchema, opts, 'Model.score');
    if (Array.isArray(input)) return this.scoreMany(input, opts);
    return (await this.scoreMany([input], opts))[0]!;
  }

  private async scoreMany(inputs: ScoreInput[], opts: ScoreOptions): Promise<ScoreResult[]> {
    const bs = Math.max(1, opts.batchSize ?? this.defaultScoreBatchSize);
    const { signal, onProgress } = opts;
    throwIfAborted(signal, 'Scoring');
    const results: ScoreResult[] = [];
    const done = (r: ScoreResult, input: ScoreInput): void => {
      rememberInput(r, input, this.header.preprocess);
      results.push(r);
    };
    if (this.header.tiling) {
      for (const input of inputs) {
        done(await this.scoreTiled(input, bs, opts), input);
        throwIfAborted(signal, 'Scoring');
        onProgress?.({ stage: 'score', done: results.length, total: inputs.length });
      }
      return results;
    }
    // Pipeline: decode/resize batch k+1 (sharp's threads) while ORT runs batch k.
    let pending: Promise<PreparedBatch> | undefined = inputs.length ? prepareBatch(inputs.slice(0, bs), this.header.preprocess, this.size) : undefined;
    // The first call builds the scoring session: do it while the first batch decodes (errors surface in anomalyMaps).
    if (pending) this.fusedScoring().catch(() => undefined);
    for (let i = 0; i < inputs.length; i += bs) {
      const current = pending!;
      pending = i + bs < inputs.length && !signal?.aborted ? prepareBatch(inputs.slice(i + bs, i + 2 * bs), this.header.preprocess, this.size) : undefined;
      pending?.catch(() => undefined); // surfaced when awaited
      const { tensor, infos, sources } = await current;
      throwIfAborted(signal, 'Scoring');
      const { maps, imageScores } = await this.scoreMaps(tensor);
      maps.forEach((map, k) => {
        const r = this.finish(map, this.size, this.size, sources[k]!, infos[k], opts, imageScores ? { imageScore: imageScores[k]! } : {});
        this.addDrift(r, tensor.data, k);
        done(r, inputs[i + k]!);
      });
      throwIfAborted(signal, 'Scoring');
      onProgress?.({ stage: 'score', done: results.length, total: inputs.length });
    }
    return results;
  }

  /** Scores one image tile by tile at native resolution and stitches the maps with overlap blending (tiles.ts). */
  private async scoreTiled(input: ScoreInput, batchSize: number, opts: ScoreOptions): Promise<ScoreResult> {
    const t = await tiledAnomalyMap(input, this.header.tiling!, this.header.preprocess, this.size, batchSize, (b) => this.scoreMaps(b));
    return this.finish(t.map, t.info.width, t.info.height, t.info.source, t.info, opts, { imageScore: t.imageScore, mapMax: t.mapMax });
  }

  /** Builds a result from a raw map against this model's thresholds and region of interest (score-result.ts). */
  private finish(
    map: Float32Array,
    mapWidth: number,
    mapHeight: number,
    source: string,
    info: ImageInfo | undefined,
    opts: ScoreOptions,
    scores: ScoreOverrides = {},
  ): ScoreResult {
    return buildScoreResult(this.resultContext, map, mapWidth, mapHeight, source, info, opts, scores);
  }

  /** What results are judged against: input side (and side before a crop), thresholds, region of interest. */
  private get resultContext(): ScoreResultContext {
    const p = this.header.preprocess;
    return { size: this.size, thresholds: this.header.thresholds, roi: this.roi, ...(p.cropSize !== undefined && p.cropSize < p.imageSize ? { imageSize: p.imageSize } : {}) };
  }

  /** The stored drift model, parsed on first score (null: not parsed yet; undefined: the model has none). */
  private driftModel: DriftModel | undefined | null = null;

  /** Flags whole-image drift of image `k` of a preprocessed batch against the stored drift model. */
  private addDrift(r: ScoreResult, batch: Float32Array, k: number): void {
    if (this.driftModel === null) this.driftModel = this.header.drift ? parseDriftModel(this.header.drift, this.modelFile) : undefined;
    if (this.driftModel) addDrift(r, this.driftModel, batch, k, this.size, this.header.preprocess);
  }

  /**
   * Maps a result's anomaly map (or normalised map) to the original image size (bilinear), for export.
   * With a centre crop the map lands in the crop's part of the image and the rest is 0.
   */
  mapToOriginal(map: Float32Array, width: number, height: number): Float32Array {
    if (map.length === width * height) return map; // tiled models already score at native resolution
    return mapOntoImage(map, this.size, this.size, width, height, mapWindow(this.resultContext, this.size, this.size, { width, height }));
  }

  /** Replaces the thresholds (e.g. a manual override or a recalibration). */
  setThresholds(t: Thresholds | undefined): void {
    if (t) this.header.thresholds = t;
    else delete this.header.thresholds;
  }

  /** Releases ONNX Runtime sessions. */
  async dispose(): Promise<void> {
    await this.maps.dispose();
    if (this.backbone) await this.backbone.dispose();
    this.backbone = undefined;
    this.backbonePromise = undefined;
  }
}
