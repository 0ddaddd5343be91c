/**
 * The one ONNX graph builder: the opset / IR version partscan emits, element type codes, float and
 * int64 initializers, nodes with typed attributes, value infos with symbolic dimensions, and the model
 * envelope. Every graph partscan builds (backbone, scoring graph, statistics kernels, map
 * post-processing) is assembled with these helpers, so the envelope and the constants have one home.
 * Everything is emitted in the order given, so the same calls always encode to the same bytes (the
 * builders rely on that for cache keys and reproducible exports).
 */
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import type { GraphSink, OnnxAttributeValue } from './graph-sink.js';
export type { FloatAttribute, GraphSink, OnnxAttributeValue } from './graph-sink.js';

const { onnx } = onnxProto;

/**
 * Default-domain opset of every graph partscan builds (the ONNX export raises it to the backbone's own
 * opset when that is newer); one constant so the backbone, the kernels and the export cannot drift apart.
 */
export const ONNX_OPSET = 17;
/** IR version written with {@link ONNX_OPSET} (IR 8 goes with opset 17). */
export const ONNX_IR_VERSION = 8;
/** producer_name of every model partscan writes. */
export const ONNX_PRODUCER = 'partscan';
/** Domain of ONNX Runtime's contrib operators (Inverse, quantized ops). */
export const MS_DOMAIN = 'com.microsoft';

/** ONNX element type codes (TensorProto.DataType), by name. */
export const OnnxDataType = {
  /** Unset. */
  UNDEFINED: 0,
  /** float32. */
  FLOAT: 1,
  /** uint8. */
  UINT8: 2,
  /** int8. */
  INT8: 3,
  /** uint16. */
  UINT16: 4,
  /** int16. */
  INT16: 5,
  /** int32. */
  INT32: 6,
  /** int64. */
  INT64: 7,
  /** bool. */
  BOOL: 9,
  /** float16. */
  FLOAT16: 10,
  /** float64. */
  DOUBLE: 11,
  /** bfloat16. */
  BFLOAT16: 16,
  /** 4-bit unsigned. */
  UINT4: 21,
  /** 4-bit signed. */
  INT4: 22,
} as const;

/** Lower-case ONNX names of every element type code, for messages and tensor listings. */
export const ONNX_TYPE_NAMES: Readonly<Record<number, string>> = {
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

/** Whether this machine stores numbers little-endian (as ONNX raw data is). */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Raw little-endian bytes of a typed array (ONNX raw_data is always little-endian); a view when the host is. */
export function littleEndianBytes(data: Float32Array | BigInt64Array): Uint8Array {
  if (LITTLE_ENDIAN_HOST) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  if (data instanceof Float32Array) for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
  else for (let i = 0; i < data.length; i++) view.setBigInt64(i * 8, data[i]!, true);
  return out;
}

/** A float32 initializer stored as raw little-endian bytes (compact, and fast for ORT to load). */
export function floatInitializer(name: string, dims: number[], data: Float32Array): OnnxTypes.ITensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new RangeError(`initializer ${name}: dims [${dims.join(', ')}] need ${n} values, got ${data.length}`);
  return { name, dims, dataType: OnnxDataType.FLOAT, rawData: littleEndianBytes(data) };
}

/** An int64 initializer (shapes, axes). */
export function int64Initializer(name: string, dims: number[], values: readonly number[]): OnnxTypes.ITensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  if (n !== values.length) throw new RangeError(`initializer ${name}: dims [${dims.join(', ')}] need ${n} values, got ${values.length}`);
  return { name, dims, dataType: OnnxDataType.INT64, rawData: littleEndianBytes(BigInt64Array.from(values, (v) => BigInt(v))) };
}

function attribute(name: string, value: OnnxAttributeValue): OnnxTypes.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError(`attribute ${name}: use {float: x} for float attributes`);
    return { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  return { name, type: T.FLOAT, f: value.float };
}

/** A {@link GraphSink} that collects inline initializers and nodes (named `<op>_<serial>`) for a small kernel graph. */
export function collectingSink(): { sink: GraphSink; nodes: OnnxTypes.INodeProto[]; initializers: OnnxTypes.ITensorProto[] } {
  const nodes: OnnxTypes.INodeProto[] = [];
  const initializers: OnnxTypes.ITensorProto[] = [];
  let serial = 0;
  const sink: GraphSink = {
    float: (name, dims, data) => void initializers.push(floatInitializer(name, dims, data)),
    int64: (name, dims, values) => void initializers.push(int64Initializer(name, dims, values)),
    node: (op, inputs, outputs, attrs = {}) => void nodes.push(makeNode(op, inputs, outputs, `${op}_${serial++}`, attrs)),
  };
  return { sink, nodes, initializers };
}

