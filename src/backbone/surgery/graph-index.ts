/**
 * The read side of ONNX graph surgery: decoding a model with ONNX_FORMAT errors, and an index of its
 * graph (who produces and consumes each tensor, each tensor's element type and quantization
 * parameters, nodes in topological order), plus the static listing of candidate feature tensors.
 * Exposing (expose.ts) and probing (probe.ts) both work from this index.
 */
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

import { PartscanError } from '../../errors.js';
import { ONNX_TYPE_NAMES, OnnxDataType as ELEM } from '../../onnx/graph.js';
import { inspectOnnxGraph } from '../../onnx/graph-inspect.js';
import { editDistance } from '../../util/edit-distance.js';
import type { IntermediateTensorInfo, OnnxSurgeryOptions } from './types.js';

const { onnx } = onnxProto;

type ModelProto = OnnxTypes.ModelProto;
type GraphProto = OnnxTypes.IGraphProto;
type NodeProto = OnnxTypes.INodeProto;
type TensorProto = OnnxTypes.ITensorProto;
type ValueInfoProto = OnnxTypes.IValueInfoProto;
type Int64 = number | { toNumber(): number };

/** 8-bit types are quantized activations whenever they flow between nodes of a vision model. */
export const EIGHT_BIT: ReadonlySet<number> = new Set([ELEM.UINT8, ELEM.INT8]);
/** Wider or narrower integer types count as quantized only when a scale can be found for them. */
export const OTHER_QUANT: ReadonlySet<number> = new Set([ELEM.UINT16, ELEM.INT16, ELEM.UINT4, ELEM.INT4]);
/** Floating types that a Cast turns into float32 without losing anything that matters for features. */
export const CASTABLE_FLOAT: ReadonlySet<number> = new Set([ELEM.FLOAT16, ELEM.DOUBLE, ELEM.BFLOAT16]);

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

export const DEFAULT_SOURCE = '<onnx buffer>';

export function toNumber(v: Int64 | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function elemName(t: number | undefined): string {
  return t === undefined ? 'unknown' : (ONNX_TYPE_NAMES[t] ?? `type#${t}`);
}

export function attr(node: NodeProto, name: string): OnnxTypes.IAttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function sourceOf(opts?: { source?: string }): string {
  return opts?.source ?? DEFAULT_SOURCE;
}

/** Decodes and sanity-checks a model; any protobuf or structural problem becomes ONNX_FORMAT. */
export function decodeModel(bytes: Uint8Array, source: string): ModelProto {
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
  // Before anything runs it (probes, sessions): external data, sub-graphs, other domains, sizes.
  inspectOnnxGraph(bytes, { source });
  return model;
}

export function defaultOpset(model: ModelProto): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  // A model without a default-domain import predates opset versioning; treat it as opset 1.
  return entry ? toNumber(entry.version) : 1;
}

/** Element count of an initializer, from its dims. */
export function initializerSize(t: TensorProto): number {
  return (t.dims ?? []).reduce<number>((acc, d) => acc * toNumber(d), 1);
}

export interface Producer {
  node: NodeProto;
  /** Position of the node in topological order. */
  order: number;
  outputIndex: number;
}

export interface QuantParams {
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
export class GraphIndex {
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
export function topologicalOrder(nodes: NodeProto[], source: string): NodeProto[] {
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

export function notFound(name: string, index: GraphIndex): PartscanError {
  const suggestions = closeNames(name, index.allTensorNames());
  const hint = suggestions.length > 0 ? `; close names: ${suggestions.map((s) => `'${s}'`).join(', ')}` : '';
  return new PartscanError('ONNX_TENSOR_NOT_FOUND', `no node of ${index.source} produces a tensor named '${name}'${hint}`, {
    file: index.source,
    remedy: 'list the candidate tensors with listIntermediateTensors() and use one of those names',
  });
}

/** Implementation of `listIntermediateTensors` (the public face, with its documentation, is backbone/onnx-surgery.ts). */
export function listIntermediateTensors(model: Uint8Array, opts?: Pick<OnnxSurgeryOptions, 'source'>): IntermediateTensorInfo[] {
  const source = sourceOf(opts);
  const index = new GraphIndex(decodeModel(model, source), source);
  return listFromIndex(index);
}

export function listFromIndex(index: GraphIndex): IntermediateTensorInfo[] {
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
