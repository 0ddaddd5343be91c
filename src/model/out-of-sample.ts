/**
 * Out-of-sample scores of the good training images, computed at fit time: every image scored against
 * the model fitted without it (leave-one-out, from the Gaussians by Sherman–Morrison). They are what
 * new good parts will score, so they serve the contamination check (a "good" image that scores like a
 * defect), the per-position standardisation of the image score, the thresholds at a stated
 * false-reject rate, and line monitoring's reference.
 */
import { PartscanError } from '../errors.js';
import { preprocessBatch, preprocessTiles } from '../preprocess/preprocess.js';
import { scoreOutliers } from '../guards/robust-stats.js';
import type { MapBatch } from './types.js';
import type { Tensor4D } from '../types.js';
import { throwIfAborted } from '../util/abort.js';
import type { ModelHeader } from './header.js';

/** What the out-of-sample pass needs of a fitted model ({@link Model} is one). */
export interface OutOfSampleModel {
  readonly header: Pick<ModelHeader, 'gaussian' | 'preprocess' | 'tiling'>;
  readonly positions: number;
  readonly dim: number;
  readonly size: number;
  scoreMaps(batch: Tensor4D, transformSquared?: (d2: number) => number): Promise<MapBatch>;
  mapsFromDistances(d2: Float32Array, n: number, transformSquared?: (d2: number) => number): Promise<MapBatch>;
  embeddingDistances(emb: Float32Array, n: number): Promise<Float32Array>;
}

/**
 * Leave-one-out grid distances and raw map extremes of the training samples: one row per image, or per
 * tile of a tiled model (`owner` maps rows to images).
 */
export interface OutOfSampleGrids {
  /** Rows (samples). */
  rows: number;
  /** Grid positions per row. */
  P: number;
  /** Out-of-sample distances √d²_loo, row-major [rows, P]. */
  dist: Float32Array;
  /** Raw anomaly-map maximum per row. */
  mapMax: Float32Array;
  /** Raw anomaly-map minimum per row. */
  mapMin: Float32Array;
  /** The image each row belongs to. */
  owner: Int32Array;
  /** Images (owners). */
  images: number;
  /** The rows' raw maps, when asked for (F1-adaptive pixel thresholds). */
  maps?: Float32Array[];
}

/**
 * The leave-one-out rescaling of an in-sample squared distance m, for a model fitted on n samples.
 * Removing x (δ = x − μ) from n samples moves the mean by −δ/(n−1) and gives
 * Σ₋ ≈ ((n−1)/(n−2))·(Σ − c·δδᵀ) with c = n/(n−1)² (ε·I rescaled alongside, a slight
 * over-regularisation), so by Sherman–Morrison d²_loo = (n/(n−1))²·((n−2)/(n−1))·m / (1 − c·m). c·m < 1
 * always (m is below the leverage bound (n−1)²/n); an image that explains its own outlying features
 * (a defect among the "good" set) has c·m → 1.
 */
export function looTransform(n: number): (m: number) => number {
  if (!(n >= 3)) throw new PartscanError('TRAINING_SET', `Leave-one-out scores need a model fitted on at least 3 images; this one has ${n}.`, { remedy: 'fit on more good images' });
  const c = n / (n - 1) ** 2;
  const k = (n / (n - 1)) ** 2 * ((n - 2) / (n - 1));
  return (m: number): number => (k * m) / Math.max(1e-6, 1 - c * m);
}

/**
 * Collects per-row results of map batches into {@link OutOfSampleGrids}, batch by batch: each map is
 * reduced (distances, maximum, minimum) as it comes and dropped unless `keepMaps`. The rows grow as
 * needed (a tiled model's tile count is known only once its images are cut).
 */
class GridCollector {
  private dist: Float32Array;
  private mapMax: Float32Array;
  private mapMin: Float32Array;
  private owner: Int32Array;
  private readonly maps: Float32Array[] | undefined;
  private row = 0;

