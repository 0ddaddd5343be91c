/**
 * The map post-processing of PaDiM — distance grid → bilinear upsampling to the input size → Gaussian
 * blur — as ONNX nodes. One builder serves two places: the ONNX export (appended to the backbone and
 * Mahalanobis head) and partscan's own scoring.
 *
 * Both steps are linear and separable, so together they are one S×g matrix per axis:
 * map = K_y · grid · K_xᵀ with K = Blur·Upsample. Two small GEMMs (224×56×56 + 224×56×224 multiply-adds
 * per map) replace Resize + Pad + two 33-tap convolutions, which ORT runs through im2col, far slower.
 * The matrices are built by running the JavaScript reference ({@link resizeBilinear},
 * {@link gaussianBlur}) on unit vectors, so the graph computes the very same operator, periodic
 * reflection of maps smaller than the kernel included.
 */
import * as ort from 'onnxruntime-node';
import { collectingSink, encodeKernelModel, ONNX_OPSET, tensorValueInfo, OnnxDataType } from '../onnx/graph.js';
import type { GraphSink } from '../onnx/graph-sink.js';
import { gaussianBlur } from './blur.js';
import { resizeBilinear } from './resize.js';
import { createSession } from '../onnx/session.js';
import type { PositionStandardization } from './standardize.js';

const { FLOAT } = OnnxDataType;

/** Where {@link upsampleBlurNodes} puts what it builds (its home is the graph builder). */
export type { GraphSink };

/**
 * The S×g matrix of bilinear upsampling (g → S, half-pixel centres) followed by the 1-D Gaussian blur
 * with reflect padding, row-major: column j is the image of the unit vector e_j.
 */
export function upsampleBlurMatrix(grid: number, size: number, sigma: number): Float32Array {
  const out = new Float32Array(size * grid);
  const unit = new Float32Array(grid);
  for (let j = 0; j < grid; j++) {
    unit.fill(0);
    unit[j] = 1;
    // A 1-pixel-high map: the vertical passes are the identity, so this is the 1-D operator.
    const column = gaussianBlur(resizeBilinear(unit, grid, 1, size, 1), size, 1, sigma);
    for (let i = 0; i < size; i++) out[i * grid + j] = column[i]!;
  }
  return out;
}

/**
 * Nodes from a distance grid `input` [N, 1, gh, gw] to the blurred map `output` [N, 1, S, S]:
 * K_y [S, gh] · grid · K_xᵀ [gw, S] (see the file comment). The batch dimension stays dynamic.
 */
export function upsampleBlurNodes(sink: GraphSink, input: string, output: string, grid: { gridW: number; gridH: number }, size: number, sigma: number, prefix: string): void {
  const { gridW, gridH } = grid;
  const ky = upsampleBlurMatrix(gridH, size, sigma);
  const kx = upsampleBlurMatrix(gridW, size, sigma);
  const kxT = new Float32Array(gridW * size);
  for (let i = 0; i < size; i++) for (let j = 0; j < gridW; j++) kxT[j * size + i] = kx[i * gridW + j]!;
  sink.float(`${prefix}/ky`, [size, gridH], ky);
  sink.float(`${prefix}/kxT`, [gridW, size], kxT);
  sink.node('MatMul', [`${prefix}/ky`, input], [`${prefix}/rows`]);
  sink.node('MatMul', [`${prefix}/rows`, `${prefix}/kxT`], [output]);
}

/** Nodes of ReduceMax over all but the batch axis of `input` [N, 1, S, S] → `output` [N] (opset ≥ 18 takes the axes as an input). */
export function reduceMaxNodes(sink: GraphSink, input: string, output: string, prefix: string): void {
  if ((sink.opset ?? ONNX_OPSET) >= 18) {
    sink.int64(`${prefix}/axes`, [3], [1, 2, 3]);
    sink.node('ReduceMax', [input, `${prefix}/axes`], [output], { keepdims: 0 });
  } else {
    sink.node('ReduceMax', [input], [output], { axes: [1, 2, 3], keepdims: 0 });
  }
}

/**
 * Nodes of the standardised image score: distance grid `dist` [N, 1, gh, gw] → (dist − centre) / spread
 * per position → upsampled and blurred like the anomaly map → its maximum per image `output` [N].
 */
