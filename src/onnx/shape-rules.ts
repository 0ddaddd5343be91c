/**
 * The shape rules of shape-inference.ts, one per ONNX operator (the default domain and com.microsoft's
 * quantized forms alike): each gives a node's output shapes at batch 1 from its inputs' shapes, its
 * attributes and the values of small constant inputs, and records the values it can compute (shape
 * arithmetic). Undefined where it cannot tell: the caller refuses such a graph.
 */

import type { ScannedAttribute, ScannedNode } from './onnx-scan.js';
import { SMALL_TENSOR_ELEMENTS } from './onnx-scan.js';

type Shape = number[];

/** What a rule reads: input shapes and values, attribute lists; and where it records computed values. */
export interface ShapeContext {
  readonly opset: number;
  readonly values: Map<string, number[]>;
  shape(n: ScannedNode, i: number): Shape | undefined;
  value(n: ScannedNode, i: number): number[] | undefined;
  /** An int list from attribute `name`, or from input `index` (newer opsets moved many to inputs). */
  list(n: ScannedNode, name: string, index: number): number[] | undefined;
}

/** A shape rule: a node's output shapes, or undefined. */
export type Rule = (n: ScannedNode, g: ShapeContext) => (Shape | undefined)[] | undefined;

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

export function attr(n: ScannedNode, name: string): ScannedAttribute | undefined {
  return n.attributes.get(name);
}
const int = (n: ScannedNode, name: string, dflt: number) => attr(n, name)?.i ?? dflt;
const axisOf = (a: number, rank: number) => (a < 0 ? a + rank : a);

/** Numpy broadcasting of several shapes; undefined when one is unknown or they do not broadcast. */
function broadcast(shapes: (Shape | undefined)[]): Shape | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Shape = [];
  for (let k = 0; k < rank; k++) {
    let d = 1;
    for (const s of shapes) {
      const v = s![s!.length - rank + k] ?? 1;
      if (v !== 1 && d !== 1 && v !== d) return undefined;
      if (v !== 1) d = v;
    }
    out.push(d);
  }
  return out;
}

/** Output side of a sliding window (conv, pool) along one axis. */
function window(n: ScannedNode, input: Shape, kernel: number[], ceil = false): Shape | undefined {
  const spatial = input.length - 2;
  if (kernel.length !== spatial) return undefined;
  const strides = attr(n, 'strides')?.ints ?? kernel.map(() => 1);
  const dil = attr(n, 'dilations')?.ints ?? kernel.map(() => 1);
  const pads = attr(n, 'pads')?.ints ?? kernel.flatMap(() => [0, 0]).slice(0, 2 * spatial);
  const auto = attr(n, 'auto_pad')?.s ?? 'NOTSET';
  return kernel.map((k, i) => {
    const x = input[i + 2]!;
    const s = strides[i] ?? 1;
    if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') return Math.ceil(x / s);
    const span = (dil[i] ?? 1) * (k - 1) + 1;
    const padded = auto === 'VALID' ? x : x + (pads[i] ?? 0) + (pads[i + spatial] ?? 0);
    return (ceil ? Math.ceil : Math.floor)((padded - span) / s) + 1;
  });
}

function conv(xIndex: number, wIndex: number): Rule {
  return (n, g) => {
    const x = g.shape(n, xIndex);
    const w = g.shape(n, wIndex);
    if (!x || !w || x.length < 3) return undefined;
    const kernel = attr(n, 'kernel_shape')?.ints ?? w.slice(2);
    const sp = window(n, x, kernel);
    return sp && [[x[0]!, w[0]!, ...sp]];
  };
}

const convTranspose: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const w = g.shape(n, 1);
  if (!x || !w || x.length < 3) return undefined;
  const spatial = x.length - 2;
  const channels = w[1]! * int(n, 'group', 1);
  const given = attr(n, 'output_shape')?.ints;
  if (given) return [[x[0]!, channels, ...given.slice(-spatial)]];
  const kernel = attr(n, 'kernel_shape')?.ints ?? w.slice(2);
  const strides = attr(n, 'strides')?.ints ?? [];
  const dil = attr(n, 'dilations')?.ints ?? [];
  const pads = attr(n, 'pads')?.ints ?? [];
  const outPad = attr(n, 'output_padding')?.ints ?? [];
  return [[x[0]!, channels, ...kernel.map((k, i) => (strides[i] ?? 1) * (x[i + 2]! - 1) + (outPad[i] ?? 0) + ((k - 1) * (dil[i] ?? 1) + 1) - (pads[i] ?? 0) - (pads[i + spatial] ?? 0))]];
};

