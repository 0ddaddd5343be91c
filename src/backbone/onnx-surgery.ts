/**
 * Graph surgery that turns any ONNX classifier into a feature extractor: list the tensors its nodes
 * produce, pick some as feature maps, and get back a model whose graph outputs are exactly those
 * tensors, as float32, with everything after them pruned away.
 *
 * Quantized models (QLinearConv / QDQ, e.g. the ONNX model zoo's int8 MobileNetV2) keep their
 * intermediate activations as uint8/int8. PaDiM needs real values, so each quantized tensor gets a
 * DequantizeLinear with the scale and zero point the quantizer attached to it; the float result
 * carries the name the caller asked for, and the raw integer tensor is renamed inside the graph.
 *
 * Limits: the model must be self-contained (no external-data initializers), and the re-encoding uses
 * the ONNX 1.10 schema that onnx-proto ships, so fields added to the format later are not preserved.
 */
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

import { PartscanError } from '../errors.js';
import { createSession } from '../onnx/session.js';

const { onnx } = onnxProto;

type ModelProto = OnnxTypes.ModelProto;
type GraphProto = OnnxTypes.IGraphProto;
type NodeProto = OnnxTypes.INodeProto;
type TensorProto = OnnxTypes.ITensorProto;
type ValueInfoProto = OnnxTypes.IValueInfoProto;
type Int64 = number | { toNumber(): number };

/** A tensor produced by a node of the graph: a candidate feature map. */
export interface IntermediateTensorInfo {
  /** Tensor name, as written in the graph (what you pass to {@link exposeIntermediateOutputs}). */
  name: string;
  /** Operator of the node that produces it ('QLinearConv', 'Relu', ...). */
  opType: string;
  /** Name of the producing node; `<opType>_<index>` when the graph leaves it empty. */
  nodeName: string;
  /** Element type ('float', 'uint8', 'int8', 'int64', ...), or 'unknown' when the graph does not say and it cannot be inferred. */
  elemType: string;
  /** True for integer activations that need dequantizing (uint8/int8, or 16/4-bit with a known scale). */
  quantized: boolean;
  /** Dimensions, filled by probing ({@link describeIntermediateTensors}); absent from the static listing. */
  dims?: number[];
}

/** Options shared by the surgery functions. */
export interface OnnxSurgeryOptions {
  /** Where the model came from (a path), quoted in error messages. */
  source?: string;
  /**
   * Keep the declared batch, height and width of the image input. By default they are made symbolic
   * (and the stale shapes of intermediate value_info entries dropped), so the extractor accepts any
   * batch size and input resolution, e.g. 256 px on a classifier exported at 224 px.
   */
  keepInputShape?: boolean;
}

/** Measured dims of one exposed tensor, from {@link inspectOnnxOutputs}. */
export interface OnnxOutputDims {
  /** Tensor name, as requested. */
  name: string;
  /** Dimensions of the float32 output, e.g. [N, C, H, W]. */
  dims: number[];
}

/** A layer proposed by {@link suggestFeatureLayers}. */
export interface SuggestedFeatureLayer {
  /** Downsampling factor relative to the input (4, 8 or 16). */
  stride: number;
  /** Tensor name to expose. */
  name: string;
  /** Dims measured at batch 1 and the requested input size: [1, C, H, W]. */
  dims: number[];
}

/** Element type codes of TensorProto.DataType, by name. */
const ELEM = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
  UINT4: 21,
  INT4: 22,
} as const;

const ELEM_NAMES: Record<number, string> = {
  1: 'float',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'double',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
  21: 'uint4',
  22: 'int4',
  23: 'float4e2m1',
};

/** 8-bit types are quantized activations whenever they flow between nodes of a vision model. */
const EIGHT_BIT: ReadonlySet<number> = new Set([ELEM.UINT8, ELEM.INT8]);
/** Wider or narrower integer types count as quantized only when a scale can be found for them. */
const OTHER_QUANT: ReadonlySet<number> = new Set([ELEM.UINT16, ELEM.INT16, ELEM.UINT4, ELEM.INT4]);
/** Floating types that a Cast turns into float32 without losing anything that matters for features. */
const CASTABLE_FLOAT: ReadonlySet<number> = new Set([ELEM.FLOAT16, ELEM.DOUBLE, ELEM.BFLOAT16]);

/**
 * Where a quantizing op keeps the scale and zero point of its output 0 (input positions). The ONNX
 * ops (QuantizeLinear, QLinearConv, QLinearMatMul) and the com.microsoft contrib ops share the
 * output-last layout except QLinearConcat, which puts Y_scale, Y_zero_point first.
 */