export function standardizedScoreNodes(
  sink: GraphSink,
  dist: string,
  output: string,
  grid: { gridW: number; gridH: number },
  size: number,
  sigma: number,
  standardization: PositionStandardization,
  prefix: string,
): void {
  const { gridW, gridH } = grid;
  sink.float(`${prefix}/centre`, [1, 1, gridH, gridW], standardization.centre);
  sink.float(`${prefix}/spread`, [1, 1, gridH, gridW], standardization.spread);
  sink.node('Sub', [dist, `${prefix}/centre`], [`${prefix}/centred`]);
  sink.node('Div', [`${prefix}/centred`, `${prefix}/spread`], [`${prefix}/z`]);
  upsampleBlurNodes(sink, `${prefix}/z`, `${prefix}/map`, grid, size, sigma, prefix);
  reduceMaxNodes(sink, `${prefix}/map`, output, `${prefix}/max`);
}

/**
 * An ORT session for scoring: squared distances [N, gh·gw] → anomaly maps [N, S·S] (distance =
 * √max(0, d²), upsampled and blurred as above) and, for a model with a per-position standardisation,
 * the standardised image scores [N] ({@link standardizedScoreNodes}).
 */
export class UpsampleBlurSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly gridW: number,
    readonly gridH: number,
    readonly size: number,
    private readonly standardized: boolean,
  ) {}

  /** Builds the graph for one grid and map size (and standardisation, if any). */
  static async create(gridW: number, gridH: number, size: number, sigma: number, threads: number, standardization?: PositionStandardization): Promise<UpsampleBlurSession> {
    const { sink, nodes, initializers: initializer } = collectingSink();
    sink.float('zero', [], Float32Array.of(0));
    sink.int64('grid.shape', [4], [-1, 1, gridH, gridW]);
    sink.int64('flat.shape', [2], [-1, size * size]);
    sink.node('Max', ['d2', 'zero'], ['d2.pos']);
    sink.node('Sqrt', ['d2.pos'], ['dist']);
    sink.node('Reshape', ['dist', 'grid.shape'], ['dist.grid']);
    upsampleBlurNodes(sink, 'dist.grid', 'map.grid', { gridW, gridH }, size, sigma, 'map');
    sink.node('Reshape', ['map.grid', 'flat.shape'], ['map']);
    const output = [tensorValueInfo('map', FLOAT, ['N', size * size])];
    if (standardization) {
      standardizedScoreNodes(sink, 'dist.grid', 'score', { gridW, gridH }, size, sigma, standardization, 'std');
      output.push(tensorValueInfo('score', FLOAT, ['N']));
    }
    const bytes = encodeKernelModel({ name: 'upsample-blur', node: nodes, initializer, input: [tensorValueInfo('d2', FLOAT, ['N', gridH * gridW])], output });
    const session = await createSession(bytes, threads);
    return new UpsampleBlurSession(session, gridW, gridH, size, standardization !== undefined);
  }

  /** Maps of N images from their squared distances, image-major [N, gh·gw]; with the standardised image scores when the session has a standardisation. */
  async run(d2: Float32Array, n: number): Promise<{ maps: Float32Array; scores?: Float32Array }> {
    const out = await this.session.run({ d2: new ort.Tensor('float32', d2, [n, this.gridH * this.gridW]) });
    return { maps: out.map!.data as Float32Array, ...(this.standardized ? { scores: out.score!.data as Float32Array } : {}) };
  }

  /** Releases the session. */
  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/**
 * An ORT session for the maximum of the upsampled and blurred map of any grid [N, gh·gw] (e.g. distances
 * already standardised, leave-one-out, by the fit): the image score without the anomaly map.
 */
export class BlurredMaxSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly cells: number,
  ) {}

  /** Builds the graph for one grid and map size. */
  static async create(gridW: number, gridH: number, size: number, sigma: number, threads: number): Promise<BlurredMaxSession> {
    const { sink, nodes, initializers: initializer } = collectingSink();
    sink.int64('grid.shape', [4], [-1, 1, gridH, gridW]);
    sink.node('Reshape', ['grid', 'grid.shape'], ['grid4']);
    upsampleBlurNodes(sink, 'grid4', 'map', { gridW, gridH }, size, sigma, 'map');
    reduceMaxNodes(sink, 'map', 'max', 'max');
    const bytes = encodeKernelModel({
      name: 'blurred-max',
      node: nodes,
      initializer,
      input: [tensorValueInfo('grid', FLOAT, ['N', gridH * gridW])],
      output: [tensorValueInfo('max', FLOAT, ['N'])],
    });
    return new BlurredMaxSession(await createSession(bytes, threads), gridH * gridW);
  }

  /** The blurred map's maximum of each of N grids, image-major [N, gh·gw]. */
  async run(grids: Float32Array, n: number): Promise<Float32Array> {
    const out = await this.session.run({ grid: new ort.Tensor('float32', grids.subarray(0, n * this.cells), [n, this.cells]) });
    return out.max!.data as Float32Array;
  }

  /** Releases the session. */
  async dispose(): Promise<void> {
    await this.session.release();
  }
}
