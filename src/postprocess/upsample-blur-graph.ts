/**
 * The map post-processing of PaDiM — distance grid → bilinear upsampling to the input size → Gaussian
 * blur — as ONNX nodes. One builder serves two places: the ONNX export (appended to the backbone and
 * Mahalanobis head) and partscan's own scoring, where ORT's Resize and two 1-D convolutions run the
 * 33-tap blur about 20× faster than the JavaScript loops of {@link gaussianBlur}, which stay the
 * reference and the fallback for maps smaller than the kernel.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import {
  floatInitializer,
  int64Initializer,
  makeNode,
  tensorValueInfo,
  type OnnxAttributeValue,
} from '../backbone/onnx-builder.js';
import { gaussianKernel1d } from './blur.js';

const { onnx } = onnxProto;
const FLOAT = 1;

/** Where {@link upsampleBlurNodes} puts what it builds. */
export interface GraphSink {
  /** Adds a float32 constant. */
  float(name: string, dims: number[], data: Float32Array): void;
  /** Adds an int64 constant. */
  int64(name: string, dims: number[], values: readonly number[]): void;
  /** Adds a node (its name is the sink's business). */
  node(op: string, inputs: string[], outputs: string[], attrs?: Record<string, OnnxAttributeValue>): void;
}

/** Blur kernel radius for σ: the 1-D kernel has 2·radius + 1 taps. */
export function blurRadius(sigma: number): number {
  return (gaussianKernel1d(sigma).length - 1) / 2;
}

/**
 * Whether a size×size map can be blurred by the ONNX graph: ONNX Pad 'reflect' needs a pad smaller
 * than the side (partscan's JS blur keeps reflecting periodically instead).
 */
export function graphCanBlur(size: number, sigma: number): boolean {
  return blurRadius(sigma) < size;
}

/**
 * Nodes from a distance grid `input` [N, 1, gh, gw] to the blurred map `output` [N, 1, S, S]: bilinear
 * Resize with half-pixel centres (PyTorch align_corners=False), reflect padding by the kernel radius,
 * then a 1×K and a K×1 convolution with the normalised Gaussian taps. The batch dimension stays dynamic.
 */
export function upsampleBlurNodes(sink: GraphSink, input: string, output: string, size: number, sigma: number, prefix: string): void {
  const kernel = gaussianKernel1d(sigma);
  const radius = (kernel.length - 1) / 2;
  if (radius >= size) throw new RangeError(`a ${size}×${size} map is too small for ONNX reflect padding of ${radius} px`);
  const p = (s: string): string => `${prefix}/${s}`;
  sink.int64(p('slice.start'), [1], [0]);
  sink.int64(p('slice.end'), [1], [2]);
  sink.int64(p('size.SS'), [2], [size, size]);
  sink.node('Shape', [input], [p('grid.shape')]);
  sink.node('Slice', [p('grid.shape'), p('slice.start'), p('slice.end')], [p('grid.N1')]);
  sink.node('Concat', [p('grid.N1'), p('size.SS')], [p('up.sizes')], { axis: 0 });
  sink.node('Resize', [input, '', '', p('up.sizes')], [p('up')], { coordinate_transformation_mode: 'half_pixel', mode: 'linear' });
  sink.int64(p('blur.pads'), [8], [0, 0, radius, radius, 0, 0, radius, radius]);
  sink.float(p('blur.kx'), [1, 1, 1, kernel.length], kernel);
  sink.float(p('blur.ky'), [1, 1, kernel.length, 1], kernel);
  sink.node('Pad', [p('up'), p('blur.pads')], [p('up.padded')], { mode: 'reflect' });
  sink.node('Conv', [p('up.padded'), p('blur.kx')], [p('blur.x')], { kernel_shape: [1, kernel.length] });
  sink.node('Conv', [p('blur.x'), p('blur.ky')], [output], { kernel_shape: [kernel.length, 1] });
}

/**
 * An ORT session for scoring: squared distances [N, gh·gw] → anomaly maps [N, S·S] (distance =
 * √max(0, d²), upsampled and blurred as above).
 */
export class UpsampleBlurSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly gridW: number,
    readonly gridH: number,
    readonly size: number,
  ) {}

  /** Builds the graph for one grid and map size. */
  static async create(gridW: number, gridH: number, size: number, sigma: number, threads: number): Promise<UpsampleBlurSession> {
    const nodes: onnxProto.onnx.INodeProto[] = [];
    const initializer: onnxProto.onnx.ITensorProto[] = [];
    let serial = 0;
    const sink: GraphSink = {
      float: (name, dims, data) => void initializer.push(floatInitializer(name, dims, data)),
      int64: (name, dims, values) => void initializer.push(int64Initializer(name, dims, values)),
      node: (op, inputs, outputs, attrs = {}) => void nodes.push(makeNode(op, inputs, outputs, `${op}_${serial++}`, attrs)),
    };
    sink.float('zero', [], Float32Array.of(0));
    sink.int64('grid.shape', [4], [-1, 1, gridH, gridW]);
    sink.int64('flat.shape', [2], [-1, size * size]);
    sink.node('Max', ['d2', 'zero'], ['d2.pos']);
    sink.node('Sqrt', ['d2.pos'], ['dist']);
    sink.node('Reshape', ['dist', 'grid.shape'], ['dist.grid']);
    upsampleBlurNodes(sink, 'dist.grid', 'map.grid', size, sigma, 'map');
    sink.node('Reshape', ['map.grid', 'flat.shape'], ['map']);
    const bytes = onnx.ModelProto.encode(
      onnx.ModelProto.create({
        irVersion: 8,
        producerName: 'partscan',
        opsetImport: [{ domain: '', version: 17 }],
        graph: {
          name: 'upsample-blur',
          node: nodes,
          initializer,
          input: [tensorValueInfo('d2', FLOAT, ['N', gridH * gridW])],
          output: [tensorValueInfo('map', FLOAT, ['N', size * size])],
        },
      }),
    ).finish();
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    return new UpsampleBlurSession(session, gridW, gridH, size);
  }

  /** Maps of N images from their squared distances, image-major [N, gh·gw]. */
  async run(d2: Float32Array, n: number): Promise<Float32Array> {
    const out = await this.session.run({ d2: new ort.Tensor('float32', d2, [n, this.gridH * this.gridW]) });
    return out.map!.data as Float32Array;
  }

  /** Releases the session. */
  async dispose(): Promise<void> {
    await this.session.release();
  }
}
