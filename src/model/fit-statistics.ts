/**
 * The fit's embedding pass: training images → backbone → per-position Gaussian statistics, in one pass
 * over the images. Decoding the next batch overlaps the backbone on the current one; the training-set
 * guards fingerprint each image from the decode that feeds the backbone. With at most d/2 samples
 * every embedding is kept and the Gaussians are fitted at once by the Woodbury identity
 * ({@link fitGaussiansLowRank}); otherwise only per-position sufficient statistics are kept
 * (streaming), so memory never exceeds the packed scatter matrices, whatever the number of images.
 * The leave-one-out check needs the training embeddings afterwards: the low-rank fit keeps them anyway;
 * the streaming fit lends its buffer when it holds every image, else keeps a copy within its budget.
 */
import type { Backbone } from '../backbone/types.js';
import { gatherEmbedding, type ChannelSource } from '../embedding/embedding.js';
import { GaussianAccumulator, fitGaussiansLowRank, lowRankSampleLimit } from '../stats/gaussian-stats.js';
import type { StatsKernels } from '../stats/ort-kernels.js';
import { BufferPool } from '../util/buffer-pool.js';
import { throwIfAborted } from '../util/abort.js';
import type { ImageFingerprint } from '../guards/fingerprint.js';
import { keepImages, type LoopGuards } from '../guards/decode-once.js';
import { driftDescriptorFromTensor } from '../guards/tensor-descriptor.js';
import type { PreprocessOptions, Tensor4D } from '../types.js';
import type { KeptEmbeddings } from './kept-embeddings.js';
import type { ProgressEvent } from './types.js';

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