const OUTPUT_QPARAM_INPUTS: Readonly<Record<string, readonly [number, number]>> = {
  QuantizeLinear: [1, 2],
  QLinearConv: [6, 7],
  QLinearConvTranspose: [6, 7],
  QLinearMatMul: [6, 7],
  QLinearAdd: [6, 7],
  QLinearMul: [6, 7],
  QLinearGlobalAveragePool: [3, 4],
  QLinearAveragePool: [3, 4],
  QLinearLeakyRelu: [3, 4],
  QLinearSigmoid: [3, 4],
  QLinearSoftmax: [3, 4],
  QLinearReduceMean: [3, 4],
  QLinearConcat: [0, 1],
  QLinearWhere: [7, 8],
  QGemm: [7, 8],
};

/** Ops whose quantized output has exactly the scale and zero point of their input 0 and the same layout. */
const SCALE_PRESERVING_SAME_LAYOUT: ReadonlySet<string> = new Set(['MaxPool', 'Relu', 'Clip', 'Identity', 'GlobalMaxPool']);
/** Ops that keep the input's scale and zero point but move elements around (fine for per-tensor scales only). */
const SCALE_PRESERVING_RELAYOUT: ReadonlySet<string> = new Set([
  'Reshape',
  'Transpose',
  'Flatten',
  'Squeeze',
  'Unsqueeze',
  'Slice',
  'Split',
  'Gather',
  'DepthToSpace',
  'SpaceToDepth',
]);

/** Ops whose every output has the element type of input 0 (used when value_info is silent). */
const SAME_TYPE_AS_INPUT0: ReadonlySet<string> = new Set([
  'Abs', 'Add', 'AveragePool', 'BatchNormalization', 'Ceil', 'Celu', 'Clip', 'Concat', 'Conv', 'ConvTranspose',
  'DepthToSpace', 'Div', 'Dropout', 'Einsum', 'Elu', 'Erf', 'Exp', 'Expand', 'Flatten', 'Floor', 'FusedConv',
  'FusedGemm', 'FusedMatMul', 'Gather', 'GatherElements', 'Gelu', 'Gemm', 'GlobalAveragePool', 'GlobalMaxPool',
  'GroupNormalization', 'HardSigmoid', 'HardSwish', 'Identity', 'InstanceNormalization', 'LayerNormalization',
  'LeakyRelu', 'Log', 'LogSoftmax', 'LpNormalization', 'LpPool', 'LRN', 'MatMul', 'Max', 'MaxPool', 'Mean', 'Min',
  'Mish', 'Mul', 'Neg', 'Pad', 'Pow', 'PRelu', 'Reciprocal', 'ReduceL2', 'ReduceMax', 'ReduceMean', 'ReduceMin',
  'ReduceSum', 'Relu', 'Reshape', 'Resize', 'Round', 'Selu', 'Sigmoid', 'Sign', 'Slice', 'Softmax', 'Softplus',
  'Softsign', 'SpaceToDepth', 'Split', 'Sqrt', 'Squeeze', 'Sub', 'Sum', 'Swish', 'Tanh', 'ThresholdedRelu', 'Tile',
  'Transpose', 'Unsqueeze', 'Upsample',
]);
/** Ops that return int64 (shapes, indices). */
const INT64_OUTPUT: ReadonlySet<string> = new Set(['Shape', 'Size', 'ArgMax', 'ArgMin', 'NonZero', 'NonMaxSuppression']);
/** Ops that return bool. */
const BOOL_OUTPUT: ReadonlySet<string> = new Set(['Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);

const MS_DOMAIN = 'com.microsoft';
const DEFAULT_SOURCE = '<onnx buffer>';
/** Probing runs one small inference; a thread or two is plenty and leaves cores to the caller. */
const PROBE_THREADS = 2;

function toNumber(v: Int64 | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

function elemName(t: number | undefined): string {
  return t === undefined ? 'unknown' : (ELEM_NAMES[t] ?? `type#${t}`);
}

function attr(node: NodeProto, name: string): OnnxTypes.IAttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

function sourceOf(opts?: { source?: string }): string {
  return opts?.source ?? DEFAULT_SOURCE;
}

/** Decodes and sanity-checks a model; any protobuf or structural problem becomes ONNX_FORMAT. */
function decodeModel(bytes: Uint8Array, source: string): ModelProto {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0) {
    throw new PartscanError('ONNX_FORMAT', `ONNX model ${source} is empty`, {
      file: source,
      remedy: 'pass the bytes of a .onnx file (e.g. fs.readFileSync(path))',
    });
  }
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw new PartscanError('ONNX_FORMAT', `${source} is not a readable ONNX model (protobuf decoding failed: ${(cause as Error).message})`, {
      file: source,
      remedy: 'check that the file is a complete .onnx export (not truncated, not a different format)',
      cause,
    });
  }
  const graph = model.graph;
  const nodes = graph?.node ?? [];
  if (!graph || nodes.length === 0 || (graph.input ?? []).length === 0 || nodes.some((n) => !n.opType)) {
    throw new PartscanError('ONNX_FORMAT', `${source} does not contain an ONNX graph with inputs and nodes`, {
      file: source,
      remedy: 'check that the file is a complete .onnx export (not truncated, not a different format)',
    });
  }
  return model;
}

function defaultOpset(model: ModelProto): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  // A model without a default-domain import predates opset versioning; treat it as opset 1.
  return entry ? toNumber(entry.version) : 1;
}

