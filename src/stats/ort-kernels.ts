import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { floatInitializer, int64Initializer, makeNode, tensorValueInfo } from '../backbone/onnx-builder.js';
import os from 'node:os';
import { ortSessionOptions } from '../util/ort-options.js';

const { onnx } = onnxProto;

/**
 * Small ONNX graphs that run the heavy per-position linear algebra in ONNX Runtime (MLAS GEMM kernels,
 * multi-threaded) instead of scalar JavaScript loops. Matrices cross the JS boundary packed (lower
 * triangle, d(d+1)/2 values), so packing and unpacking happen inside the graphs too:
 * - accumulate: (M2 packed [P, T], X [P, B, d], r [P, 1, d]) ↦ M2 + lower(XᵀX + rᵀr): one streaming
 *   update of the centred scatter matrices (r carries Chan's between-batch correction term);
 * - inverse: (M2 packed [P, T], scale, ε) ↦ lower((scale·M2 + ε·I)⁻¹) (com.microsoft Inverse, i.e.
 *   Eigen's partial-pivot LU, batched over positions, on the Jacobi-equilibrated matrix);
 * - mahalanobis: (X [P, N, d], μ [P, d], Σ⁻¹ [P, d, d]) ↦ Σ_j (ΔΣ⁻¹)_j·Δ_j [P, N] with Δ = X − μ.
 */

const FLOAT = 1;

function modelBytes(graph: onnxProto.onnx.IGraphProto, contrib = false): Uint8Array {
  const opsetImport = [{ domain: '', version: 17 }];
  if (contrib) opsetImport.push({ domain: 'com.microsoft', version: 1 });
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({ irVersion: 8, producerName: 'partscan', opsetImport, graph }),
  ).finish();
}

/** Default intra-op thread count: all cores, capped (ORT's own default oversubscribes small boxes). */
export function defaultThreads(): number {
  return Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 8));
}

/** Flat indices i·d + j of the lower triangle (j ≤ i, row by row): full [d·d] → packed [T]. */
function lowerTriangleIndices(d: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) out.push(i * d + j);
  return out;
}

/** For every (i, j) of a full d×d matrix, its index in the packed lower triangle: packed [T] → full [d·d]. */
function symmetricExpansionIndices(d: number): number[] {
  const out = new Array<number>(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      const a = Math.max(i, j);
      const b = Math.min(i, j);
      out[i * d + j] = (a * (a + 1)) / 2 + b;
    }
  }
  return out;
}

/** ONNX Runtime sessions for the statistics and scoring kernels of one embedding size `d`. */
export class StatsKernels {
  private constructor(
    readonly dim: number,
    private readonly accumulateSession: ort.InferenceSession,
    private readonly inverseSession: ort.InferenceSession,
    private readonly mahalanobisSession: ort.InferenceSession,
  ) {}