  constructor(
    private readonly P: number,
    private readonly images: number,
    keepMaps: boolean,
    /** Rows expected (the capacity to start with; {@link result} checks it when given). */
    private readonly expectedRows?: number,
  ) {
    const rows = expectedRows ?? images;
    this.dist = new Float32Array(rows * P);
    this.mapMax = new Float32Array(rows);
    this.mapMin = new Float32Array(rows);
    this.owner = new Int32Array(rows);
    this.maps = keepMaps ? [] : undefined;
  }

  /** Makes room for `rows` rows (at least doubling, so appends stay linear). */
  private reserve(rows: number): void {
    if (rows <= this.owner.length) return;
    const cap = Math.max(rows, 2 * this.owner.length);
    const grown = <T extends Float32Array | Int32Array>(a: T, per: number, make: (n: number) => T): T => {
      const out = make(cap * per);
      out.set(a);
      return out;
    };
    this.dist = grown(this.dist, this.P, (n) => new Float32Array(n));
    this.mapMax = grown(this.mapMax, 1, (n) => new Float32Array(n));
    this.mapMin = grown(this.mapMin, 1, (n) => new Float32Array(n));
    this.owner = grown(this.owner, 1, (n) => new Int32Array(n));
  }

  add(b: MapBatch, owners: ArrayLike<number>): void {
    const d2 = b.d2!;
    this.reserve(this.row + b.maps.length);
    for (let k = 0; k < b.maps.length; k++) {
      const r = this.row++;
      for (let p = 0; p < this.P; p++) this.dist[r * this.P + p] = Math.sqrt(Math.max(0, d2[k * this.P + p]!));
      const m = b.maps[k]!;
      let hi = -Infinity;
      let lo = Infinity;
      for (let i = 0; i < m.length; i++) {
        if (m[i]! > hi) hi = m[i]!;
        if (m[i]! < lo) lo = m[i]!;
      }
      this.mapMax[r] = hi;
      this.mapMin[r] = lo;
      this.owner[r] = owners[k]!;
      this.maps?.push(m);
    }
  }

  result(): OutOfSampleGrids {
    const rows = this.row;
    if (this.expectedRows !== undefined && rows !== this.expectedRows) throw new PartscanError('INVALID_TENSOR', `Out-of-sample pass produced ${rows} rows, expected ${this.expectedRows}.`);
    const { P, images, maps } = this;
    const exact = <T extends Float32Array | Int32Array>(a: T, n: number): T => (a.length === n ? a : (a.subarray(0, n) as T));
    return { rows, P, dist: exact(this.dist, rows * P), mapMax: exact(this.mapMax, rows), mapMin: exact(this.mapMin, rows), owner: exact(this.owner, rows), images, ...(maps ? { maps } : {}) };
  }
}

/**
 * Leave-one-out grids of the training images from the embeddings the fit kept ([P, n, d], image order
 * of the fit), with no second backbone pass: per chunk of images, in-sample distances, then the
 * leave-one-out rescaling, upsampling and blur.
 */
export async function outOfSampleFromEmbeddings(model: OutOfSampleModel, embeddings: Float32Array, n: number, opts: { keepMaps?: boolean; signal?: AbortSignal } = {}): Promise<OutOfSampleGrids> {
  const P = model.positions;
  const d = model.dim;
  if (embeddings.length !== P * n * d) {
    throw new PartscanError('INVALID_TENSOR', `Kept embeddings hold ${embeddings.length} values, expected ${P}×${n}×${d}.`, {
      remedy: 'pass the [P, n, d] embeddings of the n images the model was fitted on',
    });
  }
  const loo = looTransform(model.header.gaussian.images);
  const out = new GridCollector(P, n, opts.keepMaps ?? false, n);
  // Chunks of images: ORT's intermediates stay the size of one chunk's embeddings.
  const chunk = 16;
  for (let i0 = 0; i0 < n; i0 += chunk) {
    throwIfAborted(opts.signal, 'The fit');
    const c = Math.min(chunk, n - i0);
    const part = new Float32Array(P * c * d);
    for (let p = 0; p < P; p++) part.set(embeddings.subarray((p * n + i0) * d, (p * n + i0 + c) * d), p * c * d);
    const b = await model.mapsFromDistances(await model.embeddingDistances(part, c), c, loo);
    out.add(b, Array.from({ length: c }, (_, k) => i0 + k));
  }
  return out.result();
}