/** Element count of an initializer, from its dims. */
function initializerSize(t: TensorProto): number {
  return (t.dims ?? []).reduce<number>((acc, d) => acc * toNumber(d), 1);
}

interface Producer {
  node: NodeProto;
  /** Position of the node in topological order. */
  order: number;
  outputIndex: number;
}

interface QuantParams {
  /** Tensor holding the scale (an initializer, or a runtime tensor such as DynamicQuantizeLinear's). */
  scale: string;
  /** Tensor holding the zero point; absent means 0. */
  zeroPoint?: string;
  /** Attributes to copy onto the DequantizeLinear (axis / block_size of per-axis quantization). */
  attributes: OnnxTypes.IAttributeProto[];
  /** Domain of the node the parameters were read from, when it is a (De)QuantizeLinear. */
  domain?: string;
  /** False when the scale may be per-axis (a 1-D scale, or a runtime scale of unknown shape). */
  perTensor: boolean;
}

/** Indexes of a graph: who produces and who consumes each tensor, and what type each tensor has. */
class GraphIndex {
  readonly graph: GraphProto;
  /** Nodes in topological order. */
  readonly nodes: NodeProto[];
  readonly producers = new Map<string, Producer>();
  readonly consumers = new Map<string, { node: NodeProto; inputIndex: number }[]>();
  readonly initializers = new Map<string, TensorProto>();
  readonly types = new Map<string, number>();
  readonly opset: number;

  constructor(
    readonly model: ModelProto,
    readonly source: string,
  ) {
    this.graph = model.graph!;
    this.opset = defaultOpset(model);
    for (const t of this.graph.initializer ?? []) if (t.name) this.initializers.set(t.name, t);
    this.nodes = topologicalOrder(this.graph.node ?? [], source);
    this.nodes.forEach((node, order) => {
      (node.output ?? []).forEach((name, outputIndex) => {
        if (name) this.producers.set(name, { node, order, outputIndex });
      });
      (node.input ?? []).forEach((name, inputIndex) => {
        if (!name) return;
        let list = this.consumers.get(name);
        if (!list) this.consumers.set(name, (list = []));
        list.push({ node, inputIndex });
      });
    });
    this.collectDeclaredTypes();
    this.inferTypes();
  }

  private collectDeclaredTypes(): void {
    const declare = (v: ValueInfoProto): void => {
      const t = v.type?.tensorType?.elemType;
      if (v.name && t) this.types.set(v.name, t);
    };
    for (const v of this.graph.input ?? []) declare(v);
    for (const v of this.graph.output ?? []) declare(v);
    for (const v of this.graph.valueInfo ?? []) declare(v);
    for (const t of this.graph.initializer ?? []) if (t.name && t.dataType) this.types.set(t.name, t.dataType);
  }

  /** Fills in element types the graph does not declare, from the operators' type rules. */
  private inferTypes(): void {
    for (const node of this.nodes) {
      const outputs = node.output ?? [];
      outputs.forEach((name, i) => {
        if (!name || this.types.has(name)) return;
        const t = this.inferOutputType(node, i);
        if (t) this.types.set(name, t);
      });
    }
  }

  private inputType(node: NodeProto, i: number): number | undefined {
    const name = node.input?.[i];
    return name ? this.types.get(name) : undefined;
  }

