import * as ort from 'onnxruntime-node';
import { collectingSink, encodeKernelModel, int64Initializer, makeNode, MS_DOMAIN, OnnxDataType, tensorValueInfo } from '../onnx/graph.js';
import { createSession, defaultThreads } from '../onnx/session.js';
import { stripedMahalanobisNodes, stripeLayout, type StripedInverse } from './striped-inverse.js';

/**
 * Small ONNX graphs that run the heavy per-position linear algebra in ONNX Runtime (MLAS GEMM kernels,
 * multi-threaded) instead of scalar JavaScript loops:
 * - accumulate: (M2 packed [P, T], X [P, B, d], r [P, 1, d]) ↦ M2 + lower(XᵀX + rᵀr): one streaming
 *   update of the centred scatter matrices (r carries Chan's between-batch correction term);
 * - inverse: A [P, d, d] ↦ A⁻¹ (com.microsoft Inverse: Eigen's partial-pivot LU, batched over positions);
 * - mahalanobis: (X [P, N, d], μ [P, d], Σ⁻¹ as stripes) ↦ ΔᵀΣ⁻¹Δ [P, N] with Δ = X − μ (the striped
 *   form of striped-inverse.ts, as in the scoring graph);
 * - lowRank: samples [P, N, d] (N < d) ↦ means and W = Xᵀ(cε·I + XXᵀ)⁻¹X [P, d, d], from which Σ⁻¹ = (I − W)/ε
 *   by the Woodbury identity (Σ = XᵀX/c + ε·I, c = N − 1): an N×N inverse and GEMMs instead of a d×d
 *   LU inverse and the scatter matrices.
 */

const { FLOAT, DOUBLE } = OnnxDataType;

/** Flat indices i·d + j of the lower triangle (j ≤ i, row by row): full [d·d] → packed [T]. */
function lowerTriangleIndices(d: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) out.push(i * d + j);
  return out;
}

/** ONNX Runtime sessions for the statistics and scoring kernels of one embedding size `d`. */
export class StatsKernels {
  /** Reused output buffers (one per kernel), grown on demand. */
  private readonly scratch = new Map<string, Float32Array>();
  /** Created on first use: only fits with fewer images than channels need it. */
  private lowRankSession: Promise<ort.InferenceSession> | undefined;

  private constructor(
    /** Embedding size d the kernels were built for. */
    readonly dim: number,
    private readonly threads: number,
    private readonly accumulateSession: ort.InferenceSession,
    private readonly inverseSession: ort.InferenceSession,
    private readonly mahalanobisSession: ort.InferenceSession,
  ) {}

  /** Creates the three sessions for embedding size `dim`. */
  static async create(dim: number, threads = defaultThreads()): Promise<StatsKernels> {
    // ORT's memory arena stays on: every call of a session has the same shapes (fixed position chunks),
    // so the arena hands the same blocks back and no call pays for fresh pages (first touches of fresh
    // memory dominated these kernels). Outputs go into buffers this object reuses, for the same reason.
    // The sessions (and with them the arena) are released after fit.
    const d = dim;
    const tri = (d * (d + 1)) / 2;
    const lower = int64Initializer('lower', [tri], lowerTriangleIndices(d));
    const accumulate = encodeKernelModel({
      name: 'accumulate',
      node: [
        makeNode('Concat', ['x', 'r'], ['xr'], 'concat', { axis: 1 }),
        makeNode('Transpose', ['xr'], ['xrt'], 'transpose', { perm: [0, 2, 1] }),
        makeNode('MatMul', ['xrt', 'xr'], ['s'], 'scatter'),
        makeNode('Reshape', ['s', 'flat'], ['s.flat'], 'flatten'),
        makeNode('Gather', ['s.flat', 'lower'], ['s.packed'], 'pack', { axis: 1 }),
        makeNode('Add', ['m', 's.packed'], ['m.next'], 'add'),
      ],
      initializer: [lower, int64Initializer('flat', [2], [0, d * d])],
      input: [tensorValueInfo('m', FLOAT, ['P', tri]), tensorValueInfo('x', FLOAT, ['P', 'B', d]), tensorValueInfo('r', FLOAT, ['P', 1, d])],
      output: [tensorValueInfo('m.next', FLOAT, ['P', tri])],
    });
    // (Unpacking, equilibration and packing stay in JavaScript: ORT's Gather with d² int64 indices was slower.)
    const inverse = encodeKernelModel(
      {
        name: 'inverse',
        node: [{ ...makeNode('Inverse', ['a'], ['b'], 'inverse'), domain: MS_DOMAIN }],
        input: [tensorValueInfo('a', FLOAT, ['P', d, d])],
        output: [tensorValueInfo('b', FLOAT, ['P', d, d])],
      },
      true,
    );
    const mahalanobis = mahalanobisGraph(d);
    const [s, i, m] = await Promise.all([
      createSession(accumulate, threads),
      createSession(inverse, threads),
      createSession(mahalanobis, threads),
    ]);
    return new StatsKernels(dim, threads, s, i, m);
  }