/**
 * {@link outOfSampleFromEmbeddings} by running the backbone over the training images again (when their
 * embeddings did not fit the memory budget). A tiled model is scored tile by tile, one row per tile.
 */
export async function outOfSampleByBackbone(model: OutOfSampleModel, files: readonly string[], opts: { keepMaps?: boolean; signal?: AbortSignal } = {}): Promise<OutOfSampleGrids> {
  const loo = looTransform(model.header.gaussian.images);
  const S = model.size;
  const tiling = model.header.tiling;
  // Tiled: each image's tiles (rows known once cut); untiled: 16 images a batch, one row each. Each
  // batch is reduced as it is scored: only the maps asked for are kept.
  const out = new GridCollector(model.positions, files.length, opts.keepMaps ?? false, tiling ? undefined : files.length);
  const run = async (batch: Tensor4D, owners: number[]): Promise<void> => {
    throwIfAborted(opts.signal, 'The fit');
    out.add(await model.scoreMaps(batch, loo), owners);
  };
  if (tiling) {
    for (let i = 0; i < files.length; i++) {
      const t = await preprocessTiles(files[i]!, model.header.preprocess, tiling.tile, tiling.overlap);
      await run({ data: t.tensor, dims: [t.boxes.length, 3, S, S] }, t.boxes.map(() => i));
    }
  } else {
    for (let i = 0; i < files.length; i += 16) {
      const part = files.slice(i, i + 16);
      const b = await preprocessBatch(part, model.header.preprocess);
      await run({ data: b.tensor, dims: [part.length, 3, S, S] }, part.map((_, k) => i + k));
    }
  }
  return out.result();
}

/** The maximum of `values` over each image's rows. */
export function perImageMax(values: ArrayLike<number>, owner: Int32Array, images: number): Float32Array {
  const out = new Float32Array(images).fill(-Infinity);
  for (let r = 0; r < owner.length; r++) if (values[r]! > out[owner[r]!]!) out[owner[r]!] = values[r]!;
  return out;
}

/** The minimum of `values` over each image's rows. */
export function perImageMin(values: ArrayLike<number>, owner: Int32Array, images: number): Float32Array {
  const out = new Float32Array(images).fill(Infinity);
  for (let r = 0; r < owner.length; r++) if (values[r]! < out[owner[r]!]!) out[owner[r]!] = values[r]!;
  return out;
}

/** A training image that scores like an outlier leave-one-out. */
export interface ContaminationSuspect {
  /** The training image. */
  file: string;
  /** Its leave-one-out anomaly score (raw map maximum). */
  score: number;
  /** Robust z of that score, on the log scale, among the training images. */
  z: number;
}

/**
 * The likely contaminated "good" images: those whose leave-one-out raw map maximum (in the order of
 * `files`) is an outlier by {@link scoreOutliers}; highest score first.
 */
export function contaminationSuspects(files: readonly string[], looScores: ArrayLike<number>): ContaminationSuspect[] {
  const scores = Array.from(looScores);
  const { z, outlier } = scoreOutliers(scores);
  return files
    .map((file, i) => ({ file, score: scores[i]!, z: z[i]! }))
    .filter((_, i) => outlier[i])
    .sort((a, b) => b.score - a.score);
}

/** Leave-one-out raw map maxima of the training images (see {@link outOfSampleByBackbone}). */
export async function leaveOneOutScores(model: OutOfSampleModel, files: readonly string[]): Promise<number[]> {
  const g = await outOfSampleByBackbone(model, files);
  return Array.from(perImageMax(g.mapMax, g.owner, g.images));
}

/** Leave-one-out raw map maxima of the training images from their kept embeddings (see {@link outOfSampleFromEmbeddings}). */
export async function leaveOneOutScoresFromEmbeddings(model: OutOfSampleModel, embeddings: Float32Array, n: number): Promise<number[]> {
  return Array.from((await outOfSampleFromEmbeddings(model, embeddings, n)).mapMax);
}