  private inferOutputType(node: NodeProto, outputIndex: number): number | undefined {
    const op = node.opType ?? '';
    const qparams = OUTPUT_QPARAM_INPUTS[op];
    if (qparams && outputIndex === 0) {
      if (!node.input?.[qparams[0]]) return op === 'QGemm' ? ELEM.FLOAT : undefined;
      const zp = this.inputType(node, qparams[1]);
      if (zp) return zp;
      if (op === 'QuantizeLinear') {
        const outputDtype = attr(node, 'output_dtype');
        return outputDtype && toNumber(outputDtype.i) ? toNumber(outputDtype.i) : ELEM.UINT8;
      }
      // Unary QLinear ops without a zero point keep their input's type.
      return this.inputType(node, 0);
    }
    if (op === 'DynamicQuantizeLinear') return outputIndex === 1 ? ELEM.FLOAT : ELEM.UINT8;
    if (op === 'DequantizeLinear') return this.inputType(node, 1) ?? ELEM.FLOAT;
    if (op === 'Cast') return toNumber(attr(node, 'to')?.i) || undefined;
    if (op === 'CastLike') return this.inputType(node, 1);
    if (op === 'Constant') return attr(node, 'value')?.t?.dataType ?? undefined;
    if (op === 'ConstantOfShape') return attr(node, 'value')?.t?.dataType ?? ELEM.FLOAT;
    if (op === 'Where') return this.inputType(node, 1);
    if (INT64_OUTPUT.has(op)) return ELEM.INT64;
    if (BOOL_OUTPUT.has(op)) return ELEM.BOOL;
    if ((op === 'MaxPool' || op === 'TopK') && outputIndex === 1) return ELEM.INT64;
    if (op === 'TopK') return this.inputType(node, 0);
    if (SAME_TYPE_AS_INPUT0.has(op)) {
      // Dropout's mask and the training-mode outputs of BatchNormalization are not activations.
      if (outputIndex > 0 && op !== 'Split') return op === 'Dropout' ? ELEM.BOOL : undefined;
      return this.inputType(node, 0);
    }
    return undefined;
  }

  /** Whether the tensor is an integer activation that needs dequantizing. */
  isQuantized(name: string): boolean {
    const t = this.types.get(name);
    if (t === undefined) return false;
    if (EIGHT_BIT.has(t)) return true;
    return OTHER_QUANT.has(t) && this.quantParams(name) !== undefined;
  }

  /**
   * Finds the scale and zero point of a quantized tensor: on a DequantizeLinear that consumes it, on
   * the quantizing op that produces it, or, through scale-preserving ops, on its input's producer.
   */
  quantParams(name: string): QuantParams | undefined {
    for (const { node, inputIndex } of this.consumers.get(name) ?? []) {
      if (node.opType === 'DequantizeLinear' && inputIndex === 0 && node.input?.[1]) {
        return this.paramsFromQdq(node);
      }
    }
    const producer = this.producers.get(name);
    if (!producer) return undefined;
    const { node, outputIndex } = producer;
    const op = node.opType ?? '';
    if (op === 'QuantizeLinear' && outputIndex === 0 && node.input?.[1]) return this.paramsFromQdq(node);
    const positions = OUTPUT_QPARAM_INPUTS[op];
    if (positions && outputIndex === 0) {
      const scale = node.input?.[positions[0]];
      if (!scale) return undefined;
      const zeroPoint = node.input?.[positions[1]] || undefined;
      // The QLinear ops only accept scalar output scales.
      return { scale, ...(zeroPoint ? { zeroPoint } : {}), attributes: [], perTensor: true };
    }
    if (op === 'DynamicQuantizeLinear' && outputIndex === 0) {
      const scale = node.output?.[1];
      const zeroPoint = node.output?.[2];
      if (!scale) return undefined;
      return { scale, ...(zeroPoint ? { zeroPoint } : {}), attributes: [], perTensor: true };
    }
    const input = node.input?.[0];
    if (!input) return undefined;
    if (SCALE_PRESERVING_SAME_LAYOUT.has(op)) return this.quantParams(input);
    if (SCALE_PRESERVING_RELAYOUT.has(op)) {
      const upstream = this.quantParams(input);
      // A per-axis scale no longer lines up with its axis once elements move.
      return upstream && upstream.perTensor ? upstream : undefined;
    }
    return undefined;
  }

