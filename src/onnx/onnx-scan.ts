/**
 * A read-only scan of an ONNX model's protobuf bytes, for inspecting untrusted graphs before ONNX
 * Runtime sees them (graph-inspect.ts). It walks the wire format directly instead of decoding with
 * protobufjs: tensor data is never copied (a 100 MB ResNet scans in milliseconds, and a hostile length
 * cannot make it allocate), and it keeps only what the inspection needs — the opsets, each node's op,
 * domain, inputs, outputs and attributes, each initializer's dims and type (values only when small),
 * where data lives (external or not), the graph inputs' shapes, and whether sub-graphs appear anywhere.
 * Malformed bytes throw a RangeError, which the inspection turns into a typed ONNX_FORMAT error.
 */

/** Values kept for tensors with at most this many elements (shape arithmetic, sizes, scales). */
export const SMALL_TENSOR_ELEMENTS = 64;

/** A tensor (initializer or attribute value) as scanned. */
export interface ScannedTensor {
  name: string;
  dims: number[];
  dataType: number;
  /** Data stored outside the model bytes (data_location EXTERNAL or external_data entries). */
  external: boolean;
  /** Element values, for numeric tensors of at most {@link SMALL_TENSOR_ELEMENTS} elements. */
  values?: number[];
}

/** A node attribute as scanned. */
export interface ScannedAttribute {
  name: string;
  i?: number;
  f?: number;
  s?: string;
  ints?: number[];
  floats?: number[];
  t?: ScannedTensor;
  /** A graph-valued attribute (g, graphs): a sub-graph. */
  graph?: boolean;
}

/** A node as scanned. */
export interface ScannedNode {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, ScannedAttribute>;
}

/** A graph input: name and dims (a number, or undefined for a symbolic or missing dim); rank unknown: dims undefined. */
export interface ScannedInput {
  name: string;
  dims?: (number | undefined)[];
}

/** What the scan found in a model. */
export interface ScannedModel {
  opsets: Map<string, number>;
  nodes: ScannedNode[];
  initializers: Map<string, ScannedTensor>;
  inputs: ScannedInput[];
  /** Model parts that hold graphs or code of their own: sub-graph attributes, training info, local functions, sparse initializers. */
  nested: string[];
}

const UTF8 = new TextDecoder();

/** A cursor over protobuf wire-format bytes. */
class Wire {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  private byte(): number {
    if (this.pos >= this.end) throw new RangeError('truncated varint');
    return this.buf[this.pos++]!;
  }

  /** A varint as an int64 (negative values are 10-byte two's complement), exact up to 2^53. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      const b = this.byte();
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    let big = BigInt(result);
    for (let shift = 49n; shift < 70n; shift += 7n) {
      const b = this.byte();
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return Number(BigInt.asIntN(64, big));
    }
    throw new RangeError('varint longer than 10 bytes');
  }

  /** A field key: [field number, wire type]. */
  key(): [number, number] {
    const k = this.varint();
    return [Math.floor(k / 8), k & 7];
  }

  /** A length-delimited field's [start, end). */
  span(): [number, number] {
    const len = this.varint();
    if (len < 0 || this.pos + len > this.end) throw new RangeError('length-delimited field runs past its message');
    const s = this.pos;
    this.pos += len;
    return [s, this.pos];
  }

  string(): string {
    const [s, e] = this.span();
    return UTF8.decode(this.buf.subarray(s, e));
  }

