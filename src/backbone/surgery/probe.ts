/**
 * Probing: runs a rewired model once on zeros to measure the dims (and, where the graph is silent,
 * the element types) of intermediate tensors, and suggests feature layers from them.
 */
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

import { PartscanError } from '../../errors.js';
import { OnnxDataType as ELEM } from '../../onnx/graph.js';
import { createSession } from '../../onnx/session.js';
import { CASTABLE_FLOAT, decodeModel, elemName, GraphIndex, listFromIndex, sourceOf, toNumber } from './graph-index.js';
import { exposeIntermediateOutputs, imageInput, rewireOutputs } from './expose.js';
import type { IntermediateTensorInfo, OnnxOutputDims, OnnxSurgeryOptions, SuggestedFeatureLayer } from './types.js';

const { onnx } = onnxProto;

type ModelProto = OnnxTypes.ModelProto;
type ValueInfoProto = OnnxTypes.IValueInfoProto;

/** Probing runs one small inference; a thread or two is plenty and leaves cores to the caller. */
const PROBE_THREADS = 2;

/** Declared dims of a value: numbers for fixed dims, the symbolic name (or '?') for free ones. */
function declaredDims(v: ValueInfoProto): (number | string)[] {
  return (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue !== null && d.dimValue !== undefined && toNumber(d.dimValue) > 0 ? toNumber(d.dimValue) : d.dimParam || '?'));
}

function zerosFor(elemType: number | undefined, shape: number[], source: string, inputName: string): ort.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  switch (elemType ?? ELEM.FLOAT) {
    case ELEM.FLOAT:
      return new ort.Tensor('float32', new Float32Array(size), shape);
    case ELEM.UINT8:
      return new ort.Tensor('uint8', new Uint8Array(size), shape);
    case ELEM.INT8:
      return new ort.Tensor('int8', new Int8Array(size), shape);
    case ELEM.FLOAT16:
      return new ort.Tensor('float16', new Uint16Array(size), shape);
    default:
      throw new PartscanError('ONNX_FORMAT', `image input '${inputName}' of ${source} is ${elemName(elemType)}; partscan feeds float32 images`, {
        file: source,
        remedy: 'export the model with a float32 NCHW image input',
      });
  }
}

function checkInputShape(inputShape: number[], source: string): void {
  if (!Array.isArray(inputShape) || inputShape.length === 0 || !inputShape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new PartscanError('OPTIONS', `input shape [${String(inputShape)}] for ${source} must be positive integers, e.g. [1, 3, 224, 224]`, {
      file: source,
      remedy: 'pass an NCHW shape such as [1, 3, 224, 224]',
    });
  }
}

/** Runs a rewired model once on zeros and returns its outputs, with ORT failures explained. */
async function runOnZeros(
  rewired: ModelProto,
  inputShape: number[],
  source: string,
): Promise<{ names: readonly string[]; results: ort.InferenceSession.OnnxValueMapType }> {
  const input = imageInput(rewired, source);
  const feed = zerosFor(input.type?.tensorType?.elemType ?? undefined, inputShape, source, input.name!);
  let session: ort.InferenceSession | undefined;
  try {
    session = await createSession(onnx.ModelProto.encode(rewired).finish(), PROBE_THREADS);
    const results = await session.run({ [input.name!]: feed });
    return { names: session.outputNames, results };
  } catch (cause) {
    if (cause instanceof PartscanError) throw cause;
    const declared = declaredDims(input);
    throw new PartscanError(
      'ONNX_FORMAT',
      `ONNX Runtime could not run ${source} on an input of shape [${inputShape.join(', ')}] (declared input '${input.name}': [${declared.join(', ')}]): ${(cause as Error).message}`,
      {
        file: source,
        remedy: 'check the input shape (channels and, for fixed-size models, the resolution) and that the tensors are computed by standard ONNX / com.microsoft operators',
        cause,
      },
    );
  } finally {
    await session?.release();
  }
}

/** Runs the model once on zeros of `inputShape` (NCHW) with the named tensors exposed; returns their dims. */
export async function inspectOnnxOutputs(
  model: Uint8Array,
  names: string[],
  inputShape: number[],
  opts?: OnnxSurgeryOptions,
): Promise<OnnxOutputDims[]> {
  const source = sourceOf(opts);
  checkInputShape(inputShape, source);
  const exposed = exposeIntermediateOutputs(model, names, opts);
  const { results } = await runOnZeros(onnx.ModelProto.decode(exposed), inputShape, source);
  return names.map((name) => {
    const value = results[name]!;
    if (value.type !== 'float32') {
      throw new PartscanError('OPTIONS', `tensor '${name}' of ${source} comes out as ${value.type}, not a float32 feature map`, {
        file: source,
        remedy: 'choose a float or quantized (uint8/int8) activation from listIntermediateTensors()',
      });
    }
    return { name, dims: [...value.dims] };
  });
}

