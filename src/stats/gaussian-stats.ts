import { positionsPerChunk, type LowRankResult, type StatsKernels } from './ort-kernels.js';

/** Bytes of the centred copy of one position chunk in {@link GaussianAccumulator.add}. */
const CENTRED_SCRATCH_BYTES = 32 * 1024 * 1024;

/** Number of entries of a packed lower triangle of a d×d matrix. */
export function packedSize(d: number): number {
  return (d * (d + 1)) / 2;
}

/**
 * Streaming sufficient statistics of one Gaussian per grid position: count, mean (float64) and the
 * centred scatter matrix M2 = Σ (x−μ)(x−μ)ᵀ (float32, packed lower triangle, so memory is
 * P·d(d+1)/2·4 bytes whatever the number of images).
 *
 * Batches are merged with Chan et al.'s parallel update: the batch is centred on its own mean before
 * the outer products, which keeps float32 accumulation accurate, and merging is exact, so fitting in
 * several sessions (`--resume`) equals fitting all images at once up to float rounding.
 */
export class GaussianAccumulator {
  /** Images seen so far. */
  count: number;
  /** Per-position mean [P, d], float64. */
  readonly mean: Float64Array;
  /** Per-position centred scatter, packed lower triangle [P, d(d+1)/2]. */
  readonly m2: Float32Array;

  /** Starts empty statistics, or continues from saved ones. */
  constructor(
    /** Grid positions P, each with its own Gaussian. */
    readonly positions: number,
    /** Embedding size d. */
    readonly dim: number,
    saved?: { count: number; mean: Float64Array; m2: Float32Array },
  ) {
    const tri = packedSize(dim);
    if (saved) {
      if (saved.mean.length !== positions * dim || saved.m2.length !== positions * tri) {
        throw new RangeError('saved statistics do not match the grid and embedding size');
      }
      this.count = saved.count;
      this.mean = saved.mean;
      this.m2 = saved.m2;
    } else {
      this.count = 0;
      this.mean = new Float64Array(positions * dim);
      this.m2 = new Float32Array(positions * tri);
    }
  }

  /**
   * Adds a batch of embeddings `x` [P, B, d] (position-major). `x` is left as it is: each position chunk
   * is centred into a scratch buffer, so the fit can hand the same embeddings to the leave-one-out check.
   */
  async add(x: Float32Array, batch: number, kernels: StatsKernels): Promise<void> {
    const { positions: P, dim: d } = this;
    if (x.length !== P * batch * d) throw new RangeError(`embedding batch has ${x.length} values, expected ${P * batch * d}`);
    const tri = packedSize(d);
    const nA = this.count;
    const nB = batch;
    const n = nA + nB;
    // Chan's merge adds (nA·nB/n)·δδᵀ; as one extra row r = √(nA·nB/n)·δ of the batch it rides along
    // in the same GEMM, so the whole update M2 += XᵀX + rᵀr is one ONNX Runtime call per chunk.
    const rootCross = Math.sqrt((nA * nB) / n);
    const batchMean = new Float64Array(d);
    // Chunks also bounded by the centred copy (≤ 32 MiB), so the scratch stays small whatever the batch.
    const chunk = Math.max(1, Math.min(positionsPerChunk(d, P), Math.floor(CENTRED_SCRATCH_BYTES / (batch * d * 4))));
    const r = new Float32Array(Math.min(chunk, P) * d);
    const centred = new Float32Array(Math.min(chunk, P) * batch * d);
    for (let p0 = 0; p0 < P; p0 += chunk) {
      const pc = Math.min(chunk, P - p0);
      // Centre the chunk on its batch mean; δ = batch mean − running mean per position.
      for (let p = p0; p < p0 + pc; p++) {
        batchMean.fill(0);
        const base = p * batch * d;
        for (let b = 0; b < batch; b++) {
          const o = base + b * d;
          for (let j = 0; j < d; j++) batchMean[j]! += x[o + j]!;
        }
        for (let j = 0; j < d; j++) batchMean[j]! /= batch;
        const co = (p - p0) * batch * d;
        for (let b = 0; b < batch; b++) {
          const o = base + b * d;
          const c = co + b * d;
          for (let j = 0; j < d; j++) centred[c + j] = x[o + j]! - batchMean[j]!;
        }
        const mo = p * d;
        const ro = (p - p0) * d;
        for (let j = 0; j < d; j++) {
          const delta = batchMean[j]! - this.mean[mo + j]!;
          r[ro + j] = rootCross * delta;
          this.mean[mo + j] = this.mean[mo + j]! + (delta * nB) / n;
        }
      }
      const m2 = this.m2.subarray(p0 * tri, (p0 + pc) * tri);
      m2.set(await kernels.accumulate(m2, centred.subarray(0, pc * batch * d), r.subarray(0, pc * d), pc, batch));
    }
    this.count = n;
  }

