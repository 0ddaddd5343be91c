/**
 * Inspection of an untrusted ONNX graph before ONNX Runtime loads or runs it. A backbone graph is code:
 * a 2 KB file with one ConstantOfShape can make ORT allocate 8 GiB, an initializer with external data
 * makes it open a file named by the graph, and control flow or custom operators run what partscan never
 * checked. Every backbone graph — `--backbone file.onnx`, a graph embedded in a model file, the bundled
 * one, the ones partscan builds — goes through {@link inspectOnnxGraph} first, which refuses with a
 * typed 'ONNX_FORMAT' error:
 *
 * - external data (initializers or constants whose bytes live in another file);
 * - sub-graphs (If, Loop, Scan, any graph-valued attribute), training info, model-local functions and
 *   sparse initializers;
 * - operators outside the standard domain, except ONNX Runtime's quantized contrib operators
 *   ({@link CONTRIB_OPS}: what the bundled int8 MobileNetV2 and quantized graphs use);
 * - a resource budget: every tensor's shape is worked out statically (shape-inference.ts) at batch 1
 *   and the image side the graph declares (or {@link GRAPH_LIMITS.inspectionSize}); a tensor whose
 *   size cannot be worked out, one over {@link GRAPH_LIMITS.tensorElements} elements (size-producing
 *   operators — ConstantOfShape, Expand, Tile, Range, Resize, Pad… — included), or all tensors together
 *   over {@link GRAPH_LIMITS.totalElements} (scaled for larger fixed inputs) is refused; so are more
 *   than {@link GRAPH_LIMITS.nodes} nodes.
 *
 * The checks read the protobuf bytes without copying tensor data (onnx-scan.ts): milliseconds for a
 * 100 MB ResNet50.
 */

import { PartscanError } from '../errors.js';
import { scanOnnxModel, type ScannedModel, type ScannedNode } from './onnx-scan.js';
import { inferShapes } from './shape-inference.js';

/** The budget (see the module comment). */
export const GRAPH_LIMITS = {
  /** Image side the shapes are worked out at, where the graph leaves it symbolic. */
  inspectionSize: 224,
  /** Elements of one tensor at batch 1: 64 Mi (256 MiB as float32; ResNet50's largest at 224 px is 0.8 Mi). */
  tensorElements: 2 ** 26,
  /**
   * Elements of all tensors together at batch 1 and 224 px: 256 Mi (ResNet50: about 25 Mi). A graph that
   * declares a larger fixed input side gets this budget scaled by its area, up to 2 Gi.
   */
  totalElements: 2 ** 28,
  /** Nodes in the graph. */
  nodes: 100_000,
} as const;

/**
 * ONNX Runtime's com.microsoft operators a backbone may use: the quantized (QLinear) forms, QDQ ops,
 * and the fusions ORT writes into optimised graphs. The bundled MobileNetV2 uses QLinearAdd and
 * QLinearGlobalAveragePool; graph surgery adds DequantizeLinear for 16- and 4-bit tensors.
 */
export const CONTRIB_OPS: ReadonlySet<string> = new Set([
  'QLinearAdd', 'QLinearMul', 'QLinearConv', 'QLinearMatMul', 'QLinearConcat', 'QLinearAveragePool', 'QLinearGlobalAveragePool',
  'QLinearLeakyRelu', 'QLinearSigmoid', 'QLinearSoftmax', 'QLinearReduceMean', 'QLinearWhere', 'QGemm', 'QuantizeLinear',
  'DequantizeLinear', 'DynamicQuantizeLinear', 'FusedConv', 'FusedGemm', 'FusedMatMul', 'Gelu', 'FastGelu',
]);

/** Size-producing operators: their output size comes from values, not from their input's size. */
const SIZE_PRODUCING = new Set(['ConstantOfShape', 'Expand', 'Tile', 'Range', 'Resize', 'Upsample', 'Pad', 'OneHot', 'RandomNormal', 'RandomUniform']);

/** What the inspection found: the figures the budget was checked on. */
export interface GraphInspection {
  nodes: number;
  /** Elements of all tensors together at batch 1. */
  totalElements: number;
  /** The largest tensor at batch 1. */
  largest: { name: string; elements: number };
}

