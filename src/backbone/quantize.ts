/**
 * Static int8 post-training quantization of the backbone graphs, in the QDQ form ONNX Runtime fuses
 * into integer kernels: every activation that feeds a Conv, an Add or a MaxPool (and every feature
 * output) goes through QuantizeLinear → DequantizeLinear with a calibrated uint8 range; every Conv
 * weight is a per-output-channel symmetric int8 tensor behind a DequantizeLinear (axis 0), and every
 * bias an int32 tensor with scale input-scale × weight-scale. ORT's graph optimiser then turns
 * DQ → Conv → Q into QLinearConv, DQ → Add → Q into QLinearAdd, folds a Relu into the Q after it
 * (zero point 0 saturates exactly like the Relu) and runs MaxPool on uint8.
 *
 * uint8 activations with int8 weights (u8s8) is the combination ORT's x86 kernels are built for.
 * The rewrite is deterministic: the same float graph and ranges always give the same bytes.
 */
import { z } from 'zod';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { PartscanError } from '../errors.js';
import { decodeModel, floatInitializer, makeNode, OnnxDataType } from '../onnx/graph.js';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** Numeric precision of the backbone a model runs. */
export type BackbonePrecision = 'fp32' | 'int8';

/** Zod schema of {@link BackbonePrecision}. */
export const backbonePrecisionSchema = z.enum(['fp32', 'int8']);

/**
 * Checks a precision option (from code or the CLI); undefined gives the default 'fp32'.
 * @throws PartscanError 'OPTIONS' naming the field.
 */
export function validatePrecision(value: unknown, field = 'precision'): BackbonePrecision {
  const parsed = backbonePrecisionSchema.optional().safeParse(value);
  if (!parsed.success) {
    throw new PartscanError('OPTIONS', `${field} must be 'fp32' or 'int8', got ${JSON.stringify(value)}.`, {
      remedy: `pass ${field}: 'fp32' (default) or 'int8'`,
    });
  }
  return parsed.data ?? 'fp32';
}

const DT = OnnxDataType;

/** Largest int8 weight magnitude: symmetric [-127, 127] keeps zero exact and the range balanced. */
const INT8_MAX = 127;

/** Ops whose output keeps its input's quantization (ORT runs them on uint8 between a DQ and a Q). */
const SCALE_PRESERVING = new Set(['MaxPool']);

/** Ops the quantizer understands; anything else in the graph is refused. */
const SUPPORTED_OPS = new Set(['Conv', 'Relu', 'Add', 'MaxPool']);

/** Rounds half to even, as ONNX QuantizeLinear does. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Per-output-channel symmetric int8 weights: q = round(w / scale[c]), scale[c] = max|w[c]| / 127. */
export interface ChannelQuantizedWeights {
  /** Quantized values, same layout as the float weights. */
  q: Int8Array;
  /** One scale per output channel (float32 values). */
  scales: Float32Array;
}

/**
 * Quantizes `[outC, ...]` row-major weights per output channel, symmetrically to [-127, 127]. An
 * all-zero (or below 1e-30) channel gets scale 1. |w − q·scale| ≤ scale/2.
 */
export function quantizeWeightsPerChannel(weight: Float32Array, outC: number): ChannelQuantizedWeights {
  if (!(Number.isInteger(outC) && outC > 0) || weight.length % outC !== 0) {
    throw new RangeError(`quantizeWeightsPerChannel: ${weight.length} weights do not split into ${outC} channels`);
  }
  const per = weight.length / outC;
  const q = new Int8Array(weight.length);
  const scales = new Float32Array(outC);
  for (let c = 0; c < outC; c++) {
    let m = 0;
    for (let i = c * per; i < (c + 1) * per; i++) m = Math.max(m, Math.abs(weight[i]!));
    // Below ~1e-30 the step would be subnormal (imprecise): such a channel is zero for every purpose.
    const s = Math.fround(m > 1e-30 ? m / INT8_MAX : 1);
    scales[c] = s;
    for (let i = c * per; i < (c + 1) * per; i++) q[i] = Math.max(-INT8_MAX, Math.min(INT8_MAX, roundHalfEven(weight[i]! / s)));
  }
  return { q, scales };
}

/** Affine uint8 parameters of one activation tensor: x ≈ (q − zeroPoint) · scale. */
export interface ActivationQParams {
  /** Step (float32 value). */
  scale: number;
  /** uint8 zero point; 0 for a range starting at 0 (e.g. after a Relu). */
  zeroPoint: number;
}

/** Calibrated value range of one activation tensor. */
export interface ActivationRange {
  /** Lower end. */
  min: number;
  /** Upper end. */
  max: number;
}

/**
 * uint8 parameters covering [min, max] widened to include 0 (zero must be exact: it is the padding
 * value of the convolutions and the Relu floor).
 */