const pool: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const kernel = attr(n, 'kernel_shape')?.ints;
  if (!x || !kernel) return undefined;
  const sp = window(n, x, kernel, int(n, 'ceil_mode', 0) === 1);
  return sp && [[x[0]!, x[1]!, ...sp], [x[0]!, x[1]!, ...sp]];
};

const globalPool: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  if (int(n, 'channels_last', 0) === 1) return [[x[0]!, ...x.slice(1, -1).map(() => 1), x.at(-1)!]];
  return [[x[0]!, x[1]!, ...x.slice(2).map(() => 1)]];
};

function matmulShape(a: Shape | undefined, b: Shape | undefined): Shape | undefined {
  if (!a || !b || a.length === 0 || b.length === 0) return undefined;
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)]);
  if (!batch) return undefined;
  return [...batch, ...(a.length === 1 ? [] : [a2.at(-2)!]), ...(b.length === 1 ? [] : [b2.at(-1)!])];
}

/** Element-wise arithmetic on small value vectors (shape computations), with scalar broadcasting. */
function arithmetic(op: string, xs: number[][]): number[] | undefined {
  const f: Record<string, (a: number, b: number) => number> = {
    Add: (a, b) => a + b,
    Sub: (a, b) => a - b,
    Mul: (a, b) => a * b,
    Div: (a, b) => Math.trunc(a / b),
    Max: Math.max,
    Min: Math.min,
  };
  const fn = f[op];
  if (!fn || xs.length !== 2) return undefined;
  const [a, b] = xs as [number[], number[]];
  const len = Math.max(a.length, b.length);
  if ((a.length !== len && a.length !== 1) || (b.length !== len && b.length !== 1)) return undefined;
  return Array.from({ length: len }, (_, i) => fn(a[a.length === 1 ? 0 : i]!, b[b.length === 1 ? 0 : i]!));
}

const elementwise: Rule = (n, g) => {
  const ins = n.opType === 'QLinearAdd' || n.opType === 'QLinearMul' ? [0, 3] : n.inputs.map((_, i) => i);
  const shape = broadcast(ins.map((i) => g.shape(n, i)));
  const vals = ins.map((i) => g.value(n, i));
  if (shape && vals.every((v) => v !== undefined)) {
    const v = arithmetic(n.opType, vals as number[][]);
    if (v) g.values.set(n.outputs[0]!, v);
  }
  return [shape];
};

/** Output 0 (and any others) shaped like input 0; values passed through for Identity and Cast. */
const sameAsInput: Rule = (n, g) => {
  const v = g.value(n, 0);
  if (v && (n.opType === 'Identity' || n.opType === 'Cast' || n.opType === 'CastLike')) g.values.set(n.outputs[0]!, v);
  const s = g.shape(n, 0);
  return n.outputs.map((_, i) => (i === 0 ? s : n.opType === 'DynamicQuantizeLinear' ? [] : s));
};

const reshape: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const target = n.inputs[1] ? g.value(n, 1) : attr(n, 'shape')?.ints;
  if (!x || !target) return undefined;
  const allowZero = int(n, 'allowzero', 0) === 1;
  const out = target.map((d, i) => (d === 0 && !allowZero ? x[i]! : d));
  const known = prod(out.filter((d) => d !== -1));
  const minus = out.filter((d) => d === -1).length;
  if (minus > 1 || out.some((d) => d < -1) || (minus === 1 && (known === 0 || prod(x) % known !== 0))) return undefined;
  const shape = out.map((d) => (d === -1 ? prod(x) / known : d));
  const v = g.value(n, 0);
  if (v) g.values.set(n.outputs[0]!, v);
  return prod(shape) === prod(x) ? [shape] : undefined;
};

const flatten: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  const a = axisOf(int(n, 'axis', 1), x.length);
  return [[prod(x.slice(0, a)), prod(x.slice(a))]];
};

const transpose: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  const perm = attr(n, 'perm')?.ints ?? x.map((_, i) => x.length - 1 - i);
  return [perm.map((p) => x[p]!)];
};

const squeeze: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  const axes = g.list(n, 'axes', 1)?.map((a) => axisOf(a, x.length));
  const v = g.value(n, 0);
  if (v) g.values.set(n.outputs[0]!, v);
  return [x.filter((d, i) => (axes ? !axes.includes(i) : d !== 1))];
};