  private paramsFromQdq(node: NodeProto): QuantParams {
    const scale = node.input![1]!;
    const zeroPoint = node.input?.[2] || undefined;
    const attributes = (node.attribute ?? []).filter((a) => a.name === 'axis' || a.name === 'block_size');
    const init = this.initializers.get(scale);
    const perTensor = init !== undefined ? initializerSize(init) <= 1 && (init.dims ?? []).length <= 1 : false;
    return {
      scale,
      ...(zeroPoint ? { zeroPoint } : {}),
      attributes,
      ...(node.domain ? { domain: node.domain } : {}),
      perTensor,
    };
  }

  /** Names of every tensor in the graph (for suggestions when a name is not found). */
  allTensorNames(): string[] {
    const names = new Set<string>();
    for (const v of this.graph.input ?? []) if (v.name) names.add(v.name);
    for (const node of this.nodes) for (const o of node.output ?? []) if (o) names.add(o);
    return [...names];
  }
}

/**
 * Nodes in a topological order that keeps the file's order wherever it is already valid (ONNX requires
 * sorted graphs, but some exporters emit unsorted ones). Iterative DFS: no recursion limit on big graphs.
 */
function topologicalOrder(nodes: NodeProto[], source: string): NodeProto[] {
  const producerIndex = new Map<string, number>();
  nodes.forEach((node, i) => (node.output ?? []).forEach((o) => o && producerIndex.set(o, i)));
  const state = new Uint8Array(nodes.length); // 0 new, 1 on stack, 2 done
  const order: NodeProto[] = [];
  for (let root = 0; root < nodes.length; root++) {
    if (state[root]) continue;
    const stack: { index: number; next: number }[] = [{ index: root, next: 0 }];
    state[root] = 1;
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      const inputs = nodes[frame.index]!.input ?? [];
      if (frame.next < inputs.length) {
        const dep = producerIndex.get(inputs[frame.next++]!);
        if (dep === undefined || state[dep] === 2) continue;
        if (state[dep] === 1) {
          throw new PartscanError('ONNX_FORMAT', `ONNX graph of ${source} has a cycle through node '${nodes[dep]!.name || nodes[dep]!.opType}'`, {
            file: source,
            remedy: 're-export the model; a valid ONNX graph is acyclic',
          });
        }
        state[dep] = 1;
        stack.push({ index: dep, next: 0 });
      } else {
        state[frame.index] = 2;
        order.push(nodes[frame.index]!);
        stack.pop();
      }
    }
  }
  return order;
}