export function activationQParams(range: ActivationRange): ActivationQParams {
  if (!Number.isFinite(range.min) || !Number.isFinite(range.max) || range.min > range.max) {
    throw new RangeError(`activation range [${range.min}, ${range.max}] is not a finite interval`);
  }
  const lo = Math.min(range.min, 0);
  let hi = Math.max(range.max, 0);
  if (hi - lo < 1e-8) hi = lo + 1e-8;
  const scale = Math.fround((hi - lo) / 255);
  const zeroPoint = Math.max(0, Math.min(255, roundHalfEven(-lo / scale)));
  return { scale, zeroPoint };
}

type Graph = OnnxTypes.IGraphProto;
type Node = OnnxTypes.INodeProto;

function unsupported(what: string): PartscanError {
  return new PartscanError('ONNX_FORMAT', `The int8 quantizer cannot handle this backbone graph: ${what}.`, {
    remedy: 'use --precision fp32, or one of the registry ResNets (resnet18, resnet50, wide_resnet50_2, resnet50-random)',
  });
}

function graphOf(model: OnnxTypes.ModelProto): Graph {
  const g = model.graph;
  if (!g || !g.node) throw unsupported('the model has no graph');
  for (const n of g.node) if (!SUPPORTED_OPS.has(n.opType ?? '') || (n.domain ?? '') !== '') throw unsupported(`operator ${n.opType} (${n.name})`);
  return g;
}

/** Where each activation tensor to quantize takes its parameters from. */
interface QuantPlan {
  /** Tensors with their own calibrated range, in graph order. */
  calibrated: string[];
  /** Tensors that reuse another tensor's parameters (MaxPool output → its input). */
  inherits: Map<string, string>;
  /** All quantized tensors, in graph order. */
  all: string[];
}

function plan(g: Graph): QuantPlan {
  const want = new Set<string>();
  for (const n of g.node!) {
    const ins = n.input ?? [];
    if (n.opType === 'Conv') want.add(ins[0]!);
    else if (n.opType === 'Add' || n.opType === 'MaxPool') ins.forEach((i) => want.add(i));
  }
  for (const o of g.output ?? []) want.add(o.name!);
  const producer = new Map<string, Node>();
  for (const n of g.node!) for (const o of n.output ?? []) producer.set(o, n);
  const order: string[] = [];
  for (const i of g.input ?? []) if (want.has(i.name!)) order.push(i.name!);
  for (const n of g.node!) for (const o of n.output ?? []) if (want.has(o)) order.push(o);
  const inherits = new Map<string, string>();
  const calibrated: string[] = [];
  for (const t of order) {
    const p = producer.get(t);
    if (p && SCALE_PRESERVING.has(p.opType!)) {
      let src = p.input![0]!;
      src = inherits.get(src) ?? src;
      if (!want.has(src)) throw unsupported(`the input of ${p.name} is not quantized`);
      inherits.set(t, src);
    } else calibrated.push(t);
  }
  return { calibrated, inherits, all: order };
}

/**
 * The activation tensors whose ranges the quantizer needs, in graph order (graph input first).
 * Throws 'ONNX_FORMAT' for graphs with operators other than Conv / Relu / Add / MaxPool.
 */
export function calibrationTensors(fp32Onnx: Uint8Array): string[] {
  return plan(graphOf(decodeModel(fp32Onnx))).calibrated;
}

function tensor(name: string, dataType: number, dims: number[], bytes: Uint8Array): OnnxTypes.ITensorProto {
  return { name, dims, dataType, rawData: bytes };
}

function int32Bytes(values: Int32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setInt32(i * 4, v, true));
  return out;
}

function floatsOf(t: OnnxTypes.ITensorProto): Float32Array {
  if (t.dataType !== DT.FLOAT) throw unsupported(`initializer ${t.name} is not float32`);
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData;
    const out = new Float32Array(raw.length / 4);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
    return out;
  }
  return Float32Array.from(t.floatData ?? []);
}

/** Metadata key recording the quantization in the graph. */
export const QUANT_METADATA_KEY = 'partscan.precision';

/**
 * Rewrites a float Conv / Relu / Add / MaxPool graph into QDQ int8 form with the given activation
 * ranges (one per {@link calibrationTensors} entry). Graph inputs and outputs keep their names and
 * float32 type: callers see no difference except the values.
 * Throws 'ONNX_FORMAT' for unsupported graphs, 'OPTIONS' when a range is missing or not finite.
 */