  /**
   * One streaming update of packed scatter matrices: returns m + lower(Σ_b x_b x_bᵀ + r rᵀ) for each
   * position of `m` [P, T], `x` [P, B, d] and `r` [P, 1, d]. The result lives in a buffer this object
   * reuses: copy it out before the next call.
   */
  async accumulate(m: Float32Array, x: Float32Array, r: Float32Array, positions: number, batch: number): Promise<Float32Array> {
    const d = this.dim;
    const tri = (d * (d + 1)) / 2;
    const next = new ort.Tensor('float32', this.buffer('accumulate', positions * tri), [positions, tri]);
    await this.accumulateSession.run(
      {
        m: new ort.Tensor('float32', m, [positions, tri]),
        x: new ort.Tensor('float32', x, [positions, batch, d]),
        r: new ort.Tensor('float32', r, [positions, 1, d]),
      },
      { 'm.next': next },
    );
    return next.data as Float32Array;
  }

  /**
   * Inverts each of the `positions` d×d matrices in `a` [P, d, d]. The result lives in a buffer this
   * object reuses: copy it out before the next call.
   */
  async inverse(a: Float32Array, positions: number): Promise<Float32Array> {
    const d = this.dim;
    const out = new ort.Tensor('float32', this.buffer('inverse', positions * d * d), [positions, d, d]);
    await this.inverseSession.run({ a: new ort.Tensor('float32', a, [positions, d, d]) }, { b: out });
    return out.data as Float32Array;
  }

  /**
   * For `positions` blocks of samples [P, N, d] (rows are samples), returns their means [P, d] (float64)
   * and W = Xᵀ(cε·I + XXᵀ)⁻¹X [P, d, d], X the centred samples, in buffers this object reuses: one of
   * two, chosen by `slot` (0 or 1), so a caller can read one call's results while the next call runs.
   * With c = N − 1, Σ = XᵀX/c + ε·I has Σ⁻¹ = (I − W)/ε (Woodbury identity).
   */
  async lowRank(samples: Float32Array, positions: number, n: number, epsilon: number, slot: 0 | 1 = 0): Promise<LowRankResult> {
    const d = this.dim;
    this.lowRankSession ??= createSession(lowRankGraph(d), this.threads);
    const session = await this.lowRankSession;
    const ridge = new Float64Array(n * n);
    for (let i = 0; i < n; i++) ridge[i * n + i] = (n - 1) * epsilon;
    const mean = new ort.Tensor('float64', new Float64Array(positions * d), [positions, 1, d]);
    const w = new ort.Tensor('float32', this.buffer(`lowRank${slot}`, positions * d * d), [positions, d, d]);
    await session.run({ samples: new ort.Tensor('float32', samples, [positions, n, d]), ridge: new ort.Tensor('float64', ridge, [n, n]) }, { mean, w });
    return { mean: mean.data as Float64Array, w: w.data as Float32Array };
  }

  /** A reused buffer of `length` floats (a view of a larger one when a later chunk is smaller). */
  private buffer(name: string, length: number): Float32Array {
    let b = this.scratch.get(name);
    if (!b || b.length < length) {
      b = new Float32Array(length);
      this.scratch.set(name, b);
    }
    return b.subarray(0, length);
  }