/** Levenshtein distance, for "did you mean" suggestions. */
function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diagonal = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j]!;
      prev[j] = Math.min(above + 1, prev[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return prev[b.length]!;
}

/** Up to five names close to `wanted`: substring matches first, then small edit distances. */
function closeNames(wanted: string, candidates: string[]): string[] {
  const w = wanted.toLowerCase();
  const scored: { name: string; score: number }[] = [];
  for (const name of candidates) {
    const n = name.toLowerCase();
    const distance = editDistance(w, n);
    if (n.includes(w) || w.includes(n)) scored.push({ name, score: distance - 1000 });
    else if (distance <= Math.max(2, Math.floor(w.length / 3))) scored.push({ name, score: distance });
  }
  scored.sort((a, b) => a.score - b.score || a.name.localeCompare(b.name));
  return scored.slice(0, 5).map((s) => s.name);
}

function notFound(name: string, index: GraphIndex): PartscanError {
  const suggestions = closeNames(name, index.allTensorNames());
  const hint = suggestions.length > 0 ? `; close names: ${suggestions.map((s) => `'${s}'`).join(', ')}` : '';
  return new PartscanError('ONNX_TENSOR_NOT_FOUND', `no node of ${index.source} produces a tensor named '${name}'${hint}`, {
    file: index.source,
    remedy: 'list the candidate tensors with listIntermediateTensors() and use one of those names',
  });
}

/** Lists tensors produced by nodes (candidates for feature maps), in topological/graph order. */
export function listIntermediateTensors(model: Uint8Array, opts?: Pick<OnnxSurgeryOptions, 'source'>): IntermediateTensorInfo[] {
  const source = sourceOf(opts);
  const index = new GraphIndex(decodeModel(model, source), source);
  return listFromIndex(index);
}

function listFromIndex(index: GraphIndex): IntermediateTensorInfo[] {
  const out: IntermediateTensorInfo[] = [];
  index.nodes.forEach((node, i) => {
    // Constants are weights, not activations.
    if (node.opType === 'Constant') return;
    for (const name of node.output ?? []) {
      if (!name) continue;
      out.push({
        name,
        opType: node.opType ?? '',
        nodeName: node.name || `${node.opType}_${i}`,
        elemType: elemName(index.types.get(name)),
        quantized: index.isQuantized(name),
      });
    }
  });
  return out;
}

/** How one requested tensor becomes a float32 graph output. */
type ExposePlan =
  | { kind: 'float'; name: string }
  | { kind: 'untyped'; name: string }
  | { kind: 'dequantize'; name: string; params: QuantParams }
  | { kind: 'cast'; name: string };

function planExposure(index: GraphIndex, name: string): ExposePlan {
  const source = index.source;
  if (!index.producers.has(name)) {
    if ((index.graph.input ?? []).some((v) => v.name === name) || index.initializers.has(name)) {
      throw new PartscanError('OPTIONS', `'${name}' is a graph input or weight of ${source}, not a tensor computed by the network`, {
        file: source,
        remedy: 'choose an intermediate activation from listIntermediateTensors()',
      });
    }
    throw notFound(name, index);
  }
  const type = index.types.get(name);
  if (type === ELEM.FLOAT) return { kind: 'float', name };
  if (type !== undefined && CASTABLE_FLOAT.has(type)) return { kind: 'cast', name };
  const quantizedType = type === undefined || EIGHT_BIT.has(type) || OTHER_QUANT.has(type);
  if (quantizedType) {
    const params = index.quantParams(name);
    if (params) return { kind: 'dequantize', name, params };
    // Without a declared or inferable type, let ONNX Runtime type the output; probing checks it is float.
    if (type === undefined) return { kind: 'untyped', name };
    const producer = index.producers.get(name)!.node;
    throw new PartscanError(
      'ONNX_FORMAT',
      `tensor '${name}' of ${source} is ${elemName(type)} (produced by ${producer.opType} '${producer.name ?? ''}') and its quantization scale/zero point cannot be determined`,
      {
        file: source,
        remedy:
          'choose a float tensor instead, e.g. the output of a DequantizeLinear, or a tensor produced by a QLinear*/QuantizeLinear op (listIntermediateTensors() marks usable ones quantized: true)',
      },
    );
  }
  throw new PartscanError('OPTIONS', `tensor '${name}' of ${source} is ${elemName(type)}, not a feature map`, {
    file: source,
    remedy: 'choose a float or quantized (uint8/int8) activation from listIntermediateTensors()',
  });
}

/** Renames every use of a tensor, including outer-scope references inside subgraphs (If/Loop bodies). */
function renameTensor(graph: GraphProto, from: string, to: string): void {
  for (const node of graph.node ?? []) {
    if (node.input) node.input = node.input.map((n) => (n === from ? to : n));
    if (node.output) node.output = node.output.map((n) => (n === from ? to : n));
    for (const a of node.attribute ?? []) {
      if (a.g) renameTensor(a.g, from, to);
      for (const g of a.graphs ?? []) renameTensor(g, from, to);
    }
  }
  for (const v of graph.valueInfo ?? []) if (v.name === from) v.name = to;
}

/** Every tensor name read by the nodes of a subgraph, recursively (over-approximates its outer-scope reads). */
function subgraphReads(graph: GraphProto, into: Set<string>): void {
  for (const node of graph.node ?? []) {
    for (const i of node.input ?? []) if (i) into.add(i);
    for (const a of node.attribute ?? []) {
      if (a.g) subgraphReads(a.g, into);
      for (const g of a.graphs ?? []) subgraphReads(g, into);
    }
  }
}

function nodeReads(node: NodeProto): string[] {
  const reads = new Set<string>();
  for (const i of node.input ?? []) if (i) reads.add(i);
  for (const a of node.attribute ?? []) {
    if (a.g) subgraphReads(a.g, reads);
    for (const g of a.graphs ?? []) subgraphReads(g, reads);
  }
  return [...reads];
}

function uniqueName(base: string, taken: Set<string>): string {
  let name = base;
  for (let k = 2; taken.has(name); k++) name = `${base}_${k}`;
  taken.add(name);
  return name;
}

function ensureOpsetImport(model: ModelProto, domain: string, version: number): void {
  const imports = model.opsetImport ?? (model.opsetImport = []);
  const existing = imports.find((o) => o.domain === domain);
  if (!existing) imports.push(onnx.OperatorSetIdProto.create({ domain, version }));
  else if (toNumber(existing.version) < version) existing.version = version;
}

/**
 * Rewrites the graph in place: the requested tensors become the graph outputs, in order; everything
 * they do not depend on is removed. Mode 'raw' declares the outputs without a type and skips the
 * dequantization (used by probing, which reads the raw tensors and their types from ONNX Runtime).
 */
function rewireOutputs(index: GraphIndex, names: string[], mode: 'float' | 'raw', keepInputShape: boolean): ModelProto {
  const { model, graph, source } = index;
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) {
      throw new PartscanError('OPTIONS', `tensor '${name}' is requested twice from ${source}`, {
        file: source,
        remedy: 'list each feature tensor once',
      });
    }
    seen.add(name);
  }
  if ((graph.initializer ?? []).some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)) {
    throw new PartscanError('ONNX_FORMAT', `${source} keeps its weights in external data files, which partscan cannot load from memory`, {
      file: source,
      remedy: "save the model as a single file, e.g. in Python: onnx.save(onnx.load(path), out, save_as_external_data=False)",
    });
  }

  // Plan every output against the untouched graph first: renames below must not change what is found.
  const plans: ExposePlan[] =
    mode === 'raw'
      ? names.map((name) => {
          if (!index.producers.has(name)) throw notFound(name, index);
          return { kind: 'untyped', name };
        })
      : names.map((name) => planExposure(index, name));

  const taken = new Set<string>([...index.allTensorNames(), ...index.initializers.keys()]);
  const nodeNames = new Set<string>((graph.node ?? []).map((n) => n.name ?? ''));
  const extraNodes: NodeProto[] = [];
  const outputs: ValueInfoProto[] = [];
  let usesMsDequantize = false;

  for (const plan of plans) {
    if (plan.kind === 'float' || plan.kind === 'untyped') {
      outputs.push(
        plan.kind === 'float'
          ? onnx.ValueInfoProto.create({ name: plan.name, type: { tensorType: { elemType: ELEM.FLOAT } } })
          : onnx.ValueInfoProto.create({ name: plan.name }),
      );
      continue;
    }
    // The caller asked for `name` and gets a float tensor called `name`: the original integer (or
    // half-precision) tensor moves to an internal name, with its producer and consumers updated.
    const internal = uniqueName(`${plan.name}__${plan.kind === 'cast' ? 'uncast' : 'quantized'}`, taken);
    renameTensor(graph, plan.name, internal);
    if (plan.kind === 'cast') {
      if (index.opset < 6) {
        throw new PartscanError('ONNX_FORMAT', `${source} uses opset ${index.opset}; converting '${plan.name}' to float32 needs Cast from opset 6`, {
          file: source,
          remedy: 'convert the model to a newer opset (onnx.version_converter) or choose a float32 tensor',
        });
      }
      extraNodes.push(
        onnx.NodeProto.create({
          name: uniqueName(`partscan_cast_${plan.name}`, nodeNames),
          opType: 'Cast',
          input: [internal],
          output: [plan.name],
          attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: ELEM.FLOAT }],
        }),
      );
    } else {
      const { params } = plan;
      const needsAxis = params.attributes.some((a) => a.name === 'axis');
      const needsBlock = params.attributes.some((a) => a.name === 'block_size');
      const minOpset = needsBlock ? 21 : needsAxis ? 13 : 10;
      // The contrib DequantizeLinear runs on any opset and supports axis; use it when the model's
      // opset predates the ONNX one, or when the parameters came from a contrib Q/DQ node.
      const useMs = params.domain === MS_DOMAIN || (index.opset < minOpset && !needsBlock);
      if (index.opset < minOpset && needsBlock) {
        throw new PartscanError('ONNX_FORMAT', `${source} uses opset ${index.opset}; block-quantized '${plan.name}' needs DequantizeLinear from opset 21`, {
          file: source,
          remedy: 'choose a float tensor (the output of a DequantizeLinear) instead',
        });
      }
      usesMsDequantize ||= useMs;
      extraNodes.push(
        onnx.NodeProto.create({
          name: uniqueName(`partscan_dequantize_${plan.name}`, nodeNames),
          opType: 'DequantizeLinear',
          ...(useMs ? { domain: MS_DOMAIN } : {}),
          input: params.zeroPoint ? [internal, params.scale, params.zeroPoint] : [internal, params.scale],
          output: [plan.name],
          attribute: params.attributes.map((a) => onnx.AttributeProto.create(a)),
        }),
      );
    }
    outputs.push(onnx.ValueInfoProto.create({ name: plan.name, type: { tensorType: { elemType: ELEM.FLOAT } } }));
  }
  if (usesMsDequantize) ensureOpsetImport(model, MS_DOMAIN, 1);

  // Prune: keep only the nodes the outputs depend on. New nodes come last, which keeps the order
  // topological because all their inputs are produced earlier (or are initializers).
  const allNodes = [...index.nodes, ...extraNodes];
  const needed = new Set<string>(names);
  const keep = new Array<boolean>(allNodes.length).fill(false);
  for (let i = allNodes.length - 1; i >= 0; i--) {
    const node = allNodes[i]!;
    if (!(node.output ?? []).some((o) => o && needed.has(o))) continue;
    keep[i] = true;
    for (const r of nodeReads(node)) needed.add(r);
  }
  graph.node = allNodes.filter((_, i) => keep[i]);
  graph.initializer = (graph.initializer ?? []).filter((t) => t.name && needed.has(t.name));
  graph.sparseInitializer = (graph.sparseInitializer ?? []).filter((t) => t.values?.name && needed.has(t.values.name));
  graph.input = (graph.input ?? []).filter((v) => v.name && needed.has(v.name));
  graph.output = outputs;
  const outputNames = new Set(names);
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => v.name && needed.has(v.name) && !outputNames.has(v.name));

  if (!keepInputShape) {
    const initializerNames = new Set((graph.initializer ?? []).map((t) => t.name));
    for (const input of graph.input ?? []) {
      if (!input.name || initializerNames.has(input.name)) continue;
      const dims = input.type?.tensorType?.shape?.dim ?? [];
      if (dims.length !== 4) continue;
      // Batch, height and width become symbolic; channels stay fixed (the first conv depends on them).
      const symbolic = ['batch', null, 'height', 'width'] as const;
      symbolic.forEach((param, i) => {
        if (param) dims[i] = onnx.TensorShapeProto.Dimension.create({ dimParam: param });
      });
    }
    // Intermediate shapes recorded at the export resolution would contradict other input sizes.
    for (const v of graph.valueInfo ?? []) if (v.type?.tensorType) v.type.tensorType.shape = null;
  }
  return model;
}

