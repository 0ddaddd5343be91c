/**
 * Fitting, as a list of stages: plan (images, resumed model, review) → set-up (backbone, preprocessing,
 * channels) → training-set guards → embedding pass into per-position Gaussians (fit-statistics.ts) →
 * model → out-of-sample calibration: leave-one-out scores, standardised image score, thresholds,
 * monitor reference (fit-calibration.ts). The scoring side is {@link Model}.
 */

import { PartscanError, type PartscanWarning } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { DEFAULT_FIT_BATCH_SIZE, DEFAULT_FIT_SEED, fitOptionsSchema } from '../options/schemas.js';
import type { Backbone, BackboneIdentity } from '../backbone/types.js';
import { backboneDefaults, loadBackbone } from '../backbone/registry.js';
import { loadDataset } from '../data/loaders.js';
import { channelSources, selectChannels } from '../embedding/embedding.js';
import { GaussianAccumulator } from '../stats/gaussian-stats.js';
import { StripedInverse } from '../stats/striped-inverse.js';
import { StatsKernels } from '../stats/ort-kernels.js';
import { defaultPreprocessOptions, validatePreprocessOptions } from '../preprocess/options.js';
import { preprocessBatch, preprocessTiles } from '../preprocess/preprocess.js';
import { resizeNearest } from '../postprocess/resize.js';
import type { PreprocessOptions } from '../types.js';
import { imageFingerprint } from '../guards/fingerprint.js';
import { fingerprintAndPreprocess, LoopGuards } from '../guards/decode-once.js';
import { checkTrainingSet, type TrainingSetReport } from '../guards/training-set.js';
import { fitDriftModel } from '../guards/drift.js';
import { GLOBAL_STATS_FEATURES } from '../guards/image-stats.js';
import { MODEL_FORMAT_MAJOR, MODEL_FORMAT_MINOR } from './model-file.js';
import { validatePrecision } from '../backbone/quantize.js';
import { DEFAULT_CALIBRATION_IMAGES, quantizeBackbone } from '../backbone/calibrate.js';
import { calibrateFit } from './fit-calibration.js';
import { nothingToFitError, planResumeReview } from './review-join.js';
import type { FitOptions } from './fit-options.js';
import { checkThresholdOptions } from '../postprocess/operating-point.js';
import { checkFitInputs } from './fit-checks.js';
import { throwIfAborted } from '../util/abort.js';
import { KeptEmbeddings } from './kept-embeddings.js';
import { embedTrainingImages, GaussianStatisticsBuilder, type FittedGaussians, type PreparedFitBatch, type PriorStatistics } from './fit-statistics.js';
import { applyStored, STORAGE } from './model-sections.js';
import { buildMonitorReference } from './monitor-reference.js';
import {
  BLUR_SIGMA,
  DEFAULT_CHANNELS,
  DEFAULT_EPSILON,
  isBackbone,
  Model,
  PARTSCAN_VERSION,
  threadOpt,
  type FitReport,
  type ImageSource,
  type ModelHeader,
} from './model.js';

/** Resolves an image source to good training image paths. */
export async function trainingImages(source: ImageSource): Promise<string[]> {
  if (typeof source === 'string') return (await loadDataset(source)).train.map((s) => s.path);
  if (Array.isArray(source)) return source.map((s) => (typeof s === 'string' ? s : s.path));
  return source.train.map((s) => s.path);
}

/** Deterministic hold-out: every image gets a seeded random rank; the lowest `share` go to calibration. */
export function splitCalibration(
  files: string[],
  share: number,
  seed: number,
): {
  /** Images to fit on, in input order. */
  fitFiles: string[];
  /** Images held out for calibration, in input order. */
  calibrationFiles: string[];
} {
  if (!(share >= 0 && share < 1)) {
    throw new PartscanError('OPTIONS', `calibrationSplit must be in [0, 1), got ${share}.`, { remedy: 'use e.g. 0.1' });
  }
  const k = Math.floor(files.length * share);
  if (k === 0 || files.length - k < 1) return { fitFiles: files, calibrationFiles: [] };
  const order = selectChannels(files.length, k, seed ^ 0x5eed);
  const held = new Set(order);
  return {
    fitFiles: files.filter((_, i) => !held.has(i)),
    calibrationFiles: files.filter((_, i) => held.has(i)),
  };
}