/** A node; attributes are emitted in the object's key order. */
export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attributes: Record<string, OnnxAttributeValue> = {},
): OnnxTypes.INodeProto {
  return {
    opType,
    input: inputs,
    output: outputs,
    name,
    attribute: Object.entries(attributes).map(([k, v]) => attribute(k, v)),
  };
}

/** A tensor value info; a string dimension is symbolic (dim_param), a number fixed (dim_value). */
export function tensorValueInfo(name: string, elemType: number, dims: (number | string)[]): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/**
 * The fields of a ModelProto around a graph; producer_name is always {@link ONNX_PRODUCER}. Absent
 * optional fields stay absent from the encoding (an empty doc string is not written), so callers that
 * differ only in what they record keep their exact bytes.
 */
export interface ModelEnvelope {
  /** The graph. */
  graph: OnnxTypes.IGraphProto;
  /** Operator set imports (default: the default domain at {@link ONNX_OPSET}). */
  opsetImport?: OnnxTypes.IOperatorSetIdProto[];
  /** IR version (default {@link ONNX_IR_VERSION}). */
  irVersion?: number;
  /** Producer version string. */
  producerVersion?: string;
  /** Model doc string. */
  docString?: string;
  /** metadata_props entries, in order. */
  metadataProps?: OnnxTypes.IStringStringEntryProto[];
  /** Model-local functions (kept from a backbone graph that has them). */
  functions?: OnnxTypes.IFunctionProto[];
}

/** The one ModelProto envelope every graph partscan builds is wrapped in. */
export function modelProto(e: ModelEnvelope): OnnxTypes.ModelProto {
  return onnx.ModelProto.create({
    irVersion: e.irVersion ?? ONNX_IR_VERSION,
    producerName: ONNX_PRODUCER,
    ...(e.producerVersion !== undefined ? { producerVersion: e.producerVersion } : {}),
    ...(e.docString !== undefined ? { docString: e.docString } : {}),
    opsetImport: e.opsetImport ?? [{ domain: '', version: ONNX_OPSET }],
    ...(e.metadataProps !== undefined ? { metadataProps: e.metadataProps } : {}),
    graph: e.graph,
    ...(e.functions !== undefined ? { functions: e.functions } : {}),
  });
}

/** What {@link encodeModel} needs. */
export interface OnnxModelParts {
  /** Graph name. */
  graphName: string;
  /** Nodes in topological order. */
  nodes: OnnxTypes.INodeProto[];
  /** Constant tensors. */
  initializers: OnnxTypes.ITensorProto[];
  /** Graph inputs (without the initializers). */
  inputs: OnnxTypes.IValueInfoProto[];
  /** Graph outputs. */
  outputs: OnnxTypes.IValueInfoProto[];
  /** Default-domain opset (e.g. 17). */
  opset: number;
  /** IR version (e.g. 8). */
  irVersion: number;
  /** Producer version string, recorded in the model. */
  producerVersion: string;
  /** Free-form description. */
  docString?: string;
  /** metadata_props entries, in order. */
  metadata?: [string, string][];
}