const unsqueeze: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const axes = g.list(n, 'axes', 1);
  if (!x || !axes) return undefined;
  const rank = x.length + axes.length;
  const at = new Set(axes.map((a) => axisOf(a, rank)));
  const out: Shape = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(at.has(i) ? 1 : x[k++]!);
  const v = g.value(n, 0);
  if (v) g.values.set(n.outputs[0]!, v);
  return [out];
};

const concat: Rule = (n, g) => {
  const first = n.opType === 'QLinearConcat' ? 2 : 0;
  const step = n.opType === 'QLinearConcat' ? 3 : 1;
  const idx: number[] = [];
  for (let i = first; i < n.inputs.length; i += step) idx.push(i);
  const shapes = idx.map((i) => g.shape(n, i));
  if (shapes.some((s) => !s) || shapes.length === 0) return undefined;
  const rank = shapes[0]!.length;
  const a = axisOf(int(n, 'axis', 0), rank);
  const out = [...shapes[0]!];
  out[a] = shapes.reduce((t, s) => t + s![a]!, 0);
  const vals = idx.map((i) => g.value(n, i));
  if (rank === 1 && vals.every((v) => v)) g.values.set(n.outputs[0]!, vals.flat() as number[]);
  return [out];
};

const slice: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const old = g.opset < 10;
  const starts = old ? attr(n, 'starts')?.ints : g.value(n, 1);
  const ends = old ? attr(n, 'ends')?.ints : g.value(n, 2);
  if (!x || !starts || !ends) return undefined;
  const axes = (old ? attr(n, 'axes')?.ints : n.inputs[3] ? g.value(n, 3) : undefined) ?? starts.map((_, i) => i);
  const steps = (old ? undefined : n.inputs[4] ? g.value(n, 4) : undefined) ?? starts.map(() => 1);
  if (!n.inputs[3] && !old && axes.length !== starts.length) return undefined;
  const out = [...x];
  const picked: [number, number, number][] = [];
  for (let i = 0; i < starts.length; i++) {
    const a = axisOf(axes[i]!, x.length);
    const dim = x[a]!;
    const st = steps[i]!;
    if (st === 0) return undefined;
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + dim : v, lo), hi);
    const s = st > 0 ? clamp(starts[i]!, 0, dim) : clamp(starts[i]!, -1, dim - 1);
    const e = st > 0 ? clamp(ends[i]!, 0, dim) : clamp(ends[i]!, -1, dim - 1);
    out[a] = Math.max(0, Math.ceil((e - s) / st));
    picked.push([s, e, st]);
  }
  const v = g.value(n, 0);
  if (v && x.length === 1 && picked.length === 1) {
    const [s, e, st] = picked[0]!;
    const vs: number[] = [];
    for (let i = s; st > 0 ? i < e : i > e; i += st) vs.push(v[i]!);
    g.values.set(n.outputs[0]!, vs);
  }
  return [out];
};

const gather: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const ind = g.shape(n, 1);
  if (!x || !ind) return undefined;
  const a = axisOf(int(n, 'axis', 0), x.length);
  const v = g.value(n, 0);
  const iv = g.value(n, 1);
  if (v && iv && x.length === 1) g.values.set(n.outputs[0]!, iv.map((i) => v[i < 0 ? i + v.length : i]!));
  return [[...x.slice(0, a), ...ind, ...x.slice(a + 1)]];
};

const split: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  const a = axisOf(int(n, 'axis', 0), x.length);
  const parts = attr(n, 'split')?.ints ?? (n.inputs[1] ? g.value(n, 1) : undefined);
  const count = n.outputs.length;
  const sizes = parts ?? Array.from({ length: count }, (_, i) => Math.ceil(x[a]! / count) - (i === count - 1 ? Math.ceil(x[a]! / count) * count - x[a]! : 0));
  return sizes.map((d) => x.map((v, i) => (i === a ? d : v)));
};

const reduce: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  const keep = int(n, 'keepdims', 1) === 1;
  const single = attr(n, 'axis')?.i;
  let axes = single !== undefined ? [single] : g.list(n, 'axes', 1);
  if (n.opType === 'ArgMax' || n.opType === 'ArgMin') axes = [single ?? 0];
  if (!axes && n.inputs[1]) return undefined;
  const set = new Set((axes && axes.length ? axes : int(n, 'noop_with_empty_axes', 0) === 1 ? [] : x.map((_, i) => i)).map((v) => axisOf(v, x.length)));
  return [keep ? x.map((d, i) => (set.has(i) ? 1 : d)) : x.filter((_, i) => !set.has(i))];
};

