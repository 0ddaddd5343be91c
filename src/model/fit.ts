/**
 * Fitting: training images → backbone → per-position Gaussians (low-rank or streaming) → model, then
 * the fit-time checks (training-set guards, leave-one-out contamination, drift model) and calibration
 * of the thresholds (calibrate-thresholds.ts). The scoring side is {@link Model}.
 */

import { PartscanError, type PartscanWarning } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { DEFAULT_FIT_BATCH_SIZE, DEFAULT_FIT_SEED, fitOptionsSchema } from '../options/schemas.js';
import type { Backbone, BackboneIdentity } from '../backbone/types.js';
import { backboneDefaults, loadBackbone } from '../backbone/registry.js';
import { loadDataset } from '../data/loaders.js';
import { channelSources, gatherEmbedding, selectChannels } from '../embedding/embedding.js';
import { GaussianAccumulator, fitGaussiansLowRank, lowRankSampleLimit } from '../stats/gaussian-stats.js';
import { StripedInverse } from '../stats/striped-inverse.js';
import { StatsKernels } from '../stats/ort-kernels.js';
import { BufferPool } from '../util/buffer-pool.js';
import { defaultPreprocessOptions, validatePreprocessOptions } from '../preprocess/options.js';
import { preprocessBatch, preprocessTiles } from '../preprocess/preprocess.js';
import { resizeNearest } from '../postprocess/resize.js';
import type { PreprocessOptions, Tensor4D } from '../types.js';
import { imageFingerprint, type ImageFingerprint } from '../guards/fingerprint.js';
import { fingerprintAndPreprocess, keepImages, LoopGuards } from '../guards/decode-once.js';
import { checkTrainingSet, type TrainingSetReport } from '../guards/training-set.js';
import { fitDriftModel } from '../guards/drift.js';
import { GLOBAL_STATS_FEATURES } from '../guards/image-stats.js';
import { driftDescriptorFromTensor } from '../guards/tensor-descriptor.js';
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
import { applyStored, encodePacked, STORAGE } from './model-sections.js';
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

/**
 * Fits a PaDiM model on good images. Images go through the backbone in batches; with at most d/2
 * samples every embedding is kept and the Gaussians are fitted at once by the Woodbury identity
 * ({@link fitGaussiansLowRank}), otherwise only per-position sufficient statistics are kept (streaming),
 * so memory never exceeds the packed scatter matrices, whatever the number of images.
 * A held-out share of the good images (or `calibration`) calibrates the thresholds; labelled
 * `defects` switch the thresholds to F1-adaptive.
 *
 * @example
 * const model = await fit('bottle/train/good', { channels: 100, imageSize: 224 });
 * await model.save('bottle.partscan');
 * await model.dispose();
 */