function refuse(source: string, what: string, remedy: string): PartscanError {
  return new PartscanError('ONNX_FORMAT', `The ONNX graph ${source} is refused: ${what}.`, { file: source, remedy });
}

const REEXPORT = 'export the network again as a self-contained graph with static shapes (torch.onnx.export without dynamic axes, or onnxsim), using standard ONNX operators';

/** Refuses what the graph holds besides plain nodes: external data, sub-graphs, other domains. */
function checkStructure(model: ScannedModel, source: string): void {
  if (model.nested.length) throw refuse(source, `it holds ${model.nested[0]}`, REEXPORT);
  if (model.nodes.length > GRAPH_LIMITS.nodes) throw refuse(source, `${model.nodes.length} nodes (at most ${GRAPH_LIMITS.nodes})`, REEXPORT);
  for (const t of model.initializers.values()) {
    if (t.external) throw refuse(source, `initializer "${clip(t.name)}" keeps its data in an external file`, 'save the graph with its weights inside (onnx.save_model(..., save_as_external_data=False)); graphs over 2 GB cannot be backbones');
  }
  for (const n of model.nodes) {
    for (const a of n.attributes.values()) {
      if (a.t?.external) throw refuse(source, `a constant of node ${clip(n.opType)} keeps its data in an external file`, REEXPORT);
    }
    if (n.domain !== '' && !(n.domain === 'com.microsoft' && CONTRIB_OPS.has(n.opType))) {
      throw refuse(source, `operator ${clip(n.opType)} of domain "${clip(n.domain)}" is not a standard ONNX operator`, REEXPORT);
    }
  }
}

/**
 * Inspects an ONNX model's bytes (see the module comment) and returns the budget figures; throws a
 * typed 'ONNX_FORMAT' error naming what is refused. `source` names the graph in messages.
 */
export function inspectOnnxGraph(bytes: Uint8Array, opts: { source: string; inputSize?: number }): GraphInspection {
  const { source } = opts;
  let model: ScannedModel;
  try {
    model = scanOnnxModel(bytes);
  } catch (e) {
    throw new PartscanError('ONNX_FORMAT', `${source} is not a valid ONNX model (${(e as Error).message}).`, { file: source, remedy: 'check the file; re-export the network to ONNX', cause: e });
  }
  checkStructure(model, source);
  const size = opts.inputSize ?? GRAPH_LIMITS.inspectionSize;
  const image = model.inputs.find((i) => !model.initializers.has(i.name));
  const side = Math.max(image?.dims?.[2] ?? size, image?.dims?.[3] ?? size);
  const totalBudget = Math.min(2 ** 31, GRAPH_LIMITS.totalElements * Math.max(1, (side / GRAPH_LIMITS.inspectionSize) ** 2));
  let total = 0;
  const largest = { name: '', elements: 0 };
  const budget = (n: ScannedNode, name: string, elements: number) => {
    if (elements > GRAPH_LIMITS.tensorElements) {
      const kind = SIZE_PRODUCING.has(n.opType) ? 'the size-producing operator ' : 'operator ';
      throw refuse(source, `${kind}${clip(n.opType)} makes tensor "${clip(name)}" of ${elements} elements at batch 1 (at most ${GRAPH_LIMITS.tensorElements})`, REEXPORT);
    }
    total += elements;
    if (elements > largest.elements) Object.assign(largest, { name, elements });
    if (total > totalBudget) throw refuse(source, `its tensors hold more than ${totalBudget} elements together at batch 1`, REEXPORT);
  };
  inferShapes(model, size, (node, outputs) => {
    node.outputs.forEach((name, i) => {
      if (!name) return;
      const shape = outputs[i];
      if (!shape) {
        throw refuse(source, `partscan cannot work out the size of tensor "${clip(name)}" (operator ${clip(node.opType)}), so it cannot bound the memory the graph needs`, REEXPORT);
      }
      budget(node, name, shape.reduce((a, b) => a * b, 1));
    });
  });
  return { nodes: model.nodes.length, totalElements: total, largest };
}

/** A name from the graph as it may appear in a message: short. */
function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}…` : s;
}