const shapeOf: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  const start = axisOf(int(n, 'start', 0), x.length);
  const end = attr(n, 'end') ? axisOf(int(n, 'end', x.length), x.length) : x.length;
  const v = x.slice(start, end);
  g.values.set(n.outputs[0]!, v);
  return [[v.length]];
};

const constant: Rule = (n, g) => {
  const t = attr(n, 'value')?.t;
  const a = n.attributes;
  const v = t ? t.values : a.get('value_ints')?.ints ?? a.get('value_floats')?.floats ?? (a.get('value_int')?.i ?? a.get('value_float')?.f) ?? undefined;
  const values = typeof v === 'number' ? [v] : v;
  if (values) g.values.set(n.outputs[0]!, values);
  if (t) return [t.dims];
  if (a.get('value_ints') || a.get('value_floats')) return [[values!.length]];
  return a.get('value_int') || a.get('value_float') ? [[]] : undefined;
};

const constantOfShape: Rule = (n, g) => {
  const s = g.value(n, 0);
  return s && [s];
};

const expand: Rule = (n, g) => [broadcast([g.shape(n, 0), g.value(n, 1)])];

const tile: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const r = g.value(n, 1);
  return x && r && r.length === x.length ? [x.map((d, i) => d * r[i]!)] : undefined;
};

const range: Rule = (n, g) => {
  const [s, l, d] = [g.value(n, 0)?.[0], g.value(n, 1)?.[0], g.value(n, 2)?.[0]];
  if (s === undefined || l === undefined || d === undefined || d === 0) return undefined;
  const count = Math.max(Math.ceil((l - s) / d), 0);
  if (count <= SMALL_TENSOR_ELEMENTS) g.values.set(n.outputs[0]!, Array.from({ length: count }, (_, i) => s + i * d));
  return [[count]];
};

const resize: Rule = (n, g) => {
  const x = g.shape(n, 0);
  if (!x) return undefined;
  const upsample = n.opType === 'Upsample';
  const scales = upsample ? (attr(n, 'scales')?.floats ?? g.value(n, 1)) : g.opset < 11 ? g.value(n, 1) : n.inputs[2] ? g.value(n, 2) : undefined;
  const sizes = !upsample && g.opset >= 11 && n.inputs[3] ? g.value(n, 3) : undefined;
  const axes = attr(n, 'axes')?.ints?.map((a) => axisOf(a, x.length)) ?? x.map((_, i) => i);
  const out = [...x];
  if (sizes && sizes.length === axes.length) axes.forEach((a, i) => (out[a] = sizes[i]!));
  else if (scales && scales.length === axes.length) axes.forEach((a, i) => (out[a] = Math.floor(x[a]! * scales[i]!)));
  else return undefined;
  return [out];
};

const pad: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const pads = g.opset < 11 ? attr(n, 'pads')?.ints : g.value(n, 1);
  if (!x || !pads) return undefined;
  const axes = (n.inputs[3] ? g.value(n, 3) : undefined)?.map((a) => axisOf(a, x.length)) ?? x.map((_, i) => i);
  if (pads.length !== 2 * axes.length) return undefined;
  const out = [...x];
  axes.forEach((a, i) => (out[a] = x[a]! + pads[i]! + pads[i + axes.length]!));
  return [out];
};

const gemm: Rule = (n, g) => {
  const a = g.shape(n, 0);
  const b = g.shape(n, 1);
  if (!a || !b || a.length !== 2 || b.length !== 2) return undefined;
  return [[int(n, 'transA', 0) ? a[1]! : a[0]!, int(n, 'transB', 0) ? b[0]! : b[1]!]];
};

const depthSpace: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const b = int(n, 'blocksize', 0);
  if (!x || x.length !== 4 || b < 1) return undefined;
  return n.opType === 'DepthToSpace' ? [[x[0]!, x[1]! / (b * b), x[2]! * b, x[3]! * b]] : [[x[0]!, x[1]! * b * b, x[2]! / b, x[3]! / b]];
};

const oneHot: Rule = (n, g) => {
  const ind = g.shape(n, 0);
  const depth = g.value(n, 1)?.[0];
  if (!ind || depth === undefined) return undefined;
  const a = axisOf(int(n, 'axis', -1), ind.length + 1);
  return [[...ind.slice(0, a), depth, ...ind.slice(a)]];
};

const randomShape: Rule = (n) => {
  const s = attr(n, 'shape')?.ints;
  return s && [s];
};

const topK: Rule = (n, g) => {
  const x = g.shape(n, 0);
  const k = attr(n, 'k')?.i ?? g.value(n, 1)?.[0];
  if (!x || k === undefined) return undefined;
  const a = axisOf(int(n, 'axis', -1), x.length);
  const out = x.map((d, i) => (i === a ? k : d));
  return [out, out];
};