/** Embeddings [P, capacity, d], of which the first `count` per position are filled. */
export interface EmbeddingBuffer {
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

/** The buffered embeddings as [P, count, d] (compacted in place from [P, capacity, d]). */
export function compactEmbeddings(buf: EmbeddingBuffer): Float32Array {
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

/** The fitted Gaussians: means [P, d], packed inverse covariances, and what resuming needs. */
export interface FittedGaussians {
  count: number;
  mean: Float64Array;
  invCov: Float32Array;
  m2?: Float32Array;
  samples?: Float32Array;
}

/** What a resumed fit starts from: its scatter matrices, or the samples it kept. */
export interface PriorStatistics {
  acc?: GaussianAccumulator;
  samples?: { data: Float32Array; count: number };
}

/** Where a batch stands in the pass: images before it, images in all, samples per image (tiles). */
export interface BatchPosition {
  imagesDone: number;
  images: number;
  perImage: number;
}

/**
 * Per-position statistics gathered batch by batch: where each batch's embeddings go (the low-rank
 * sample buffer, or the streaming buffer flushed into a {@link GaussianAccumulator} when full), and the
 * leave-one-out check's embeddings.
 */
export class GaussianStatisticsBuilder {
  /** Whether all samples are kept and fitted at once; decided on the first batch. */
  private lowRank: boolean | undefined;
  private buffer: EmbeddingBuffer | undefined;
  private acc: GaussianAccumulator | undefined;
  /** A separate copy of the training embeddings for the leave-one-out check. */
  private kept: EmbeddingBuffer | undefined;
  /** Whether the statistics buffer holds every training embedding for the leave-one-out check (decided on the first batch). */
  private looInBuffer: boolean | undefined;
  private readonly gathered = new BufferPool(1);

  constructor(
    private readonly d: number,
    private readonly sources: ChannelSource[],
    private readonly kernels: StatsKernels,
    private readonly prior: PriorStatistics,
    private readonly looKeep: KeptEmbeddings | undefined,
  ) {
    this.acc = prior.acc;
  }

  /**
   * Chooses how the statistics are gathered, once the grid (P) and the number of new samples are known:
   * with at most d/2 samples in all (bottle at d=550: 209 images), every embedding is kept and fitted at
   * once ({@link fitGaussiansLowRank}); the samples then take no more memory than the scatter matrices
   * of the streaming fit. Samples kept by a resumed model join either way.
   */
  async start(P: number, newSamples: number): Promise<void> {
    const { d, prior } = this;
    const total = newSamples + (prior.samples?.count ?? 0);
    this.lowRank = !this.acc && total >= 2 && total <= lowRankSampleLimit(d);
    if (this.lowRank) {
      this.buffer = { data: new Float32Array(P * total * d), capacity: total, count: 0, P, d };
      if (prior.samples) appendEmbeddings(this.buffer, prior.samples.data, prior.samples.count);
    } else if (prior.samples && !this.acc) {
      this.acc = new GaussianAccumulator(P, d);
      await this.acc.add(Float32Array.from(prior.samples.data), prior.samples.count, this.kernels);
    }
  }

  /** The buffer a batch of `n` samples goes to (see {@link BatchPosition}). */
  private async place(P: number, n: number, at: BatchPosition): Promise<EmbeddingBuffer> {
    const samplesInAll = Math.ceil(at.perImage * at.images);
    // Never larger than the samples still to come (this batch's included).
    const samplesLeft = Math.ceil(at.perImage * (at.images - at.imagesDone));
    if (this.lowRank === undefined) await this.start(P, samplesInAll);
    if (this.lowRank && this.buffer!.count + n > this.buffer!.capacity) this.lowRank = false; // more samples than foreseen: stream
    if (this.lowRank) return this.buffer!;
    const { d } = this;
    const acc = (this.acc ??= new GaussianAccumulator(P, d));
    // Merge several backbone batches per statistics update: the per-position outer products then run as
    // GEMMs with a deeper inner dimension and the packed scatter matrices are swept fewer times. The
    // buffer is bounded by STATS_BUFFER_BYTES, not by the number of images.
    const cap = Math.max(n, Math.min(samplesLeft, Math.floor(statsBufferBytes() / (P * d * 4))));
    let buf = this.buffer;
    if (!buf || buf.capacity < n || buf.count + n > buf.capacity) {
      if (buf && buf.count > 0) {
        await flushEmbeddings(buf, acc, this.kernels);
        this.looInBuffer = false;
      }
      if (!buf || buf.capacity < n) buf = this.buffer = { data: new Float32Array(P * cap * d), capacity: cap, count: 0, P, d };
    }
    // When one buffer holds every training image, the leave-one-out check reads the embeddings from it
    // (the statistics update leaves them intact); otherwise it keeps its own copy, within its budget.
    this.looInBuffer ??= this.looKeep !== undefined && this.looKeep.allowed && at.imagesDone === 0 && buf.capacity >= samplesInAll;
    if (this.looKeep && !this.looInBuffer) this.kept ??= this.looKeep.start(P, at.images, d);
    return buf;
  }

  /** Adds one batch's feature maps (n samples): gathers the kept channels into the statistics buffer. */
  async add(maps: Tensor4D[], n: number, at: BatchPosition): Promise<void> {
    const [, , gridH, gridW] = maps[0]!.dims;
    const P = gridH * gridW;
    const target = await this.place(P, n, at);
    if (this.kept) {
      // A separate leave-one-out copy: gather once, append to both.
      const emb = gatherEmbedding(maps, this.sources, this.gathered.acquire(P * n * this.d));
      appendEmbeddings(this.kept, emb.data, n);
      appendEmbeddings(target, emb.data, n);
      this.gathered.release(emb.data);
    } else {
      // Straight into the statistics buffer's rows: no per-batch copy.
      gatherEmbedding(maps, this.sources, target.data, { capacity: target.capacity, offset: target.count });
      target.count += n;
    }
  }

  /**
   * The Gaussians (covariance + ε·I inverted), and the training embeddings [P, training, d] for the
   * leave-one-out check when all `training` images' were kept (undefined: the check runs the backbone
   * again). `positions`: the grid, for a resumed fit that added no image.
   */
  async finish(epsilon: number, positions: number, training: number): Promise<{ fitted?: FittedGaussians; embeddings?: Float32Array }> {
    if (this.lowRank === undefined) await this.start(positions, 0);
    const buf = this.buffer;
    this.buffer = undefined;
    let fitted: FittedGaussians | undefined;
    let kept = this.kept;
    this.kept = undefined;
    if (this.lowRank && buf) {
      const samples = compactEmbeddings(buf);
      fitted = { ...(await fitGaussiansLowRank(samples, buf.count, buf.P, this.d, this.kernels, epsilon)), samples };
      // The low-rank fit's samples are the training embeddings when they are all of them (not a resumed model's too).
      if (buf.count === training) kept = { data: samples, capacity: buf.count, count: buf.count, P: buf.P, d: this.d };
    } else {
      if (buf && buf.count > 0 && this.acc) {
        const count = buf.count;
        const x = await flushEmbeddings(buf, this.acc, this.kernels);
        if (this.looInBuffer) kept = { data: x, capacity: count, count, P: buf.P, d: this.d };
      }
      if (this.acc) fitted = { count: this.acc.count, mean: this.acc.mean, invCov: await this.acc.inverseCovariances(this.kernels, epsilon), m2: this.acc.m2 };
    }
    const embeddings = kept?.count === training ? compactEmbeddings(kept) : undefined;
    return { ...(fitted ? { fitted } : {}), ...(embeddings ? { embeddings } : {}) };
  }
}

/** A decoded batch: its tensor, the samples in it (tiles), and the images' fingerprints when the guards run in the loop. */
export interface PreparedFitBatch {
  tensor: Float32Array;
  n: number;
  fingerprints?: ImageFingerprint[];
}

/** What the embedding pass runs over. */
export interface EmbeddingPassInput {
  backbone: Backbone;
  preprocess: PreprocessOptions;
  /** The model's input side. */
  size: number;
  files: string[];
  batchSize: number;
  tiled: boolean;
  prepare: (files: string[]) => Promise<PreparedFitBatch>;
  loopGuards?: LoopGuards;
  signal?: AbortSignal;
  onProgress?: (e: ProgressEvent) => void;
}

/**
 * Runs every training image through the backbone into `stats`, decoding the next batch while the
 * backbone runs the current one. Returns the grid and the images' drift descriptors (without tiling).
 */
export async function embedTrainingImages(input: EmbeddingPassInput, stats: GaussianStatisticsBuilder): Promise<{ grid?: { gridH: number; gridW: number }; descriptors: number[][] }> {
  const { files, batchSize, size, tiled } = input;
  const batches: string[][] = [];
  for (let i = 0; i < files.length; i += batchSize) batches.push(files.slice(i, i + batchSize));
  const descriptors: number[][] = [];
  let grid: { gridH: number; gridW: number } | undefined;
  let pending = batches.length ? input.prepare(batches[0]!) : undefined;
  let done = 0;
  for (let b = 0; b < batches.length; b++) {
    throwIfAborted(input.signal, 'The fit');
    let prepared = await pending!;
    pending = b + 1 < batches.length ? input.prepare(batches[b + 1]!) : undefined;
    pending?.catch(() => undefined);
    if (input.loopGuards && prepared.fingerprints) {
      const keep = input.loopGuards.admit(batches[b]!, prepared.fingerprints);
      if (keep.length < batches[b]!.length) prepared = { tensor: keepImages(prepared.tensor, keep, 3 * size * size), n: keep.length };
    }
    const n = prepared.n;
    if (n > 0) {
      if (!tiled) for (let k = 0; k < n; k++) descriptors.push(driftDescriptorFromTensor(prepared.tensor, k * 3 * size * size, size, input.preprocess));
      // Samples per image (tiles with tiling), to foresee the samples to come.
      const perImage = tiled ? n / batches[b]!.length : 1;
      const at: BatchPosition = { imagesDone: done, images: files.length, perImage };
      const embed = async (maps: Tensor4D[]): Promise<void> => {
        grid ??= { gridH: maps[0]!.dims[2], gridW: maps[0]!.dims[3] };
        await stats.add(maps, n, at);
      };
      const tensor = { data: prepared.tensor, dims: [n, 3, size, size] as [number, number, number, number] };
      if (input.backbone.withFeatures) await input.backbone.withFeatures(tensor, embed);
      else await embed(await input.backbone.extract(tensor));
    }
    done += batches[b]!.length;
    input.onProgress?.({ stage: 'fit', done, total: files.length });
  }
  return { ...(grid ? { grid } : {}), descriptors };
}