  /**
   * Squared Mahalanobis distances [P, N] of embeddings `x` [P, N, d] of the positions [p0, p0 + P)
   * from their means `mean` [P, d] under the inverse covariances `inverse` (read in place).
   */
  async mahalanobisSquared(x: Float32Array, mean: Float32Array, inverse: StripedInverse, p0: number, positions: number, n: number): Promise<Float32Array> {
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', x, [positions, n, this.dim]),
      mean: new ort.Tensor('float32', mean, [positions, 1, this.dim]),
    };
    inverse.positionRange(p0, positions).forEach((s, a) => (feeds[`inv${a}`] = new ort.Tensor('float32', s.data, s.dims)));
    const out = await this.mahalanobisSession.run(feeds);
    return out.d2!.data as Float32Array;
  }

  /** Releases the sessions. */
  async dispose(): Promise<void> {
    this.scratch.clear();
    const lowRank = this.lowRankSession;
    this.lowRankSession = undefined;
    await Promise.all([
      this.accumulateSession.release(),
      this.inverseSession.release(),
      this.mahalanobisSession.release(),
      lowRank?.then((s) => s.release()),
    ]);
  }
}

/** The mahalanobis kernel's graph: inputs x [P, N, d], mean [P, 1, d] and the stripes inv0 … of Σ⁻¹. */
function mahalanobisGraph(d: number): Uint8Array {
  const stripes = stripeLayout(d);
  const names = stripes.map((_, a) => `inv${a}`);
  const { sink, nodes, initializers } = collectingSink();
  sink.node('Sub', ['x', 'mean'], ['diff']);
  stripedMahalanobisNodes(sink, 'diff', 'd2', stripes, names, 'mahalanobis');
  return encodeKernelModel({
    name: 'mahalanobis',
    node: nodes,
    initializer: initializers,
    input: [
      tensorValueInfo('x', FLOAT, ['P', 'N', d]),
      tensorValueInfo('mean', FLOAT, ['P', 1, d]),
      ...stripes.map((s, a) => tensorValueInfo(names[a]!, FLOAT, ['P', s.r1, s.r1 - s.r0])),
    ],
    output: [tensorValueInfo('d2', FLOAT, ['P', 'N'])],
  });
}

/** What {@link StatsKernels.lowRank} returns. */
export interface LowRankResult {
  /** Per-position means of the samples [P, d], float64. */
  mean: Float64Array;
  /** W = Xᵀ(cε·I + XXᵀ)⁻¹X per position [P, d, d]. */
  w: Float32Array;
}

/**
 * The lowRank kernel's graph (see {@link StatsKernels.lowRank}); N, the number of samples, is symbolic.
 * The Gram matrix XXᵀ squares the condition number, so the N×N system and B = M⁻¹X are solved in
 * float64 (all in float32, distances of test samples were off by up to 3 %, bottle, d=550); the largest
 * product, W = XᵀB, is float32 (distances within 5e-5 of a float64 reference, as with the float32 d×d
 * LU inverse; all in float64: 2e-7, but the fit took 4 s longer).
 */
function lowRankGraph(d: number): Uint8Array {
  return encodeKernelModel(
    {
      name: 'lowRank',
      node: [
        makeNode('Cast', ['samples'], ['samples.f64'], 'cast.samples', { to: DOUBLE }),
        makeNode('ReduceMean', ['samples.f64'], ['mean'], 'mean', { axes: [1], keepdims: 1 }),
        makeNode('Sub', ['samples.f64', 'mean'], ['x'], 'centre'),
        makeNode('Transpose', ['x'], ['xt'], 'transpose', { perm: [0, 2, 1] }),
        makeNode('MatMul', ['x', 'xt'], ['gram'], 'gram'),
        makeNode('Add', ['gram', 'ridge'], ['m'], 'ridge'),
        { ...makeNode('Inverse', ['m'], ['m.inv'], 'inverse'), domain: MS_DOMAIN },
        makeNode('MatMul', ['m.inv', 'x'], ['b'], 'solve'),
        makeNode('Cast', ['b'], ['b.f32'], 'cast.b', { to: FLOAT }),
        makeNode('Cast', ['xt'], ['xt.f32'], 'cast.xt', { to: FLOAT }),
        makeNode('MatMul', ['xt.f32', 'b.f32'], ['w'], 'w'),
      ],
      input: [tensorValueInfo('samples', FLOAT, ['P', 'N', d]), tensorValueInfo('ridge', DOUBLE, ['N', 'N'])],
      output: [tensorValueInfo('mean', DOUBLE, ['P', 1, d]), tensorValueInfo('w', FLOAT, ['P', d, d])],
    },
    true,
  );
}

/** Positions per kernel call so that one [P, d, d] float32 block stays near `budgetBytes`. */
export function positionsPerChunk(dim: number, totalPositions: number, budgetBytes = 128 * 1024 * 1024): number {
  return Math.max(1, Math.min(totalPositions, Math.floor(budgetBytes / (dim * dim * 4))));
}
