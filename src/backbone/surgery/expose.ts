/**
 * Exposing intermediate tensors: rewires a graph so that the requested tensors are its outputs, as
 * float32 (DequantizeLinear for quantized activations, Cast for other float types), pruned to what
 * they need.
 */
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

import { PartscanError } from '../../errors.js';
import { MS_DOMAIN, OnnxDataType as ELEM } from '../../onnx/graph.js';
import { CASTABLE_FLOAT, decodeModel, EIGHT_BIT, elemName, GraphIndex, notFound, OTHER_QUANT, sourceOf, toNumber, type QuantParams } from './graph-index.js';
import type { OnnxSurgeryOptions } from './types.js';

const { onnx } = onnxProto;

type ModelProto = OnnxTypes.ModelProto;
type GraphProto = OnnxTypes.IGraphProto;
type NodeProto = OnnxTypes.INodeProto;
type ValueInfoProto = OnnxTypes.IValueInfoProto;

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
export function rewireOutputs(index: GraphIndex, names: string[], mode: 'float' | 'raw', keepInputShape: boolean): ModelProto {
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

/** Implementation of `exposeIntermediateOutputs` (the public face, with its documentation, is backbone/onnx-surgery.ts). */
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

/** Implementation of `onnxImageInputName` (the public face, with its documentation, is backbone/onnx-surgery.ts). */
export function onnxImageInputName(model: Uint8Array, opts?: Pick<OnnxSurgeryOptions, 'source'>): string {
  const source = sourceOf(opts);
  return imageInput(decodeModel(model, source), source).name!;
}

export function imageInput(model: ModelProto, source: string): ValueInfoProto {
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