/** The fields of `o` named by `keys` that are set. */
function pick<T extends object, K extends keyof T>(o: T, ...keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** Backbone for a fit: an object, a spec, or the default. */
async function fitBackbone(opts: FitOptions): Promise<Backbone> {
  if (opts.backbone && isBackbone(opts.backbone)) return opts.backbone;
  return loadBackbone(opts.backbone ?? {}, threadOpt(opts.threads));
}

/** What the fit works from: the images, a resumed model, a review, the seed. */
interface FitPlan {
  resumeFrom?: Model;
  reviewed?: Awaited<ReturnType<typeof planResumeReview>>;
  /** Images to fit on (before the training-set guards). */
  fitFiles: string[];
  /** Images held out for calibration. */
  calibrationFiles: string[];
  seed: number;
}

/** The fit's inputs: the resumed model (its statistics read with it), the review, the training images. */
async function planFit(source: ImageSource, opts: FitOptions, warnings: PartscanWarning[]): Promise<FitPlan> {
  // A model resumed from a file reads its statistics for resuming with the rest, not in a second pass.
  const resumeFrom =
    typeof opts.resume === 'string'
      ? await Model.load(opts.resume, { resumeStatistics: true, ...(opts.backbone ? { backbone: opts.backbone } : {}) })
      : opts.resume;
  const reviewed = opts.review ? await planResumeReview(resumeFrom, { review: opts.review, ...pick(opts, 'imageRoots') }) : undefined;
  if (reviewed) warnings.push(...reviewed.warnings);
  const all = [...(await trainingImages(source)), ...(reviewed?.fitGood ?? [])];
  if (all.length === 0) {
    if (opts.review) throw nothingToFitError(opts.review);
    throw new PartscanError('DATASET', 'No training images were given.', { remedy: 'point fit at a folder of good images' });
  }
  const seed = resumeFrom?.header.embedding.seed ?? opts.seed ?? DEFAULT_FIT_SEED;
  const explicitCalibration = opts.calibration ? await trainingImages(opts.calibration) : undefined;
  // Every good image fits the model and calibrates it out of sample (leave-one-out); a held-out share is
  // only taken when asked for.
  const split = explicitCalibration ? { fitFiles: all, calibrationFiles: explicitCalibration } : splitCalibration(all, opts.calibrationSplit ?? 0, seed);
  return { ...(resumeFrom ? { resumeFrom } : {}), ...(reviewed ? { reviewed } : {}), ...split, seed };
}

/** The backbone, preprocessing and kept channels of a fit: the resumed model's, or new ones. */
interface FitSetup {
  backbone: Backbone;
  preprocess: PreprocessOptions;
  channelIndices: Int32Array;
  tiling?: { tile: number; overlap: number };
  prior: PriorStatistics;
}

/** The resumed model's backbone, preprocessing, channels and statistics. */
async function resumedSetup(resumeFrom: Model, opts: FitOptions, precision: string): Promise<FitSetup> {
  if (opts.precision !== undefined && precision !== (resumeFrom.header.backbone.precision ?? 'fp32')) {
    throw new PartscanError('OPTIONS', `precision ${precision} differs from the resumed model's (${resumeFrom.header.backbone.precision ?? 'fp32'}).`, {
      remedy: 'leave out --precision when resuming: a resumed fit keeps its backbone',
    });
  }
  const { m2, samples } = await resumeFrom.resumeStatistics();
  if (!m2 && !samples) {
    throw new PartscanError('OPTIONS', 'The model to resume from was saved without its statistics (compact file).', {
      file: resumeFrom.modelFile,
      remedy: 're-fit from all images, or save models with resumable statistics',
    });
  }
  const count = resumeFrom.header.gaussian.images;
  const d = resumeFrom.channelIndices.length;
  const prior: PriorStatistics = m2
    ? { acc: new GaussianAccumulator(resumeFrom.positions, d, { count, mean: Float64Array.from(resumeFrom.mean), m2: Float32Array.from(m2) }) }
    : // A model that kept its samples resumes by fitting them again together with the new ones.
      { samples: { data: samples!, count } };
  const tiling = resumeFrom.header.tiling;
  return { backbone: await resumeFrom.getBackbone(), preprocess: resumeFrom.header.preprocess, channelIndices: resumeFrom.channelIndices, ...(tiling ? { tiling } : {}), prior };
}

/** A new fit's backbone (its own defaults: the bundled MobileNetV2 takes all 152 channels at 224 px), preprocessing and seeded channels. */
async function newSetup(opts: FitOptions, seed: number): Promise<FitSetup> {
  const backbone = await fitBackbone(opts);
  const defaults = backboneDefaults(backbone.identity.name);
  const imageSize = opts.imageSize ?? opts.tile?.size ?? defaults.imageSize;
  const preprocess = validatePreprocessOptions(defaultPreprocessOptions({ ...opts.preprocess, ...(imageSize ? { imageSize } : {}) }));
  const total = backbone.identity.channels.reduce((a, b) => a + b, 0);
  const d = opts.channels ?? defaults.channels ?? DEFAULT_CHANNELS;
  if (!Number.isInteger(d) || d < 1 || d > total) {
    await disposeOwnBackbone(backbone, opts);
    throw new PartscanError('OPTIONS', `--channels must be an integer in 1..${total} for backbone ${backbone.identity.name}, got ${d}.`, {
      remedy: total > 550 ? 'use e.g. 100 (default) or 550' : `use at most ${total} (all channels)`,
    });
  }
  const tiling = opts.tile ? { tile: opts.tile.size, overlap: opts.tile.overlap } : undefined;
  return { backbone, preprocess, channelIndices: selectChannels(total, d, seed), ...(tiling ? { tiling } : {}), prior: {} };
}

/** Disposes a backbone the fit created (not one the caller passed in). */
async function disposeOwnBackbone(backbone: Backbone, opts: FitOptions): Promise<void> {
  if (!(opts.backbone && isBackbone(opts.backbone))) await backbone.dispose();
}

/** The images that survive the training-set guards, and the report and warnings of what they left out. */
class TrainingSet {
  report: FitReport = { rejected: [], nearDuplicates: [], suspects: [] };
  /** sha256 of each image's bytes, when the guards fingerprinted the images before the pass (tiling). */
  fileHashes: Map<string, string> | undefined;
  constructor(
    public files: string[],
    private readonly warnings: PartscanWarning[],
  ) {}

  /** Leaves out what a guard check rejected; throws when nothing is left. */
  apply(check: TrainingSetReport): void {
    this.warnings.push(...check.warnings);
    this.report.rejected = check.rejected;
    this.report.nearDuplicates = check.nearDuplicates;
    for (const r of check.rejected) this.warnings.push({ code: r.code, message: `${r.file} left out of fitting: ${r.reason}`, file: r.file });
    const out = new Set(check.rejected.map((r) => r.file));
    this.files = this.files.filter((f) => !out.has(f));
    if (this.files.length === 0) {
      throw new PartscanError('TRAINING_SET', 'Every training image was rejected (constant or duplicate images).', {
        remedy: 'check the camera / export: the training folder must hold real photos of good parts',
      });
    }
  }

  /** With tiling, the guards fingerprint the images before the embedding pass (without, in it: {@link LoopGuards}). */
  async checkBefore(maxPixels: number | undefined): Promise<void> {
    const fingerprints = [];
    for (let i = 0; i < this.files.length; i += 8) {
      fingerprints.push(...(await Promise.all(this.files.slice(i, i + 8).map((f) => imageFingerprint(f, { maxPixels })))));
    }
    this.fileHashes = new Map(fingerprints.map((f) => [f.file, f.sha256]));
    this.apply(checkTrainingSet(fingerprints));
  }
}

/** Decodes a batch of files into the backbone's input: whole images (fingerprinted when the guards run in the loop) or tiles. */
function batchPreparer(preprocess: PreprocessOptions, size: number, tiling: FitSetup['tiling'], loopGuards: LoopGuards | undefined): (files: string[]) => Promise<PreparedFitBatch> {
  return async (files) => {
    if (loopGuards) {
      const tensor = new Float32Array(files.length * 3 * size * size);
      return { tensor, n: files.length, fingerprints: (await fingerprintAndPreprocess(files, preprocess, tensor)).fingerprints };
    }
    if (!tiling) return { tensor: (await preprocessBatch(files, preprocess)).tensor, n: files.length };
    const parts = await Promise.all(files.map((f) => preprocessTiles(f, preprocess, tiling.tile, tiling.overlap)));
    const n = parts.reduce((a, p) => a + p.boxes.length, 0);
    const tensor = new Float32Array(n * 3 * size * size);
    let o = 0;
    for (const p of parts) {
      tensor.set(p.tensor, o);
      o += p.tensor.length;
    }
    return { tensor, n };
  };
}

/** The int8 backbone of a new fit, calibrated on the first good images in fixed batches of 4 whatever --batch-size: deterministic. */
async function quantizeForFit(fp32: Backbone, files: string[], prepare: (files: string[]) => Promise<PreparedFitBatch>, size: number, opts: FitOptions): Promise<Backbone> {
  const calib = files.slice(0, DEFAULT_CALIBRATION_IMAGES);
  const calibrationBatches = async function* () {
    for (let i = 0; i < calib.length; i += 4) {
      const p = await prepare(calib.slice(i, i + 4));
      yield { data: p.tensor, dims: [p.n, 3, size, size] as [number, number, number, number] };
    }
  };
  const int8 = await quantizeBackbone(fp32, calibrationBatches(), opts.threads !== undefined ? { threads: opts.threads } : {});
  await disposeOwnBackbone(fp32, opts);
  return int8;
}

/** The header of a fitted model, before calibration adds its thresholds, pool and monitor reference. */
function fitHeader(setup: FitSetup, plan: FitPlan, fitted: FittedGaussians, grid: { gridH: number; gridW: number }, epsilon: number): ModelHeader {
  const { backbone, channelIndices, tiling } = setup;
  const resumeFrom = plan.resumeFrom;
  const { embedded: _e, inputName: _i, ...resumeIdentity } = resumeFrom?.header.backbone ?? { embedded: false, inputName: '' };
  return {
    format: 'partscan-model',
    formatVersion: [MODEL_FORMAT_MAJOR, MODEL_FORMAT_MINOR],
    partscanVersion: PARTSCAN_VERSION,
    backbone: { ...(resumeFrom ? (resumeIdentity as BackboneIdentity) : backbone.identity), embedded: true, inputName: backbone.inputName },
    preprocess: setup.preprocess,
    embedding: { channels: channelIndices.length, seed: plan.seed, totalChannels: backbone.identity.channels.reduce((a, b) => a + b, 0), gridH: grid.gridH, gridW: grid.gridW },
    gaussian: { images: fitted.count, epsilon, storage: STORAGE, resumable: true, resumeState: fitted.m2 ? 'scatter' : 'samples' },
    postprocess: { blurSigma: BLUR_SIGMA, upsample: 'bilinear' },
    fit: { calibrationImages: 0, calibrationWarnings: [] },
    ...(tiling ? { tiling } : {}),
    // A resumed model keeps its image-score definition; a new one gets its standardisation in calibrateFit.
    imageScore: resumeFrom ? (resumeFrom.header.imageScore ?? { kind: 'max' }) : { kind: 'max' },
  };
}

/** Sets the model's ROI: the resumed model's, or the mask given (at the training images' size). */
async function applyRoi(model: Model, plan: FitPlan, setup: FitSetup, opts: FitOptions, reference: string): Promise<void> {
  if (plan.resumeFrom?.roi) model.roi = plan.resumeFrom.roi;
  if (!opts.roi) return;
  if (setup.tiling) throw new PartscanError('OPTIONS', 'A ROI mask cannot be combined with tiling yet.', { file: opts.roi, remedy: 'leave out --roi or --tile' });
  model.roi = await roiAtModelSize(opts.roi, reference, model.size);
  model.header.roi = { width: model.size, height: model.size };
}

/** The Gaussians of the embedding pass; warns when fewer images than d carry them. */
async function fitGaussians(stats: GaussianStatisticsBuilder, plan: FitPlan, setup: FitSetup, training: TrainingSet, opts: FitOptions, warnings: PartscanWarning[]): Promise<{ fitted: FittedGaussians; epsilon: number; embeddings?: Float32Array }> {
  const epsilon = plan.resumeFrom?.header.gaussian.epsilon ?? opts.epsilon ?? DEFAULT_EPSILON;
  const d = setup.channelIndices.length;
  opts.onProgress?.({ stage: 'invert', done: 0, total: 1 });
  const { fitted, embeddings } = await stats.finish(epsilon, plan.resumeFrom?.positions ?? 0, training.files.length);
  if (!fitted) throw new PartscanError('DATASET', 'No training images could be used.', { remedy: 'check the training folder' });
  if (fitted.count < d) {
    warnings.push({
      code: 'FEW_IMAGES',
      message: `Fitted on ${fitted.count} images, fewer than the embedding size d=${d}: covariances rest on the ε·I regulariser. Scores will be less reliable; use more good images (≥ ${d}) or fewer --channels.`,
    });
  }
  opts.onProgress?.({ stage: 'invert', done: 1, total: 1 });
  return { fitted, epsilon, ...(embeddings ? { embeddings } : {}) };
}

/**
 * Fits a PaDiM model on good images: the training images go through the backbone once into
 * per-position Gaussians (fit-statistics.ts); every good image is then scored out of sample
 * (leave-one-out) to standardise the image score, set the thresholds at the false-reject target and
 * give the line monitor its reference (fit-calibration.ts). Labelled `defects` join the operating point.
 *
 * @example
 * const model = await fit('bottle/train/good', { channels: 100, imageSize: 224 });
 * await model.save('bottle.partscan');
 * await model.dispose();
 */
export async function fit(source: ImageSource, opts: FitOptions = {}): Promise<Model> {
  await checkFitOptions(opts);
  const warnings: PartscanWarning[] = [];
  const precision = validatePrecision(opts.precision);
  const plan = await planFit(source, opts, warnings);
  const setup = plan.resumeFrom ? await resumedSetup(plan.resumeFrom, opts, precision) : await newSetup(opts, plan.seed);
  const size = setup.preprocess.cropSize ?? setup.preprocess.imageSize;
  const training = new TrainingSet(plan.fitFiles, warnings);
  if (opts.guards !== false && setup.tiling) await training.checkBefore(setup.preprocess.maxPixels);
  // Without tiling the guards fingerprint each image from the decode that feeds the backbone.
  const loopGuards = opts.guards !== false && !setup.tiling ? new LoopGuards() : undefined;
  const prepare = batchPreparer(setup.preprocess, size, setup.tiling, loopGuards);
  if (precision === 'int8' && !plan.resumeFrom) setup.backbone = await quantizeForFit(setup.backbone, training.files, prepare, size, opts);
  const { kernels, stats, looKeep } = await statisticsBuilder(setup, training.files.length, opts);
  const pass = await embedTrainingImages(
    { backbone: setup.backbone, preprocess: setup.preprocess, size, files: training.files, batchSize: opts.batchSize ?? DEFAULT_FIT_BATCH_SIZE, tiled: setup.tiling !== undefined, prepare, ...(loopGuards ? { loopGuards } : {}), ...pick(opts, 'signal', 'onProgress') },
    stats,
  );
  if (loopGuards) training.apply(loopGuards.report());
  const gaussians = await fitGaussians(stats, plan, setup, training, opts, warnings).finally(() => kernels.dispose());
  const grid = plan.resumeFrom ? { gridH: plan.resumeFrom.header.embedding.gridH, gridW: plan.resumeFrom.header.embedding.gridW } : pass.grid;
  if (!grid) throw new PartscanError('DATASET', 'No training images could be used.', { remedy: 'check the training folder' });
  const model = assembleModel(setup, plan, gaussians.fitted, grid, gaussians.epsilon, pass.descriptors, opts);
  await applyRoi(model, plan, setup, opts, training.files[0]!);
  throwIfAborted(opts.signal, 'The fit');
  // Without the training embeddings (too large to keep) the leave-one-out check runs the backbone a second time.
  const { embeddings } = gaussians;
  const secondPass = embeddings ? undefined : looKeep?.secondPassWarning();
  if (secondPass) warnings.push(secondPass);
  await calibrateFitted(model, { plan, training, loopGuards, ...(embeddings ? { embeddings } : {}), descriptors: pass.descriptors, opts, warnings });
  return model;
}

/** Options checked before any image is read or any backbone runs. */
async function checkFitOptions(opts: FitOptions): Promise<void> {
  parseOptions(fitOptionsSchema, opts, 'fit');
  throwIfAborted(opts.signal, 'The fit');
  checkThresholdOptions(
    { ...(opts.thresholdRule ? { rule: opts.thresholdRule } : {}), ...pick(opts, 'falseRejectTarget', 'reviewBand', 'band'), ...(opts.manualThresholds ? { manual: opts.manualThresholds } : {}) },
    (opts.defects?.length ?? 0) > 0 || opts.review !== undefined,
    'fit',
  );
  await checkFitInputs(opts);
}

/** The statistics builder of the embedding pass, and its ORT kernels (disposed once the Gaussians are fitted). */
async function statisticsBuilder(setup: FitSetup, images: number, opts: FitOptions): Promise<{ kernels: StatsKernels; stats: GaussianStatisticsBuilder; looKeep?: KeptEmbeddings }> {
  const d = setup.channelIndices.length;
  const kernels = await StatsKernels.create(d, opts.threads);
  // The leave-one-out check scores the training images from their embeddings (fit-statistics.ts).
  const looKeep = !setup.tiling && images >= 3 ? new KeptEmbeddings(opts.contaminationMemory) : undefined;
  const sources = channelSources(setup.channelIndices, setup.backbone.identity.channels);
  return { kernels, stats: new GaussianStatisticsBuilder(d, sources, kernels, setup.prior, looKeep), ...(looKeep ? { looKeep } : {}) };
}

/** The fitted model, scoring with float32 inverses until the fit's checks are done. */
function assembleModel(setup: FitSetup, plan: FitPlan, fitted: FittedGaussians, grid: { gridH: number; gridW: number }, epsilon: number, descriptors: number[][], opts: FitOptions): Model {
  const header = fitHeader(setup, plan, fitted, grid, epsilon);
  const drift = plan.resumeFrom ? plan.resumeFrom.header.drift : descriptors.length >= 5 ? fitDriftModel(descriptors, { names: [...GLOBAL_STATS_FEATURES] }) : undefined;
  if (drift) header.drift = drift;
  const P = grid.gridH * grid.gridW;
  const d = setup.channelIndices.length;
  const parts = {
    header,
    channelIndices: setup.channelIndices,
    mean: fitted.mean,
    // float32 for the checks; set to the stored float16 values at the end of the fit (calibrateFitted).
    inverse: StripedInverse.fromPacked(fitted.invCov, P, d),
    ...(fitted.m2 ? { m2: fitted.m2 } : {}),
    ...(fitted.samples ? { samples: fitted.samples } : {}),
    ...(plan.resumeFrom?.standardization ? { standardization: plan.resumeFrom.standardization } : {}),
  };
  return Model.fromParts(parts, setup.backbone, opts.threads);
}

/**
 * Out-of-sample scores of every training image (leave-one-out): the contamination check, the
 * per-position standardisation of the image score, the thresholds and the monitor's reference. Last,
 * the model's inverse becomes the stored float16 values: the fitted model then scores exactly as it
 * will once saved and loaded.
 */
async function calibrateFitted(
  model: Model,
  f: { plan: FitPlan; training: TrainingSet; loopGuards: LoopGuards | undefined; embeddings?: Float32Array; descriptors: number[][]; opts: FitOptions; warnings: PartscanWarning[] },
): Promise<void> {
  const { plan, training, opts, warnings } = f;
  const fitFiles = training.files;
  const { looScores, heldOutScores } = await calibrateFit(
    model,
    {
      fitFiles,
      ...(f.loopGuards ? { fileHashes: f.loopGuards.fileHashes() } : training.fileHashes ? { fileHashes: training.fileHashes } : {}),
      ...(f.embeddings ? { embeddings: f.embeddings } : {}),
      heldOut: plan.calibrationFiles,
      defects: [...(opts.defects ?? []), ...(plan.reviewed?.defects ?? [])],
      ...(plan.resumeFrom ? { resumed: plan.resumeFrom } : {}),
      ...(plan.reviewed ? { review: { relabelled: plan.reviewed.relabelled, keys: plan.reviewed.keys } } : {}),
      options: opts,
    },
    warnings,
    training.report,
  );
  const header = model.header;
  // Line monitoring's reference (format 1.2): out-of-sample good scores and the spread of drift z.
  const monitor = heldOutScores.length || looScores.length
    ? buildMonitorReference({ calibrationScores: heldOutScores, looScores, ...(header.drift ? { drift: header.drift } : {}), trainingDescriptors: f.descriptors })
    : plan.resumeFrom?.header.monitor;
  if (monitor) header.monitor = monitor;
  throwIfAborted(opts.signal, 'The fit');
  header.fit.calibrationImages = header.calibration?.good ?? 0;
  header.fit.calibrationWarnings = warnings.map((w) => w.message);
  applyStored(model.inverse);
  model.fitWarnings = warnings;
  if (plan.reviewed) training.report.review = plan.reviewed.summary;
  model.fitReport = training.report;
}

/**
 * Reads a ROI mask that must match the training images' size (checked against `reference`), and
 * resamples it (nearest) to the model's square input, where masks and regions are computed.
 */
async function roiAtModelSize(file: string, reference: string, size: number): Promise<Uint8Array> {
  const { readImageInfo } = await import('../preprocess/decode.js');
  const { readRoiMask } = await import('../postprocess/roi.js');
  const info = await readImageInfo(reference);
  const full = await readRoiMask(file, info.width, info.height);
  return resizeNearest(full, info.width, info.height, size, size);
}