/** Encodes a model to ONNX protobuf bytes. */
export function encodeModel(parts: OnnxModelParts): Uint8Array {
  const model = modelProto({
    irVersion: parts.irVersion,
    producerVersion: parts.producerVersion,
    docString: parts.docString ?? '',
    opsetImport: [{ domain: '', version: parts.opset }],
    metadataProps: (parts.metadata ?? []).map(([key, value]) => ({ key, value })),
    graph: {
      name: parts.graphName,
      node: parts.nodes,
      initializer: parts.initializers,
      input: parts.inputs,
      output: parts.outputs,
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Encodes a small in-process kernel graph (statistics, map post-processing) in the minimal envelope:
 * {@link ONNX_IR_VERSION}, {@link ONNX_OPSET}, plus ONNX Runtime's contrib domain when `contrib`.
 * Unlike {@link encodeModel} it records no producer version or metadata: these graphs never leave the
 * process, and their bytes stay independent of the package version.
 */
export function encodeKernelModel(graph: OnnxTypes.IGraphProto, contrib = false): Uint8Array {
  const opsetImport = [{ domain: '', version: ONNX_OPSET }];
  if (contrib) opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  return onnx.ModelProto.encode(modelProto({ opsetImport, graph })).finish();
}

/** Decodes ONNX bytes (used by tests and tools that inspect built graphs). */
export function decodeModel(bytes: Uint8Array): OnnxTypes.ModelProto {
  return onnx.ModelProto.decode(bytes);
}

/** A constant tensor whose raw little-endian bytes are produced on demand (big tensors: inverse covariances, weights). */
export interface RawTensor {
  /** The tensor without its data (name, dims, data type). */
  proto: OnnxTypes.ITensorProto;
  /** Total length of the raw data. */
  byteLength: number;
  /** The raw data, in pieces whose lengths add up to `byteLength`. */
  chunks: () => Iterable<Uint8Array>;
  /**
   * Optional: writes the raw data straight into `target` (exactly `byteLength` bytes, 4-byte aligned),
   * e.g. through a Float32Array view, saving the copy from `chunks`.
   */
  writeInto?: (target: Uint8Array) => void;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

/** Writes `n` (< 2^35) as a 5-byte varint (continuation bits on padding bytes are valid protobuf). */
function writeFixedVarint5(out: Uint8Array, at: number, n: number): number {
  for (let k = 0; k < 4; k++) {
    out[at++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

/** Protobuf key of a length-delimited field. */
const lengthDelimited = (field: number): number => (field << 3) | 2;
/** ModelProto.graph, GraphProto.initializer, TensorProto.raw_data. */
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_RAW_DATA = 9;
const TENSOR_DOC_STRING = 12;

/**
 * Bytes of a TensorProto.doc_string field that shift the raw data after it by `shift` (mod 4) bytes:
 * a field costs at least 2 bytes (key, length), so 1 → 5 bytes, 2 → 2, 3 → 3; 0 → none.
 */
function alignmentPadding(shift: number): Uint8Array {
  const total = [0, 5, 2, 3][shift % 4]!;
  if (total === 0) return new Uint8Array(0);
  const pad = new Uint8Array(total).fill(0x20);
  pad[0] = lengthDelimited(TENSOR_DOC_STRING);
  pad[1] = total - 2;
  return pad;
}

/**
 * Encodes `model` with `tensors` as extra graph initializers, writing each tensor's bytes once, straight
 * into the output. Encoding them through protobufjs would copy every big tensor twice more (into a
 * joined buffer, then into the writer), which for a scoring graph of 160 MB cost more than the session
 * that loads it. The tensors follow the model as a second occurrence of `ModelProto.graph` holding only
 * initializers: protobuf parsers merge repeated occurrences of a message field (repeated fields
 * append), so the result decodes as one graph — byte for byte what a merged encode would decode to.
 */
export function encodeModelWithRawTensors(model: OnnxTypes.IModelProto, tensors: readonly RawTensor[]): Uint8Array {
  const base = onnx.ModelProto.encode(model).finish();
  const heads = tensors.map((t) => {
    if (t.proto.rawData && t.proto.rawData.length > 0) throw new RangeError(`tensor ${t.proto.name}: its data belongs in chunks, not in proto.rawData`);
    return onnx.TensorProto.encode(t.proto).finish();
  });
  // Raw data starts 4-byte aligned where possible, so `writeInto` can fill it through a typed-array
  // view: a doc_string of filler ahead of the raw data moves it. The graph's length prefix is written
  // as a fixed 5-byte varint, so offsets do not depend on it.
  const graphStart = base.length + 1 + 5;
  const layout: { pad: Uint8Array; length: number; aligned: boolean }[] = [];
  let at = graphStart;
  tensors.forEach((t, i) => {
    const lengthWith = (pad: Uint8Array): number => heads[i]!.length + pad.length + 1 + varintLength(t.byteLength) + t.byteLength;
    const rawOffset = (pad: Uint8Array): number => at + 1 + varintLength(lengthWith(pad)) + lengthWith(pad) - t.byteLength;
    const pad = [0, 1, 2, 3].map(alignmentPadding).find((p) => rawOffset(p) % 4 === 0) ?? alignmentPadding(0);
    const length = lengthWith(pad);
    layout.push({ pad, length, aligned: rawOffset(pad) % 4 === 0 });
    at += 1 + varintLength(length) + length;
  });
  const graphLength = at - graphStart;
  const out = new Uint8Array(at);
  out.set(base, 0);
  at = base.length;
  out[at++] = lengthDelimited(MODEL_GRAPH);
  at = writeFixedVarint5(out, at, graphLength);
  tensors.forEach((t, i) => {
    const { pad, length, aligned } = layout[i]!;
    out[at++] = lengthDelimited(GRAPH_INITIALIZER);
    at = writeVarint(out, at, length);
    out.set(heads[i]!, at);
    at += heads[i]!.length;
    out.set(pad, at);
    at += pad.length;
    out[at++] = lengthDelimited(TENSOR_RAW_DATA);
    at = writeVarint(out, at, t.byteLength);
    const end = at + t.byteLength;
    if (t.writeInto && aligned) {
      t.writeInto(out.subarray(at, end));
      at = end;
    } else {
      for (const chunk of t.chunks()) {
        if (at + chunk.length > end) throw new RangeError(`tensor ${t.proto.name}: chunks exceed its ${t.byteLength} bytes`);
        out.set(chunk, at);
        at += chunk.length;
      }
    }
    if (at !== end) throw new RangeError(`tensor ${t.proto.name}: chunks hold ${t.byteLength - (end - at)} of its ${t.byteLength} bytes`);
  });
  return out;
}