  fixed32(): DataView {
    if (this.pos + 4 > this.end) throw new RangeError('truncated fixed32');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4);
    this.pos += 4;
    return v;
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.span();
    else if (wireType === 5) this.pos += 4;
    else throw new RangeError(`unsupported wire type ${wireType}`);
    if (this.pos > this.end) throw new RangeError('field runs past its message');
  }

  /** Repeated varints, packed or not. */
  varints(wireType: number, out: number[]): void {
    if (wireType === 0) out.push(this.varint());
    else {
      const [s, e] = this.span();
      const w = new Wire(this.buf, s, e);
      while (!w.done) out.push(w.varint());
    }
  }

  /** Repeated float32s, packed or not. */
  floats(wireType: number, out: number[]): void {
    if (wireType === 5) out.push(this.fixed32().getFloat32(0, true));
    else {
      const [s, e] = this.span();
      for (let p = s; p + 4 <= e; p += 4) out.push(new DataView(this.buf.buffer, this.buf.byteOffset + p, 4).getFloat32(0, true));
    }
  }
}

/** Scans a model's bytes (see the module comment). */
export function scanOnnxModel(bytes: Uint8Array): ScannedModel {
  const model: ScannedModel = { opsets: new Map(), nodes: [], initializers: new Map(), inputs: [], nested: [] };
  const w = new Wire(bytes);
  while (!w.done) {
    const [field, type] = w.key();
    if (field === 7 && type === 2) scanGraph(w, ...w.span(), model);
    else if (field === 8 && type === 2) {
      const [s, e] = w.span();
      const o = new Wire(bytes, s, e);
      let domain = '';
      let version = 0;
      while (!o.done) {
        const [f, t] = o.key();
        if (f === 1 && t === 2) domain = o.string();
        else if (f === 2 && t === 0) version = o.varint();
        else o.skip(t);
      }
      model.opsets.set(domain === 'ai.onnx' ? '' : domain, version);
    } else if (field === 20 && type === 2) (model.nested.push('training info'), w.skip(type));
    else if (field === 25 && type === 2) (model.nested.push('a model-local function'), w.skip(type));
    else w.skip(type);
  }
  return model;
}

function scanGraph(parent: Wire, start: number, end: number, model: ScannedModel): void {
  const w = new Wire(parent.buf, start, end);
  while (!w.done) {
    const [field, type] = w.key();
    if (field === 1 && type === 2) model.nodes.push(scanNode(w, ...w.span(), model));
    else if (field === 5 && type === 2) {
      const t = scanTensor(w, ...w.span());
      model.initializers.set(t.name, t);
    } else if (field === 11 && type === 2) model.inputs.push(scanValueInfo(w, ...w.span()));
    else if (field === 15 && type === 2) (model.nested.push('a sparse initializer'), w.skip(type));
    else w.skip(type);
  }
}

function scanNode(parent: Wire, start: number, end: number, model: ScannedModel): ScannedNode {
  const w = new Wire(parent.buf, start, end);
  const node: ScannedNode = { opType: '', domain: '', inputs: [], outputs: [], attributes: new Map() };
  while (!w.done) {
    const [field, type] = w.key();
    if (field === 1 && type === 2) node.inputs.push(w.string());
    else if (field === 2 && type === 2) node.outputs.push(w.string());
    else if (field === 4 && type === 2) node.opType = w.string();
    else if (field === 7 && type === 2) node.domain = w.string();
    else if (field === 5 && type === 2) {
      const a = scanAttribute(w, ...w.span());
      if (a.graph) model.nested.push(`a sub-graph (attribute "${a.name}" of ${node.opType || 'a node'})`);
      node.attributes.set(a.name, a);
    } else w.skip(type);
  }
  if (node.domain === 'ai.onnx') node.domain = '';
  return node;
}

function scanAttribute(parent: Wire, start: number, end: number): ScannedAttribute {
  const w = new Wire(parent.buf, start, end);
  const a: ScannedAttribute = { name: '' };
  while (!w.done) {
    const [field, type] = w.key();
    if (field === 1 && type === 2) a.name = w.string();
    else if (field === 2 && type === 5) a.f = w.fixed32().getFloat32(0, true);
    else if (field === 3 && type === 0) a.i = w.varint();
    else if (field === 4 && type === 2) a.s = w.string();
    else if (field === 5 && type === 2) a.t = scanTensor(w, ...w.span());
    else if ((field === 6 || field === 11) && type === 2) (a.graph = true, w.skip(type));
    else if (field === 7) w.floats(type, (a.floats ??= []));
    else if (field === 8) w.varints(type, (a.ints ??= []));
    else w.skip(type);
  }
  return a;
}