  /**
   * Inverse covariances, packed lower triangle [P, d(d+1)/2] float32, of Σ = M2/(n−1) + ε·I (the
   * unbiased estimate plus PaDiM's regulariser; with a single image Σ = ε·I).
   *
   * Each Σ is Jacobi-equilibrated before the float32 LU inverse: with D = diag(Σ)^(-1/2), DΣD has a unit
   * diagonal and Σ⁻¹ = D·(DΣD)⁻¹·D. Channels of different layers differ in variance by orders of
   * magnitude; equilibrated, the inverse is 3–4× more accurate (bottle, d=550: median relative error
   * against float64 2.5e-4 → 6e-5).
   */
  async inverseCovariances(kernels: StatsKernels, epsilon = 0.01): Promise<Float32Array> {
    const { positions: P, dim: d } = this;
    const tri = packedSize(d);
    const out = new Float32Array(P * tri);
    const scale = this.count > 1 ? 1 / (this.count - 1) : 0;
    const chunk = positionsPerChunk(d, P, 64 * 1024 * 1024);
    const full = new Float32Array(chunk * d * d);
    const equilibration = new Float64Array(chunk * d);
    for (let p0 = 0; p0 < P; p0 += chunk) {
      const pc = Math.min(chunk, P - p0);
      for (let q = 0; q < pc; q++) {
        const s = equilibration.subarray(q * d, (q + 1) * d);
        jacobiScaling(this.m2, (p0 + q) * tri, d, scale, epsilon, s);
        unpackSymmetric(this.m2, (p0 + q) * tri, d, full, q * d * d, scale, epsilon, s);
      }
      const inv = await kernels.inverse(full.subarray(0, pc * d * d), pc);
      for (let q = 0; q < pc; q++) packLower(inv, q * d * d, d, out, (p0 + q) * tri, equilibration.subarray(q * d, (q + 1) * d));
    }
    return out;
  }
}

/**
 * Largest number of samples for which {@link fitGaussiansLowRank} is used instead of streaming: up to
 * d/2 samples, the samples [P, N, d] take no more memory than the packed scatter matrices the
 * streaming fit keeps (so they are what a resumable model stores), and the Woodbury inverse (an N×N
 * inverse and GEMMs) is much cheaper than the d×d one.
 */
export function lowRankSampleLimit(dim: number): number {
  return Math.floor(dim / 2);
}

/** Gaussians fitted by {@link fitGaussiansLowRank}. */
export interface FittedGaussians {
  /** Samples fitted. */
  count: number;
  /** Per-position means [P, d], float64. */
  mean: Float64Array;
  /** Per-position inverse covariances, packed lower triangles [P, d(d+1)/2]. */
  invCov: Float32Array;
}

/**
 * Fits the Gaussians of every position from all `n` samples at once (`x` [P, n, d], position-major,
 * left unchanged): count, mean and the inverse covariances (packed lower triangles) by the Woodbury
 * identity.
 *
 * With fewer samples than channels, Σ = XᵀX/c + ε·I (X the centred samples, c = n − 1) is ε·I plus a
 * matrix of rank < n, and Σ⁻¹ = (I − Xᵀ(cε·I + XXᵀ)⁻¹X)/ε needs only an n×n inverse and GEMMs, no d×d
 * inverse and no scatter matrices (bottle, d=550, 209 images: ~12 s for all 3136 positions instead of
 * ~42 s for scatter accumulation and d×d inverses). The N×N system is solved in float64 and the last
 * product is float32 (see the kernel): test-image distances within 5e-5 of a float64 reference, as
 * with the float32 d×d inverse (6e-5).
 */