const SAME_AS_INPUT = [
  'Abs', 'Acos', 'Acosh', 'Asin', 'Asinh', 'Atan', 'Atanh', 'BatchNormalization', 'Cast', 'CastLike', 'Ceil', 'Celu', 'Clip',
  'Cos', 'Cosh', 'CumSum', 'DequantizeLinear', 'Dropout', 'DynamicQuantizeLinear', 'Elu', 'Erf', 'Exp', 'EyeLike', 'FastGelu',
  'Floor', 'Gelu', 'GroupNormalization', 'HardSigmoid', 'HardSwish', 'Hardmax', 'Identity', 'InstanceNormalization', 'IsInf',
  'IsNaN', 'LayerNormalization', 'LeakyRelu', 'Log', 'LogSoftmax', 'LpNormalization', 'LRN', 'MeanVarianceNormalization',
  'Mish', 'Neg', 'Not', 'QLinearLeakyRelu', 'QLinearSigmoid', 'QLinearSoftmax', 'QuantizeLinear', 'RandomNormalLike',
  'RandomUniformLike', 'Reciprocal', 'Relu', 'Round', 'Selu', 'Shrink', 'Sigmoid', 'Sign', 'Sin', 'Sinh', 'Softmax', 'Softplus',
  'Softsign', 'Sqrt', 'Tan', 'Tanh', 'ThresholdedRelu', 'Trilu',
];
const ELEMENTWISE = [
  'Add', 'And', 'BitShift', 'BitwiseAnd', 'BitwiseOr', 'BitwiseXor', 'Div', 'Equal', 'Greater', 'GreaterOrEqual', 'Less',
  'LessOrEqual', 'Max', 'Mean', 'Min', 'Mod', 'Mul', 'Or', 'Pow', 'PRelu', 'QLinearAdd', 'QLinearMul', 'Sub', 'Sum', 'Where', 'Xor',
];
const REDUCE = [
  'ArgMax', 'ArgMin', 'QLinearReduceMean', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean',
  'ReduceMin', 'ReduceProd', 'ReduceSum', 'ReduceSumSquare',
];

/** Shape rules by op type (the same for the default domain and com.microsoft's quantized forms). */
export const RULES: Record<string, Rule> = {
  ...Object.fromEntries(SAME_AS_INPUT.map((op) => [op, sameAsInput])),
  ...Object.fromEntries(ELEMENTWISE.map((op) => [op, elementwise])),
  ...Object.fromEntries(REDUCE.map((op) => [op, reduce])),
  Conv: conv(0, 1),
  FusedConv: conv(0, 1),
  ConvInteger: conv(0, 1),
  QLinearConv: conv(0, 3),
  ConvTranspose: convTranspose,
  MaxPool: pool,
  AveragePool: pool,
  LpPool: pool,
  QLinearAveragePool: pool,
  GlobalAveragePool: globalPool,
  GlobalMaxPool: globalPool,
  GlobalLpPool: globalPool,
  QLinearGlobalAveragePool: globalPool,
  MatMul: (n, g) => [matmulShape(g.shape(n, 0), g.shape(n, 1))],
  MatMulInteger: (n, g) => [matmulShape(g.shape(n, 0), g.shape(n, 1))],
  FusedMatMul: (n, g) => [matmulShape(g.shape(n, 0), g.shape(n, 1))],
  QLinearMatMul: (n, g) => [matmulShape(g.shape(n, 0), g.shape(n, 3))],
  Gemm: gemm,
  FusedGemm: gemm,
  Reshape: reshape,
  Flatten: flatten,
  Transpose: transpose,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Concat: concat,
  QLinearConcat: concat,
  Slice: slice,
  Gather: gather,
  GatherElements: (n, g) => [g.shape(n, 1)],
  Split: split,
  Shape: shapeOf,
  Size: (n, g) => {
    const x = g.shape(n, 0);
    if (x) g.values.set(n.outputs[0]!, [prod(x)]);
    return [[]];
  },
  Constant: constant,
  ConstantOfShape: constantOfShape,
  Expand: expand,
  Tile: tile,
  Range: range,
  Resize: resize,
  Upsample: resize,
  Pad: pad,
  DepthToSpace: depthSpace,
  SpaceToDepth: depthSpace,
  OneHot: oneHot,
  RandomNormal: randomShape,
  RandomUniform: randomShape,
  TopK: topK,
};

