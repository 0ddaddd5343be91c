/**
 * Distance → anomaly maps for a fitted model, by two paths that give the same maps: one ONNX Runtime
 * session for the whole scoring graph (fused), and session by session (backbone, embedding gather,
 * Mahalanobis kernels, upsampling + blur), which also serves distances computed elsewhere and
 * transformed distances. This module owns the sessions and scratch buffers those paths create lazily,
 * and reads the model's parameters through {@link ScoringGraphModel} so that it never imports the model.
 */

import * as ort from 'onnxruntime-node';
import { PartscanError } from '../errors.js';
import type { Backbone } from '../backbone/types.js';
import { channelSources, gatherEmbedding, type ChannelSource } from '../embedding/embedding.js';
import { BufferPool } from '../util/buffer-pool.js';
import { StatsKernels, positionsPerChunk } from '../stats/ort-kernels.js';
import { createSession, defaultThreads } from '../onnx/session.js';
import { UpsampleBlurSession } from '../postprocess/upsample-blur-graph.js';
import type { Tensor4D } from '../types.js';
import { inlineScoringGraph, inverseStripeInputs, type ScoringGraphModel } from './scoring-graph.js';
import type { MapBatch } from './types.js';

/** The scoring sessions and buffers of one model, created on first use and released by {@link dispose}. */
export class AnomalyMapper {
  private readonly sources: ChannelSource[];
  private kernelsPromise: Promise<StatsKernels> | undefined;
  /** Scratch embeddings for scoring, reused across batches. */
  private readonly embeddingPool = new BufferPool();
  private upsampleBlurPromise: Promise<UpsampleBlurSession> | undefined;
  /** The means in float32, as the scoring kernel takes them (made on first score). */
  private mean32: Float32Array | undefined;
  /** The stripe inputs of the single scoring session (views of the model's stripes, made once). */
  private inverseFeeds: Record<string, ort.Tensor> | undefined;
  private fusedScoringPromise: Promise<ort.InferenceSession | undefined> | undefined;

  constructor(
    private readonly model: ScoringGraphModel,
    private readonly threads: number | undefined,
  ) {
    this.sources = channelSources(model.channelIndices, model.header.backbone.channels);
  }

  private kernels(): Promise<StatsKernels> {
    this.kernelsPromise ??= StatsKernels.create(this.model.dim, this.threads);
    return this.kernelsPromise;
  }

  private upsampleBlur(): Promise<UpsampleBlurSession> {
    const { gridW, gridH } = this.model.header.embedding;
    const { size, standardization } = this.model;
    this.upsampleBlurPromise ??= UpsampleBlurSession.create(gridW, gridH, size, this.model.header.postprocess.blurSigma, this.threads ?? defaultThreads(), standardization);
    return this.upsampleBlurPromise;
  }

  /** Raw anomaly maps of a preprocessed batch, session by session through the given backbone. */
  async stepwiseMaps(backbone: Backbone, batch: Tensor4D, transformSquared?: (d2: number) => number): Promise<MapBatch> {
    const [n] = batch.dims;
    const d2 = backbone.withFeatures
      ? await backbone.withFeatures(batch, (maps) => this.gridDistances(maps, n))
      : await this.gridDistances(await backbone.extract(batch), n);
    return this.mapsFromDistances(d2, n, transformSquared);
  }

  /**
   * Anomaly maps from squared grid distances [P, N], optionally transformed per distance, with the
   * (transformed) squared distances image-major and, for a model with a per-position standardisation,
   * the standardised image scores.
   */
  async mapsFromDistances(d2: Float32Array, n: number, transformSquared?: (d2: number) => number): Promise<MapBatch> {
    const P = this.model.positions;
    // Image-major squared distances [N, P] (optionally transformed, e.g. leave-one-out rescaling).
    const byImage = new Float32Array(n * P);
    for (let i = 0; i < n; i++) {
      const o = i * P;
      if (transformSquared) for (let p = 0; p < P; p++) byImage[o + p] = transformSquared(d2[p * n + i]!);
      else for (let p = 0; p < P; p++) byImage[o + p] = d2[p * n + i]!;
    }
    const out = await (await this.upsampleBlur()).run(byImage, n);
    return { maps: perImage(out.maps, n, this.model.size * this.model.size), d2: byImage, ...(out.scores ? { imageScores: out.scores } : {}) };
  }