export async function fit(source: ImageSource, opts: FitOptions = {}): Promise<Model> {
  parseOptions(fitOptionsSchema, opts, 'fit');
  throwIfAborted(opts.signal, 'The fit');
  checkThresholdOptions(
    { ...(opts.thresholdRule ? { rule: opts.thresholdRule } : {}), ...pick(opts, 'falseRejectTarget', 'reviewBand', 'band'), ...(opts.manualThresholds ? { manual: opts.manualThresholds } : {}) },
    (opts.defects?.length ?? 0) > 0 || opts.review !== undefined,
    'fit',
  );
  await checkFitInputs(opts);
  const warnings: PartscanWarning[] = [];
  const precision = validatePrecision(opts.precision);
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
  const { fitFiles: candidateFiles, calibrationFiles } = explicitCalibration
    ? { fitFiles: all, calibrationFiles: explicitCalibration }
    : splitCalibration(all, opts.calibrationSplit ?? 0, seed);

  let backbone: Backbone;
  let preprocess: PreprocessOptions;
  let channelIndices: Int32Array;
  let resumeStatistics: { m2?: Float32Array; samples?: Float32Array } = {};
  if (resumeFrom) {
    resumeStatistics = await resumeFrom.resumeStatistics();
    if (!resumeStatistics.m2 && !resumeStatistics.samples) {
      throw new PartscanError('OPTIONS', 'The model to resume from was saved without its statistics (compact file).', {
        file: resumeFrom.modelFile,
        remedy: 're-fit from all images, or save models with resumable statistics',
      });
    }
    backbone = await resumeFrom.getBackbone();
    preprocess = resumeFrom.header.preprocess;
    channelIndices = resumeFrom.channelIndices;
  } else {
    backbone = await fitBackbone(opts);
    // A backbone may bring its own defaults (the bundled MobileNetV2: all 152 channels at 224 px).
    const defaults = backboneDefaults(backbone.identity.name);
    const imageSize = opts.imageSize ?? opts.tile?.size ?? defaults.imageSize;
    preprocess = validatePreprocessOptions(defaultPreprocessOptions({ ...opts.preprocess, ...(imageSize ? { imageSize } : {}) }));
    const total = backbone.identity.channels.reduce((a, b) => a + b, 0);
    const d = opts.channels ?? defaults.channels ?? DEFAULT_CHANNELS;
    if (!Number.isInteger(d) || d < 1 || d > total) {
      throw new PartscanError('OPTIONS', `--channels must be an integer in 1..${total} for backbone ${backbone.identity.name}, got ${d}.`, {
        remedy: total > 550 ? 'use e.g. 100 (default) or 550' : `use at most ${total} (all channels)`,
      });
    }
    channelIndices = selectChannels(total, d, seed);
  }
  const d = channelIndices.length;
  const size = preprocess.cropSize ?? preprocess.imageSize;
  const sources = channelSources(channelIndices, backbone.identity.channels);
  const kernels = await StatsKernels.create(d, opts.threads);
  const batchSize = opts.batchSize ?? DEFAULT_FIT_BATCH_SIZE;
  let acc: GaussianAccumulator | undefined =
    resumeFrom && resumeStatistics.m2
      ? new GaussianAccumulator(resumeFrom.positions, d, {
          count: resumeFrom.header.gaussian.images,
          mean: Float64Array.from(resumeFrom.mean),
          m2: Float32Array.from(resumeStatistics.m2),
        })
      : undefined;
  // A model that kept its samples resumes by fitting them again together with the new ones.
  const priorSamples = resumeFrom && resumeStatistics.samples ? { data: resumeStatistics.samples, count: resumeFrom.header.gaussian.images } : undefined;
  let grid = resumeFrom ? { gridH: resumeFrom.header.embedding.gridH, gridW: resumeFrom.header.embedding.gridW } : undefined;

  const tiling = resumeFrom ? resumeFrom.header.tiling : opts.tile ? { tile: opts.tile.size, overlap: opts.tile.overlap } : undefined;
  const report: FitReport = { rejected: [], nearDuplicates: [], suspects: [] };
  let fitFiles = candidateFiles;
  // Without tiling the guards fingerprint each image from the decode that feeds the backbone (in the
  // fit loop below); with tiling they run here, before the loop.
  const loopGuards = opts.guards !== false && !tiling ? new LoopGuards() : undefined;
  const applyGuards = (check: TrainingSetReport): void => {
    warnings.push(...check.warnings);
    report.rejected = check.rejected;
    report.nearDuplicates = check.nearDuplicates;
    for (const r of check.rejected) warnings.push({ code: r.code, message: `${r.file} left out of fitting: ${r.reason}`, file: r.file });
    const out = new Set(check.rejected.map((r) => r.file));
    fitFiles = fitFiles.filter((f) => !out.has(f));
    if (fitFiles.length === 0) {
      throw new PartscanError('TRAINING_SET', 'Every training image was rejected (constant or duplicate images).', {
        remedy: 'check the camera / export: the training folder must hold real photos of good parts',
      });
    }
  };
  if (opts.guards !== false && tiling) {
    const fingerprints = [];
    for (let i = 0; i < fitFiles.length; i += 8) {
      fingerprints.push(...(await Promise.all(fitFiles.slice(i, i + 8).map((f) => imageFingerprint(f, { maxPixels: preprocess.maxPixels })))));
    }
    applyGuards(checkTrainingSet(fingerprints));
  }
  const descriptors: number[][] = [];
  // Pipeline: decode/resize the next batch (sharp, its own threads) while ORT runs the current one.
  const batches: string[][] = [];
  for (let i = 0; i < fitFiles.length; i += batchSize) batches.push(fitFiles.slice(i, i + batchSize));
  const prepare = async (files: string[]): Promise<{ tensor: Float32Array; n: number; fingerprints?: ImageFingerprint[] }> => {
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
  if (resumeFrom && opts.precision !== undefined && precision !== (resumeFrom.header.backbone.precision ?? 'fp32')) {
    throw new PartscanError('OPTIONS', `precision ${precision} differs from the resumed model's (${resumeFrom.header.backbone.precision ?? 'fp32'}).`, {
      remedy: 'leave out --precision when resuming: a resumed fit keeps its backbone',
    });
  }
  if (precision === 'int8' && !resumeFrom) {
    // Calibrated on the first good images, in fixed batches of 4 whatever --batch-size: deterministic.
    const calib = fitFiles.slice(0, DEFAULT_CALIBRATION_IMAGES);
    const calibrationBatches = async function* () {
      for (let i = 0; i < calib.length; i += 4) {
        const p = await prepare(calib.slice(i, i + 4));
        yield { data: p.tensor, dims: [p.n, 3, size, size] as [number, number, number, number] };
      }
    };
    const fp32 = backbone;
    backbone = await quantizeBackbone(fp32, calibrationBatches(), opts.threads !== undefined ? { threads: opts.threads } : {});
    if (!(opts.backbone && isBackbone(opts.backbone))) await fp32.dispose();
  }
  let pending = batches.length ? prepare(batches[0]!) : undefined;
  let pendingEmb: EmbeddingBuffer | undefined;
  /** Whether all samples are kept and fitted at once ({@link fitGaussiansLowRank}); decided on the first batch. */
  let lowRank: boolean | undefined;
  const fitEmbeddings = new BufferPool(1);
  // The leave-one-out check scores the training images from their embeddings: the low-rank fit keeps
  // them anyway; the streaming fit keeps a copy when it fits the memory budget, else the check runs the
  // backbone a second time.
  const looKeep = !tiling && fitFiles.length >= 3 ? new KeptEmbeddings(opts.contaminationMemory) : undefined;
  let kept: EmbeddingBuffer | undefined;
  /** Whether the statistics buffer holds every training embedding for the leave-one-out check (decided on the first batch). */
  let looInBuffer: boolean | undefined;
  let done = 0;
  for (let b = 0; b < batches.length; b++) {
    throwIfAborted(opts.signal, 'The fit');
    let prepared = await pending!;
    pending = b + 1 < batches.length ? prepare(batches[b + 1]!) : undefined;
    pending?.catch(() => undefined);
    if (loopGuards && prepared.fingerprints) {
      const keep = loopGuards.admit(batches[b]!, prepared.fingerprints);
      if (keep.length < batches[b]!.length) prepared = { tensor: keepImages(prepared.tensor, keep, 3 * size * size), n: keep.length };
      if (keep.length === 0) {
        done += batches[b]!.length;
        opts.onProgress?.({ stage: 'fit', done, total: fitFiles.length });
        continue;
      }
    }
    const n = prepared.n;
    if (!tiling) for (let k = 0; k < n; k++) descriptors.push(driftDescriptorFromTensor(prepared.tensor, k * 3 * size * size, size, preprocess));
    const input = { data: prepared.tensor, dims: [n, 3, size, size] as [number, number, number, number] };
    // Samples per image (tiles with tiling), to foresee the samples to come.
    const perImage = tiling ? n / batches[b]!.length : 1;
    /** Decides where this batch's embeddings go, given the grid: the statistics buffer (flushed when full). */
    const place = async (P: number): Promise<EmbeddingBuffer> => {
      if (lowRank === undefined) {
        ({ lowRank, pendingEmb, acc } = await startStatistics(P, d, Math.ceil(perImage * fitFiles.length), acc, priorSamples, kernels));
      }
      if (lowRank && pendingEmb!.count + n > pendingEmb!.capacity) lowRank = false; // more samples than foreseen: stream
      if (!lowRank) {
        acc ??= new GaussianAccumulator(P, d);
        // Merge several backbone batches per statistics update: the per-position outer products then run as
        // GEMMs with a deeper inner dimension and the packed scatter matrices are swept fewer times. The
        // buffer is bounded by STATS_BUFFER_BYTES, not by the number of images.
        // Never larger than the samples still to come.
        const samplesLeft = Math.ceil(perImage * (fitFiles.length - done));
        const cap = Math.max(n, Math.min(samplesLeft, Math.floor(statsBufferBytes() / (P * d * 4))));
        if (!pendingEmb || pendingEmb.capacity < n || pendingEmb.count + n > pendingEmb.capacity) {
          if (pendingEmb && pendingEmb.count > 0) {
            await flushEmbeddings(pendingEmb, acc, kernels);
            looInBuffer = false;
          }
          if (!pendingEmb || pendingEmb.capacity < n) pendingEmb = { data: new Float32Array(P * cap * d), capacity: cap, count: 0, P, d };
        }
        // When one buffer holds every training image, the leave-one-out check reads the embeddings from it
        // (the statistics update leaves them intact); otherwise it keeps its own copy, within its budget.
        looInBuffer ??= looKeep !== undefined && looKeep.allowed && done === 0 && pendingEmb.capacity >= Math.ceil(perImage * fitFiles.length);
        if (looKeep && !looInBuffer) kept ??= looKeep.start(P, fitFiles.length, d);
      }
      return pendingEmb!;
    };
    const embed = async (maps: Tensor4D[]): Promise<void> => {
      const [, , gridH, gridW] = maps[0]!.dims;
      grid ??= { gridH, gridW };
      const target = await place(gridH * gridW);
      if (kept) {
        // A separate leave-one-out copy: gather once, append to both.
        const emb = gatherEmbedding(maps, sources, fitEmbeddings.acquire(gridH * gridW * n * d));
        appendEmbeddings(kept, emb.data, n);
        appendEmbeddings(target, emb.data, n);
        fitEmbeddings.release(emb.data);
      } else {
        // Straight into the statistics buffer's rows: no per-batch copy.
        gatherEmbedding(maps, sources, target.data, { capacity: target.capacity, offset: target.count });
        target.count += n;
      }
    };
    if (backbone.withFeatures) await backbone.withFeatures(input, embed);
    else await embed(await backbone.extract(input));
    done += batches[b]!.length;
    opts.onProgress?.({ stage: 'fit', done, total: fitFiles.length });
  }
  if (loopGuards) applyGuards(loopGuards.report());
  if (lowRank === undefined && resumeFrom) {
    // Resumed without new images.
    ({ lowRank, pendingEmb, acc } = await startStatistics(resumeFrom.positions, d, 0, acc, priorSamples, kernels));
  }
  const epsilon = resumeFrom?.header.gaussian.epsilon ?? opts.epsilon ?? DEFAULT_EPSILON;
  opts.onProgress?.({ stage: 'invert', done: 0, total: 1 });
  let fitted: { count: number; mean: Float64Array; invCov: Float32Array; m2?: Float32Array; samples?: Float32Array } | undefined;
  if (lowRank && pendingEmb) {
    const samples = compactEmbeddings(pendingEmb);
    fitted = { ...(await fitGaussiansLowRank(samples, pendingEmb.count, pendingEmb.P, d, kernels, epsilon)), samples };
  } else {
    if (pendingEmb && pendingEmb.count > 0 && acc) {
      const count = pendingEmb.count;
      const x = await flushEmbeddings(pendingEmb, acc, kernels);
      if (looInBuffer) kept = { data: x, capacity: count, count, P: pendingEmb.P, d };
    }
    if (acc) fitted = { count: acc.count, mean: acc.mean, invCov: await acc.inverseCovariances(kernels, epsilon), m2: acc.m2 };
  }
  pendingEmb = undefined;
  await kernels.dispose();
  if (!fitted || !grid) throw new PartscanError('DATASET', 'No training images could be used.', { remedy: 'check the training folder' });
  if (fitted.count < d) {
    warnings.push({
      code: 'FEW_IMAGES',
      message: `Fitted on ${fitted.count} images, fewer than the embedding size d=${d}: covariances rest on the ε·I regulariser. Scores will be less reliable; use more good images (≥ ${d}) or fewer --channels.`,
    });
  }
  opts.onProgress?.({ stage: 'invert', done: 1, total: 1 });

  const { embedded: _e, inputName: _i, ...resumeIdentity } = resumeFrom?.header.backbone ?? { embedded: false, inputName: '' };
  const header: ModelHeader = {
    format: 'partscan-model',
    formatVersion: [MODEL_FORMAT_MAJOR, MODEL_FORMAT_MINOR],
    partscanVersion: PARTSCAN_VERSION,
    backbone: { ...(resumeFrom ? (resumeIdentity as BackboneIdentity) : backbone.identity), embedded: true, inputName: backbone.inputName },
    preprocess,
    embedding: { channels: d, seed, totalChannels: backbone.identity.channels.reduce((a, b) => a + b, 0), gridH: grid.gridH, gridW: grid.gridW },
    gaussian: { images: fitted.count, epsilon, storage: STORAGE, resumable: true, resumeState: fitted.m2 ? 'scatter' : 'samples' },
    postprocess: { blurSigma: BLUR_SIGMA, upsample: 'bilinear' },
    fit: { calibrationImages: 0, calibrationWarnings: [] },
    ...(tiling ? { tiling } : {}),
    // A resumed model keeps its image-score definition; a new one gets its standardisation in calibrateFit.
    imageScore: resumeFrom ? (resumeFrom.header.imageScore ?? { kind: 'max' }) : { kind: 'max' },
  };
  const drift = resumeFrom ? resumeFrom.header.drift : descriptors.length >= 5 ? fitDriftModel(descriptors, { names: [...GLOBAL_STATS_FEATURES] }) : undefined;
  if (drift) header.drift = drift;
  // The file's float16 form of the inverse, encoded while the packed triangles are at hand.
  const storedInverse = encodePacked(fitted.invCov, grid.gridH * grid.gridW, d);
  const model = Model.fromParts(
    {
      header,
      channelIndices,
      mean: fitted.mean,
      // float32 for the checks below; set to the stored float16 values at the end of the fit.
      inverse: StripedInverse.fromPacked(fitted.invCov, grid.gridH * grid.gridW, d),
      ...(fitted.m2 ? { m2: fitted.m2 } : {}),
      ...(fitted.samples ? { samples: fitted.samples } : {}),
      ...(resumeFrom?.standardization ? { standardization: resumeFrom.standardization } : {}),
    },
    backbone,
    opts.threads,
  );
  if (resumeFrom?.roi) model.roi = resumeFrom.roi;
  if (opts.roi) {
    if (tiling) {
      throw new PartscanError('OPTIONS', 'A ROI mask cannot be combined with tiling yet.', { file: opts.roi, remedy: 'leave out --roi or --tile' });
    }
    model.roi = await roiAtModelSize(opts.roi, fitFiles[0]!, model.size);
    header.roi = { width: model.size, height: model.size };
  }
  throwIfAborted(opts.signal, 'The fit');
  // Out-of-sample scores of every training image (leave-one-out): the contamination check, the
  // per-position standardisation of the image score, the thresholds and the monitor's reference.
  const own = kept?.count === fitFiles.length ? compactEmbeddings(kept) : fitted.samples && !tiling && fitted.count === fitFiles.length ? fitted.samples : undefined;
  kept = undefined;
  if (!own && looKeep) {
    const w = looKeep.secondPassWarning();
    if (w) warnings.push(w);
  }
  const { looScores, heldOutScores } = await calibrateFit(
    model,
    {
      fitFiles,
      ...(loopGuards ? { fileHashes: loopGuards.fileHashes() } : {}),
      ...(own ? { embeddings: own } : {}),
      heldOut: calibrationFiles,
      defects: [...(opts.defects ?? []), ...(reviewed?.defects ?? [])],
      ...(resumeFrom ? { resumed: resumeFrom } : {}),
      ...(reviewed ? { review: { relabelled: reviewed.relabelled, keys: reviewed.keys } } : {}),
      options: opts,
    },
    warnings,
    report,
  );
  // Line monitoring's reference (format 1.2): out-of-sample good scores and the spread of drift z.
  const monitor = heldOutScores.length || looScores.length
    ? buildMonitorReference({ calibrationScores: heldOutScores, looScores, ...(drift ? { drift } : {}), trainingDescriptors: descriptors })
    : resumeFrom?.header.monitor;
  if (monitor) header.monitor = monitor;
  throwIfAborted(opts.signal, 'The fit');
  header.fit.calibrationImages = header.calibration?.good ?? 0;
  header.fit.calibrationWarnings = warnings.map((w) => w.message);
  // Last: the fitted model then scores exactly as it will once saved and loaded (float16 inverse).
  applyStored(model.inverse, storedInverse);
  model.fitWarnings = warnings;
  if (reviewed) report.review = reviewed.summary;
  model.fitReport = report;
  return model;
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

/**
 * Bytes of embeddings buffered between statistics updates during fit. Each update streams the whole
 * packed scatter matrix (d=550 at 224 px: 1.9 GB) through memory, so fewer, larger updates are much
 * faster (bottle, d=550 at 224 px: two updates of ≤155 images instead of six of 37). The buffer is bounded:
 * fitting 10 000 images needs no more memory than fitting 150.
 */
export const STATS_BUFFER_BYTES = 1024 * 1024 * 1024;

/**
 * The statistics buffer's size: {@link STATS_BUFFER_BYTES}, or `PARTSCAN_STATS_BUFFER_MB` MiB (e.g. 256
 * on a machine short of memory; fractions allowed). A buffer that cannot hold every training image
 * makes the leave-one-out check keep its own copy of the embeddings (within `contaminationMemory`).
 */
function statsBufferBytes(): number {
  const mb = Number(process.env.PARTSCAN_STATS_BUFFER_MB);
  return Number.isFinite(mb) && mb > 0 ? Math.floor(mb * 2 ** 20) : STATS_BUFFER_BYTES;
}

interface EmbeddingBuffer {
  data: Float32Array;
  capacity: number;
  count: number;
  P: number;
  d: number;
}

/** Appends a [P, n, d] embedding batch to a [P, capacity, d] buffer. */
function appendEmbeddings(buf: EmbeddingBuffer, emb: Float32Array, n: number): void {
  const { P, d, capacity, count } = buf;
  for (let p = 0; p < P; p++) buf.data.set(emb.subarray(p * n * d, (p + 1) * n * d), (p * capacity + count) * d);
  buf.count += n;
}

/**
 * Chooses how the statistics are gathered, once the grid (P) and the number of new samples are known:
 * with at most d/2 samples in all (bottle at d=550: 209 images), every embedding is kept and fitted at
 * once by the Woodbury identity ({@link fitGaussiansLowRank}); the samples then take no more memory
 * than the scatter matrices of the streaming fit. Samples kept by a resumed model join either way.
 */
async function startStatistics(
  P: number,
  d: number,
  newSamples: number,
  acc: GaussianAccumulator | undefined,
  prior: { data: Float32Array; count: number } | undefined,
  kernels: StatsKernels,
): Promise<{ lowRank: boolean; pendingEmb: EmbeddingBuffer | undefined; acc: GaussianAccumulator | undefined }> {
  const total = newSamples + (prior?.count ?? 0);
  if (!acc && total >= 2 && total <= lowRankSampleLimit(d)) {
    const pendingEmb: EmbeddingBuffer = { data: new Float32Array(P * total * d), capacity: total, count: 0, P, d };
    if (prior) appendEmbeddings(pendingEmb, prior.data, prior.count);
    return { lowRank: true, pendingEmb, acc };
  }
  if (prior && !acc) {
    acc = new GaussianAccumulator(P, d);
    await acc.add(Float32Array.from(prior.data), prior.count, kernels);
  }
  return { lowRank: false, pendingEmb: undefined, acc };
}

/** The buffered embeddings as [P, count, d] (compacted in place from [P, capacity, d]). */
function compactEmbeddings(buf: EmbeddingBuffer): Float32Array {
  const { P, d, capacity, count } = buf;
  const x = buf.data;
  if (count === capacity) return x;
  // Moving rows forward never overwrites unread data.
  for (let p = 1; p < P; p++) x.copyWithin(p * count * d, p * capacity * d, (p * capacity + count) * d);
  return x.subarray(0, P * count * d);
}

/** Folds the buffered embeddings into the statistics and empties the buffer; returns them ([P, count, d], intact). */
async function flushEmbeddings(buf: EmbeddingBuffer, acc: GaussianAccumulator, kernels: StatsKernels): Promise<Float32Array> {
  const x = compactEmbeddings(buf);
  await acc.add(x, buf.count, kernels);
  buf.count = 0;
  return x;
}