/**
 * Returns a new model whose graph outputs are exactly the named tensors (float32), in the given order.
 * The original outputs are removed and the graph pruned to what those tensors need. Quantized
 * (uint8/int8) tensors get a DequantizeLinear with the tensor's scale and zero point; float16/double
 * tensors get a Cast. Either way the float32 output keeps the requested name (the raw tensor is
 * renamed inside the graph). Unless `keepInputShape` is set, the image input's batch, height and width
 * become symbolic so the extractor runs at any batch size and resolution.
 *
 * @throws PartscanError ONNX_TENSOR_NOT_FOUND for unknown names (with close names), ONNX_FORMAT for an
 *   unreadable model or a quantized tensor whose scale cannot be found, OPTIONS for non-activation tensors.
 */
export function exposeIntermediateOutputs(model: Uint8Array, names: string[], opts?: OnnxSurgeryOptions): Uint8Array {
  const source = sourceOf(opts);
  if (!Array.isArray(names) || names.length === 0) {
    throw new PartscanError('OPTIONS', `no tensor names given to expose from ${source}`, {
      file: source,
      remedy: 'pass at least one tensor name (see listIntermediateTensors() or suggestFeatureLayers())',
    });
  }
  const index = new GraphIndex(decodeModel(model, source), source);
  const rewired = rewireOutputs(index, names, 'float', opts?.keepInputShape ?? false);
  return onnx.ModelProto.encode(rewired).finish();
}

/** Name of the single image input (ignoring inputs that are also initializers). */
export function onnxImageInputName(model: Uint8Array, opts?: Pick<OnnxSurgeryOptions, 'source'>): string {
  const source = sourceOf(opts);
  return imageInput(decodeModel(model, source), source).name!;
}

function imageInput(model: ModelProto, source: string): ValueInfoProto {
  const graph = model.graph!;
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? []).filter((v) => v.name && !initializers.has(v.name));
  if (inputs.length === 1) return inputs[0]!;
  // Several inputs: the image is the one 4-D input, if there is exactly one.
  const fourD = inputs.filter((v) => (v.type?.tensorType?.shape?.dim ?? []).length === 4);
  if (fourD.length === 1) return fourD[0]!;
  const listed = inputs.map((v) => `'${v.name}'`).join(', ') || 'none';
  throw new PartscanError('ONNX_FORMAT', `${source} must have exactly one image input (NCHW); it has ${inputs.length}: ${listed}`, {
    file: source,
    remedy: 'export the classifier with a single image input, or fold the other inputs into constants',
  });
}

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
