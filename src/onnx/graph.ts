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

/** A float attribute value (plain numbers are taken as ints, which most attributes are). */
export interface FloatAttribute {
  /** The value. */
  float: number;
}

/** A node attribute value: an int, a float, a list of ints, or a string. */
export type OnnxAttributeValue = number | number[] | string | FloatAttribute;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

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