export async function fitGaussiansLowRank(
  x: Float32Array,
  n: number,
  positions: number,
  dim: number,
  kernels: StatsKernels,
  epsilon = 0.01,
): Promise<FittedGaussians> {
  const P = positions;
  const d = dim;
  if (n < 2) throw new RangeError('the low-rank fit needs at least 2 samples');
  if (x.length !== P * n * d) throw new RangeError(`embeddings have ${x.length} values, expected ${P * n * d}`);
  const tri = packedSize(d);
  const mean = new Float64Array(P * d);
  const invCov = new Float32Array(P * tri);
  const chunk = positionsPerChunk(d, P, 32 * 1024 * 1024);
  const invEps = 1 / epsilon;
  const unpack = (r: LowRankResult, p0: number, pc: number): void => {
    mean.set(r.mean, p0 * d);
    for (let q = 0; q < pc; q++) {
      // Row-wise reads of the lower triangle (W is symmetric up to rounding).
      const o = q * d * d;
      let k = (p0 + q) * tri;
      for (let i = 0; i < d; i++) {
        const row = o + i * d;
        // (0 − w), not −w: a dead channel gives w = 0, and −0 would differ from the streaming fit's +0.
        for (let j = 0; j < i; j++, k++) invCov[k] = (0 - r.w[row + j]!) * invEps;
        invCov[k++] = (1 - r.w[row + i]!) * invEps;
      }
    }
  };
  // Pipelined: ONNX Runtime works on chunk k (its own threads) while JavaScript unpacks chunk k − 1.
  let previous: { r: LowRankResult; p0: number; pc: number } | undefined;
  let slot: 0 | 1 = 0;
  for (let p0 = 0; p0 < P; p0 += chunk) {
    const pc = Math.min(chunk, P - p0);
    const running = kernels.lowRank(x.subarray(p0 * n * d, (p0 + pc) * n * d), pc, n, epsilon, slot);
    if (previous) unpack(previous.r, previous.p0, previous.pc);
    previous = { r: await running, p0, pc };
    slot = slot === 0 ? 1 : 0;
  }
  if (previous) unpack(previous.r, previous.p0, previous.pc);
  return { count: n, mean, invCov };
}

/**
 * Jacobi scaling of Σ = scale·M + ε·I from its packed lower triangle M: writes D = diag(Σ)^(-1/2) to `d`,
 * so that D·Σ·D has a unit diagonal and Σ⁻¹ = D·(DΣD)⁻¹·D.
 */
export function jacobiScaling(packed: Float32Array, packedOffset: number, dim: number, scale: number, epsilon: number, d: Float64Array): void {
  for (let i = 0; i < dim; i++) {
    const v = packed[packedOffset + (i * (i + 3)) / 2]! * scale + epsilon;
    d[i] = v > 0 ? 1 / Math.sqrt(v) : 1;
  }
}

/**
 * Expands a packed lower triangle into a full symmetric matrix: out = scale·A + diag·I, and, when
 * `scaleBy` is given, entry (i, j) times scaleBy[i]·scaleBy[j] (D·(scale·A + diag·I)·D).
 */
export function unpackSymmetric(
  packed: Float32Array,
  packedOffset: number,
  d: number,
  out: Float32Array,
  outOffset: number,
  scale = 1,
  diag = 0,
  scaleBy?: Float64Array,
): void {
  let k = packedOffset;
  for (let i = 0; i < d; i++) {
    const rowI = outOffset + i * d;
    const si = scaleBy ? scaleBy[i]! : 1;
    for (let j = 0; j <= i; j++, k++) {
      let v = packed[k]! * scale + (i === j ? diag : 0);
      if (scaleBy) v *= si * scaleBy[j]!;
      out[rowI + j] = v;
      out[outOffset + j * d + i] = v;
    }
  }
}

/**
 * Packs the lower triangle of a full matrix, symmetrising (the mean of A[i][j] and A[j][i]) and, when
 * `scaleBy` is given, scaling entry (i, j) by scaleBy[i]·scaleBy[j].
 */
export function packLower(full: Float32Array, offset: number, d: number, out: Float32Array, outOffset: number, scaleBy?: Float64Array): void {
  let k = outOffset;
  for (let i = 0; i < d; i++) {
    const si = scaleBy ? 0.5 * scaleBy[i]! : 0.5;
    for (let j = 0; j <= i; j++, k++) out[k] = si * (scaleBy ? scaleBy[j]! : 1) * (full[offset + i * d + j]! + full[offset + j * d + i]!);
  }
}