/** Element sizes of the numeric types whose raw data the scan decodes. */
const RAW_READERS: Record<number, [number, (v: DataView) => number]> = {
  1: [4, (v) => v.getFloat32(0, true)],
  2: [1, (v) => v.getUint8(0)],
  3: [1, (v) => v.getInt8(0)],
  6: [4, (v) => v.getInt32(0, true)],
  7: [8, (v) => Number(v.getBigInt64(0, true))],
  9: [1, (v) => v.getUint8(0)],
  11: [8, (v) => v.getFloat64(0, true)],
};

function scanTensor(parent: Wire, start: number, end: number): ScannedTensor {
  const w = new Wire(parent.buf, start, end);
  const t: ScannedTensor = { name: '', dims: [], dataType: 0, external: false };
  const typed: number[] = [];
  let raw: [number, number] | undefined;
  while (!w.done) {
    const [field, type] = w.key();
    if (field === 1) w.varints(type, t.dims);
    else if (field === 2 && type === 0) t.dataType = w.varint();
    else if (field === 8 && type === 2) t.name = w.string();
    else if (field === 9 && type === 2) raw = w.span();
    else if ((field === 5 || field === 7) && typed.length <= SMALL_TENSOR_ELEMENTS) w.varints(type, typed);
    else if (field === 4 && typed.length <= SMALL_TENSOR_ELEMENTS) w.floats(type, typed);
    else if (field === 13 && type === 2) (t.external = true, w.skip(type));
    else if (field === 14 && type === 0) t.external = w.varint() === 1 || t.external;
    else w.skip(type);
  }
  const elements = t.dims.reduce((a, b) => a * b, 1);
  if (elements <= SMALL_TENSOR_ELEMENTS) {
    const reader = RAW_READERS[t.dataType];
    if (raw && reader && raw[1] - raw[0] === elements * reader[0]) {
      t.values = Array.from({ length: elements }, (_, i) => reader[1](new DataView(w.buf.buffer, w.buf.byteOffset + raw![0] + i * reader[0], reader[0])));
    } else if (!raw && typed.length === elements) t.values = typed;
  }
  return t;
}

function scanValueInfo(parent: Wire, start: number, end: number): ScannedInput {
  const w = new Wire(parent.buf, start, end);
  const input: ScannedInput = { name: '' };
  // ValueInfoProto.type (2) → TypeProto.tensor_type (1) → Tensor.shape (2) → TensorShapeProto.dim (1).
  const descend = (s: number, e: number, path: number[], onLeaf: (w: Wire, s: number, e: number) => void) => {
    const c = new Wire(w.buf, s, e);
    while (!c.done) {
      const [field, type] = c.key();
      if (field === path[0] && type === 2) {
        const [a, b] = c.span();
        if (path.length === 1) onLeaf(c, a, b);
        else descend(a, b, path.slice(1), onLeaf);
      } else c.skip(type);
    }
  };
  while (!w.done) {
    const [field, type] = w.key();
    if (field === 1 && type === 2) input.name = w.string();
    else if (field === 2 && type === 2) {
      const [s, e] = w.span();
      input.dims = [];
      let shaped = false;
      descend(s, e, [1, 2], () => (shaped = true));
      descend(s, e, [1, 2, 1], (c, a, b) => {
        const d = new Wire(c.buf, a, b);
        let value: number | undefined;
        while (!d.done) {
          const [f, t] = d.key();
          if (f === 1 && t === 0) value = d.varint();
          else d.skip(t);
        }
        input.dims!.push(value !== undefined && value > 0 ? value : undefined);
      });
      if (!shaped) delete input.dims;
    } else w.skip(type);
  }
  return input;
}