  /** Creates the three sessions for embedding size `dim`. */
  static async create(dim: number, threads = defaultThreads()): Promise<StatsKernels> {
    // These sessions move hundreds of MB per call (d=550: [P, d, d] blocks); ORT's arena would keep
    // the largest block of every session alive for the model's lifetime, so allocate per call.
    const opts = ortSessionOptions(threads, { enableCpuMemArena: false });
    const d = dim;
    const tri = (d * (d + 1)) / 2;
    const lower = int64Initializer('lower', [tri], lowerTriangleIndices(d));
    const accumulate = modelBytes({
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
    // Jacobi scaling: invert D·Σ·D with D = diag(Σ)^(-1/2) (unit diagonal), then Σ⁻¹ = D·(DΣD)⁻¹·D.
    // Channels of different layers differ in variance by orders of magnitude; equilibrated, the
    // float32 LU inverse is 3–4× more accurate (bottle, d=550: median rel. error 2.5e-4 → 6e-5 vs float64).
    const diagIndices = Array.from({ length: d }, (_, i) => (i * (i + 1)) / 2 + i);
    const inverse = modelBytes(
      {
        name: 'inverse',
        node: [
          makeNode('Gather', ['m', 'expand'], ['m.full.flat'], 'unpack', { axis: 1 }),
          makeNode('Reshape', ['m.full.flat', 'square'], ['m.full'], 'square'),
          makeNode('Mul', ['m.full', 'scale'], ['cov.raw'], 'scale'),
          makeNode('Mul', ['eye', 'epsilon'], ['eps.eye'], 'eps.eye'),
          makeNode('Add', ['cov.raw', 'eps.eye'], ['cov'], 'regularise'),
          makeNode('Gather', ['m', 'diag.index'], ['m.diag'], 'diag', { axis: 1 }),
          makeNode('Mul', ['m.diag', 'scale'], ['var.raw'], 'var.scale'),
          makeNode('Add', ['var.raw', 'epsilon'], ['var.eps'], 'var.eps'),
          makeNode('Max', ['var.eps', 'tiny'], ['var'], 'var.floor'),
          makeNode('Sqrt', ['var'], ['sd'], 'sd'),
          makeNode('Reciprocal', ['sd'], ['d.vec'], 'd.vec'),
          makeNode('Reshape', ['d.vec', 'col'], ['d.col'], 'd.col'),
          makeNode('Reshape', ['d.vec', 'row'], ['d.row'], 'd.row'),
          makeNode('Mul', ['cov', 'd.col'], ['cov.dc'], 'equilibrate.rows'),
          makeNode('Mul', ['cov.dc', 'd.row'], ['cov.unit'], 'equilibrate.cols'),
          { ...makeNode('Inverse', ['cov.unit'], ['inv.unit'], 'inverse'), domain: 'com.microsoft' },
          makeNode('Mul', ['inv.unit', 'd.col'], ['inv.dc'], 'unscale.rows'),
          makeNode('Mul', ['inv.dc', 'd.row'], ['inv'], 'unscale.cols'),
          // Symmetrise (float rounding leaves Σ⁻¹ slightly asymmetric), then keep the lower triangle.
          makeNode('Transpose', ['inv'], ['inv.t'], 'inv.t', { perm: [0, 2, 1] }),
          makeNode('Add', ['inv', 'inv.t'], ['inv.2sym'], 'inv.2sym'),
          makeNode('Mul', ['inv.2sym', 'half'], ['inv.sym'], 'inv.sym'),
          makeNode('Reshape', ['inv.sym', 'flat'], ['inv.flat'], 'inv.flat'),
          makeNode('Gather', ['inv.flat', 'lower'], ['inv.packed'], 'pack', { axis: 1 }),
        ],
        initializer: [
          int64Initializer('expand', [d * d], symmetricExpansionIndices(d)),
          int64Initializer('diag.index', [d], diagIndices),
          int64Initializer('square', [3], [0, d, d]),
          int64Initializer('col', [3], [0, d, 1]),
          int64Initializer('row', [3], [0, 1, d]),
          int64Initializer('flat', [2], [0, d * d]),
          floatInitializer('eye', [d, d], Float32Array.from({ length: d * d }, (_, k) => (k % (d + 1) === 0 ? 1 : 0))),
          floatInitializer('half', [], Float32Array.of(0.5)),
          floatInitializer('tiny', [], Float32Array.of(1e-30)),
          lower,
        ],
        input: [tensorValueInfo('m', FLOAT, ['P', tri]), tensorValueInfo('scale', FLOAT, []), tensorValueInfo('epsilon', FLOAT, [])],
        output: [tensorValueInfo('inv.packed', FLOAT, ['P', tri])],
      },
      true,
    );
    const mahalanobis = modelBytes({
      name: 'mahalanobis',
      node: [
        makeNode('Sub', ['x', 'mean'], ['diff'], 'centre'),
        makeNode('MatMul', ['diff', 'inv'], ['y'], 'matmul'),
        makeNode('Mul', ['y', 'diff'], ['z'], 'mul'),
        makeNode('ReduceSum', ['z', 'axes'], ['d2'], 'sum', { keepdims: 0 }),
      ],
      initializer: [int64Initializer('axes', [1], [2])],
      input: [tensorValueInfo('x', FLOAT, ['P', 'N', d]), tensorValueInfo('mean', FLOAT, ['P', 1, d]), tensorValueInfo('inv', FLOAT, ['P', d, d])],
      output: [tensorValueInfo('d2', FLOAT, ['P', 'N'])],
    });
    const [s, i, m] = await Promise.all([
      ort.InferenceSession.create(accumulate, opts),
      ort.InferenceSession.create(inverse, opts),
      ort.InferenceSession.create(mahalanobis, opts),
    ]);
    return new StatsKernels(dim, s, i, m);
  }

  /**
   * One streaming update of packed scatter matrices: returns m + lower(Σ_b x_b x_bᵀ + r rᵀ) for each
   * position of `m` [P, T], `x` [P, B, d] and `r` [P, 1, d].
   */
  async accumulate(m: Float32Array, x: Float32Array, r: Float32Array, positions: number, batch: number): Promise<Float32Array> {
    const d = this.dim;
    const out = await this.accumulateSession.run({
      m: new ort.Tensor('float32', m, [positions, (d * (d + 1)) / 2]),
      x: new ort.Tensor('float32', x, [positions, batch, d]),
      r: new ort.Tensor('float32', r, [positions, 1, d]),
    });
    return out['m.next']!.data as Float32Array;
  }

  /** Packed (scale·M + ε·I)⁻¹ for each of the `positions` packed symmetric matrices `m` [P, T]. */
  async inversePacked(m: Float32Array, positions: number, scale: number, epsilon: number): Promise<Float32Array> {
    const d = this.dim;
    const out = await this.inverseSession.run({
      m: new ort.Tensor('float32', m, [positions, (d * (d + 1)) / 2]),
      scale: new ort.Tensor('float32', Float32Array.of(scale), []),
      epsilon: new ort.Tensor('float32', Float32Array.of(epsilon), []),
    });
    return out['inv.packed']!.data as Float32Array;
  }

  /**
   * Squared Mahalanobis distances [P, N] of embeddings `x` [P, N, d] from per-position means `mean`
   * [P, d] under per-position inverse covariances `inv` [P, d, d].
   */
  async mahalanobisSquared(x: Float32Array, mean: Float32Array, inv: Float32Array, positions: number, n: number): Promise<Float32Array> {
    const out = await this.mahalanobisSession.run({
      x: new ort.Tensor('float32', x, [positions, n, this.dim]),
      mean: new ort.Tensor('float32', mean, [positions, 1, this.dim]),
      inv: new ort.Tensor('float32', inv, [positions, this.dim, this.dim]),
    });
    return out.d2!.data as Float32Array;
  }

  /** Releases the sessions. */
  async dispose(): Promise<void> {
    await Promise.all([this.accumulateSession.release(), this.inverseSession.release(), this.mahalanobisSession.release()]);
  }
}

/** Positions per kernel call so that one [P, d, d] float32 block stays near `budgetBytes`. */
export function positionsPerChunk(dim: number, totalPositions: number, budgetBytes = 128 * 1024 * 1024): number {
  return Math.max(1, Math.min(totalPositions, Math.floor(budgetBytes / (dim * dim * 4))));
}