  /**
   * One ONNX Runtime session for the whole scoring path (see {@link inlineScoringGraph}), created on
   * first use; undefined where the graph cannot be one (tiled models, d=550 at 224 px: its inverse
   * covariances exceed what one in-memory graph holds, and batches there are dominated by the
   * Mahalanobis GEMMs anyway) or the backbone cannot be merged: those score session by session.
   */
  fusedScoring(): Promise<ort.InferenceSession | undefined> {
    this.fusedScoringPromise ??= (async () => {
      let bytes: Uint8Array | undefined;
      try {
        bytes = await inlineScoringGraph(this.model);
      } catch (e) {
        if (e instanceof PartscanError) return undefined; // e.g. a backbone graph that cannot be merged
        throw e;
      }
      return bytes && createSession(bytes, this.threads ?? defaultThreads());
    })();
    return this.fusedScoringPromise;
  }

  /** Raw anomaly maps of a preprocessed batch from the single scoring session (with the standardised image scores, if the model has them). */
  async fusedMaps(session: ort.InferenceSession, batch: Tensor4D): Promise<MapBatch> {
    const [n] = batch.dims;
    const SS = this.model.size * this.model.size;
    this.inverseFeeds ??= Object.fromEntries(
      inverseStripeInputs(this.model).map((name, a) => {
        const s = this.model.inverse.positionRange(0, this.model.positions)[a]!;
        return [name, new ort.Tensor('float32', s.data, s.dims)];
      }),
    );
    const standardized = this.model.standardization !== undefined;
    const input = new ort.Tensor('float32', batch.data.subarray(0, n * 3 * SS), [...batch.dims]);
    const out = await session.run({ input, ...this.inverseFeeds }, standardized ? ['anomaly_map', 'image_score'] : ['anomaly_map']);
    const maps = perImage(out.anomaly_map!.data as Float32Array, n, SS);
    return standardized ? { maps, imageScores: out.image_score!.data as Float32Array } : { maps };
  }

  /** Squared Mahalanobis distances [P, N] for backbone maps of N images. */
  private async gridDistances(maps: Tensor4D[], n: number): Promise<Float32Array> {
    const { gridH, gridW } = this.model.header.embedding;
    const first = maps[0]!;
    if (first.dims[2] !== gridH || first.dims[3] !== gridW) {
      throw new PartscanError('BACKBONE_MISMATCH', `Backbone grid ${first.dims[3]}×${first.dims[2]} differs from the model's ${gridW}×${gridH}.`, {
        remedy: 'score with the backbone and image size the model was fitted with',
      });
    }
    // Pooled: a fresh [P, N, d] array per batch (220 MB at d=550, N=32) costs more in page faults than the gather.
    const emb = gatherEmbedding(maps, this.sources, this.embeddingPool.acquire(this.model.positions * n * this.model.dim)).data;
    try {
      return await this.embeddingDistances(emb, n);
    } finally {
      this.embeddingPool.release(emb);
    }
  }

  /** Squared Mahalanobis distances [P, N] of embeddings [P, N, d] (e.g. the fit's own, kept). */
  async embeddingDistances(emb: Float32Array, n: number): Promise<Float32Array> {
    const P = this.model.positions;
    const d = this.model.dim;
    this.mean32 ??= Float32Array.from(this.model.mean);
    const mean = this.mean32;
    const kernels = await this.kernels();
    const out = new Float32Array(P * n);
    // Position chunks bound ORT's intermediates ([chunk, N, d] each) whatever the number of images.
    const chunk = positionsPerChunk(d, P);
    for (let p0 = 0; p0 < P; p0 += chunk) {
      const pc = Math.min(chunk, P - p0);
      const r = await kernels.mahalanobisSquared(emb.subarray(p0 * n * d, (p0 + pc) * n * d), mean.subarray(p0 * d, (p0 + pc) * d), this.model.inverse, p0, pc, n);
      out.set(r, p0 * n);
    }
    return out;
  }

  /** Releases the sessions and the scratch buffers; they are created again on next use. */
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
    this.embeddingPool.clear();
  }
}


/** Splits N maps of `size` values laid out one after another into one array per image. */
function perImage(flat: Float32Array, n: number, size: number): Float32Array[] {
  return Array.from({ length: n }, (_, i) => flat.slice(i * size, (i + 1) * size));
}