/** ORT tensor type names, mapped to the ONNX names used in {@link IntermediateTensorInfo.elemType}. */
const ORT_TYPE_TO_ELEM: Record<string, string> = {
  float32: 'float',
  float64: 'double',
  float16: 'float16',
  bfloat16: 'bfloat16',
  uint8: 'uint8',
  int8: 'int8',
  uint16: 'uint16',
  int16: 'int16',
  int32: 'int32',
  int64: 'int64',
  uint32: 'uint32',
  uint64: 'uint64',
  bool: 'bool',
  string: 'string',
  uint4: 'uint4',
  int4: 'int4',
};

/**
 * {@link listIntermediateTensors} plus the dims of every activation, measured by running the model
 * once on zeros of `inputShape` with all of them exposed as raw outputs. Element types the graph does
 * not declare are filled in from what ONNX Runtime returns. Tensors whose element type is known to be
 * neither floating nor 8-bit (shapes, indices, masks) are listed without dims.
 */
export async function describeIntermediateTensors(
  model: Uint8Array,
  inputShape: number[],
  opts?: OnnxSurgeryOptions,
): Promise<IntermediateTensorInfo[]> {
  const source = sourceOf(opts);
  checkInputShape(inputShape, source);
  const index = new GraphIndex(decodeModel(model, source), source);
  const listed = listFromIndex(index);
  const probed = listed.filter((t) => t.elemType === 'unknown' || t.quantized || t.elemType === 'float' || CASTABLE_FLOAT.has(index.types.get(t.name) ?? -1));
  if (probed.length === 0) return listed;
  const rewired = rewireOutputs(index, probed.map((t) => t.name), 'raw', opts?.keepInputShape ?? false);
  const { results } = await runOnZeros(rewired, inputShape, source);
  for (const info of probed) {
    const value = results[info.name];
    if (!value) continue;
    info.dims = [...value.dims];
    if (info.elemType === 'unknown') {
      info.elemType = ORT_TYPE_TO_ELEM[value.type] ?? value.type;
      // A newly typed 8-bit tensor counts as quantized only if surgery could dequantize it.
      info.quantized = (info.elemType === 'uint8' || info.elemType === 'int8') && index.quantParams(info.name) !== undefined;
    }
  }
  return listed;
}

/**
 * Suggests feature layers at strides 4, 8, 16 for an input of `size` (e.g. 224): the last tensor (in
 * graph order) at each spatial size H = size/stride, float or quantized. The last one is the deepest
 * representation at that resolution, which is what PaDiM's layer1/2/3 of a ResNet are. Strides with
 * no candidate are left out of the result; none at all is an error.
 */
export async function suggestFeatureLayers(model: Uint8Array, size = 224, opts?: OnnxSurgeryOptions): Promise<SuggestedFeatureLayer[]> {
  const source = sourceOf(opts);
  if (!Number.isInteger(size) || size < 16) {
    throw new PartscanError('OPTIONS', `input size ${size} for ${source} must be an integer of at least 16`, {
      file: source,
      remedy: 'pass the side of the square network input, e.g. 224 or 256',
    });
  }
  const input = imageInput(decodeModel(model, source), source);
  const declared = declaredDims(input);
  const channels = typeof declared[1] === 'number' ? declared[1] : 3;
  const infos = await describeIntermediateTensors(model, [1, channels, size, size], opts);
  const usable = infos.filter(
    (t) =>
      t.dims?.length === 4 &&
      (t.quantized || t.elemType === 'float' || t.elemType === 'float16' || t.elemType === 'double' || t.elemType === 'bfloat16'),
  );
  const suggestions: SuggestedFeatureLayer[] = [];
  for (const stride of [4, 8, 16]) {
    // 'Same'-padded strided convs round up (ceil); valid-padded ones round down.
    const sides = new Set([Math.floor(size / stride), Math.ceil(size / stride)]);
    let best: IntermediateTensorInfo | undefined;
    for (const t of usable) if (sides.has(t.dims![2]!) && sides.has(t.dims![3]!)) best = t;
    if (best) suggestions.push({ stride, name: best.name, dims: best.dims! });
  }
  if (suggestions.length === 0) {
    throw new PartscanError('ONNX_FORMAT', `no 4-D activation of ${source} has a spatial size of ${size}/4, ${size}/8 or ${size}/16 at a ${size}px input`, {
      file: source,
      remedy: 'check that the model is a CNN taking NCHW images, or pick layers by hand from describeIntermediateTensors()',
    });
  }
  return suggestions;
}