export function quantizeGraphQdq(fp32Onnx: Uint8Array, ranges: ReadonlyMap<string, ActivationRange>): Uint8Array {
  const model = decodeModel(fp32Onnx);
  const g = graphOf(model);
  const p = plan(g);
  const params = new Map<string, ActivationQParams>();
  for (const t of p.calibrated) {
    const r = ranges.get(t);
    if (!r || !Number.isFinite(r.min) || !Number.isFinite(r.max) || r.min > r.max) {
      throw new PartscanError('OPTIONS', `No valid calibration range for tensor "${t}" (${r ? `[${r.min}, ${r.max}]` : 'missing'}).`, {
        remedy: 'calibrate on good images whose preprocessing gives finite values',
      });
    }
    params.set(t, activationQParams(r));
  }
  for (const [t, src] of p.inherits) params.set(t, params.get(src)!);

  const inits = new Map<string, OnnxTypes.ITensorProto>();
  for (const t of g.initializer ?? []) inits.set(t.name!, t);
  const newInits: OnnxTypes.ITensorProto[] = [];
  const usedInits = new Set<string>();
  const nodes: Node[] = [];
  const graphInputs = new Set((g.input ?? []).map((i) => i.name!));
  /** Float tensor a consumer reads instead of a quantized graph input. */
  const rewire = new Map<string, string>();

  const qdq = (t: string, floatName: string, outName: string): void => {
    const qp = params.get(t)!;
    newInits.push(floatInitializer(`${t}/scale`, [], Float32Array.of(qp.scale)));
    newInits.push(tensor(`${t}/zero_point`, DT.UINT8, [], Uint8Array.of(qp.zeroPoint)));
    nodes.push(makeNode('QuantizeLinear', [floatName, `${t}/scale`, `${t}/zero_point`], [`${t}/q`], `${t}/QuantizeLinear`));
    nodes.push(makeNode('DequantizeLinear', [`${t}/q`, `${t}/scale`, `${t}/zero_point`], [outName], `${t}/DequantizeLinear`));
  };
  const quantized = new Set(p.all);
  for (const t of p.all) {
    if (graphInputs.has(t)) {
      qdq(t, t, `${t}/dq`);
      rewire.set(t, `${t}/dq`);
    }
  }
  for (const n of g.node!) {
    const inputs = (n.input ?? []).map((i) => rewire.get(i) ?? i);
    if (n.opType === 'Conv') {
      const [x, w, b] = n.input as string[];
      const xq = params.get(x!);
      const wt = inits.get(w!);
      if (!xq || !wt || !wt.dims || wt.dims.length !== 4) throw unsupported(`Conv ${n.name} needs a quantized input and a 4-D weight initializer`);
      const outC = Number(wt.dims[0]);
      const { q, scales } = quantizeWeightsPerChannel(floatsOf(wt), outC);
      usedInits.add(w!);
      newInits.push(tensor(`${w}/q`, DT.INT8, wt.dims.map(Number), new Uint8Array(q.buffer)));
      newInits.push(floatInitializer(`${w}/scale`, [outC], scales));
      newInits.push(tensor(`${w}/zero_point`, DT.INT8, [outC], new Uint8Array(outC)));
      nodes.push(makeNode('DequantizeLinear', [`${w}/q`, `${w}/scale`, `${w}/zero_point`], [w!], `${w}/DequantizeLinear`, { axis: 0 }));
      if (b) {
        const bt = inits.get(b);
        if (!bt) throw unsupported(`the bias of Conv ${n.name} is not an initializer`);
        const bias = floatsOf(bt);
        if (bias.length !== outC) throw unsupported(`the bias of Conv ${n.name} has ${bias.length} values for ${outC} channels`);
        const bScales = new Float32Array(outC);
        const bq = new Int32Array(outC);
        for (let c = 0; c < outC; c++) {
          bScales[c] = Math.fround(Math.fround(xq.scale) * scales[c]!);
          bq[c] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, roundHalfEven(bias[c]! / bScales[c]!)));
        }
        usedInits.add(b);
        newInits.push(tensor(`${b}/q`, DT.INT32, [outC], int32Bytes(bq)));
        newInits.push(floatInitializer(`${b}/scale`, [outC], bScales));
        newInits.push(tensor(`${b}/zero_point`, DT.INT32, [outC], new Uint8Array(outC * 4)));
        nodes.push(makeNode('DequantizeLinear', [`${b}/q`, `${b}/scale`, `${b}/zero_point`], [b], `${b}/DequantizeLinear`, { axis: 0 }));
      }
    }
    const outputs = (n.output ?? []).map((o) => (quantized.has(o) ? `${o}/f32` : o));
    nodes.push({ ...n, input: inputs, output: outputs });
    for (const o of n.output ?? []) if (quantized.has(o)) qdq(o, `${o}/f32`, o);
  }
  const kept = (g.initializer ?? []).filter((t) => !usedInits.has(t.name!));
  const out = onnx.ModelProto.create({
    ...model,
    graph: { ...g, node: nodes, initializer: [...kept, ...newInits], valueInfo: [] },
    metadataProps: [...(model.metadataProps ?? []).filter((m) => m.key !== QUANT_METADATA_KEY), { key: QUANT_METADATA_KEY, value: 'int8-qdq-u8s8' }],
  });
  return onnx.ModelProto.encode(out).finish();
}
