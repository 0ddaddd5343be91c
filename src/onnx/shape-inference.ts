/**
 * Static shape inference over a scanned ONNX graph (onnx-scan.ts), for bounding what a graph makes
 * ONNX Runtime allocate before it runs: every tensor's shape at batch 1 and a given input size, from
 * the graph's own constants. It covers the operators of CNN feature extractors (convolutions, pooling,
 * normalisation, activations, quantized QLinear/QDQ forms, shape arithmetic: Shape → Gather → Concat →
 * Reshape) and the size-producing operators (ConstantOfShape, Expand, Tile, Range, Resize, Upsample,
 * Pad, OneHot, Random*). Small integer tensors (shapes, axes, sizes) also get their values, so shapes
 * computed inside the graph are followed. A node it cannot work out gets no shape: the caller decides
 * (graph-inspect.ts refuses the graph). The rule of each operator is in shape-rules.ts.
 */

import type { ScannedModel, ScannedNode } from './onnx-scan.js';
import { attr, RULES, type ShapeContext } from './shape-rules.js';

/** Shapes (and small values) of a graph's tensors. */
export interface InferredGraph {
  shapes: Map<string, number[]>;
  values: Map<string, number[]>;
}

type Shape = number[];

/** The working state: shapes and values so far, and attribute access. */
class Inference implements InferredGraph, ShapeContext {
  readonly shapes = new Map<string, number[]>();
  readonly values = new Map<string, number[]>();
  constructor(readonly opset: number) {}

  shape(n: ScannedNode, i: number): Shape | undefined {
    const name = n.inputs[i];
    return name ? this.shapes.get(name) : undefined;
  }
  value(n: ScannedNode, i: number): number[] | undefined {
    const name = n.inputs[i];
    return name ? this.values.get(name) : undefined;
  }
  /** An int list from attribute `name`, or from input `index` (newer opsets moved many to inputs). */
  list(n: ScannedNode, name: string, index: number): number[] | undefined {
    return attr(n, name)?.ints ?? (n.inputs[index] ? this.value(n, index) : undefined);
  }
}

/**
 * Nodes in an order where producers come before consumers (ONNX asks for it; ONNX Runtime and
 * partscan's surgery accept graphs without it). Nodes in a cycle or fed by nothing known keep their
 * place at the end.
 */
function topological(nodes: readonly ScannedNode[]): ScannedNode[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.outputs.forEach((o) => o && producer.set(o, i)));
  const waiting = nodes.map((n) => new Set(n.inputs.filter((x) => x && producer.has(x)).map((x) => producer.get(x)!)));
  const consumers = nodes.map(() => [] as number[]);
  waiting.forEach((deps, i) => deps.forEach((d) => consumers[d]!.push(i)));
  const ready = nodes.map((_, i) => i).filter((i) => waiting[i]!.size === 0).reverse();
  const order: number[] = [];
  const placed = new Set<number>();
  while (ready.length) {
    const i = ready.pop()!;
    order.push(i);
    placed.add(i);
    for (const c of consumers[i]!) {
      waiting[c]!.delete(i);
      if (waiting[c]!.size === 0 && !placed.has(c)) ready.push(c);
    }
  }
  nodes.forEach((_, i) => placed.has(i) || order.push(i));
  return order.map((i) => nodes[i]!);
}

/**
 * Infers every tensor's shape at batch 1, the image input at `inputSize` px (where the graph leaves
 * its sides symbolic). Calls `visit` after each node with its output shapes (undefined: not inferred),
 * producers before consumers; `visit` may throw to stop.
 */
export function inferShapes(
  model: ScannedModel,
  inputSize: number,
  visit: (node: ScannedNode, outputs: (number[] | undefined)[], g: InferredGraph) => void,
): InferredGraph {
  const g = new Inference(model.opsets.get('') ?? 1);
  for (const [name, t] of model.initializers) {
    g.shapes.set(name, t.dims);
    if (t.values) g.values.set(name, t.values);
  }
  let image = true;
  for (const input of model.inputs) {
    if (model.initializers.has(input.name)) continue;
    // The first real input is the image: N = 1, C = 3, sides inputSize where the graph leaves them open.
    const dims = input.dims ?? (image ? [undefined, undefined, undefined, undefined] : undefined);
    if (dims && dims.every((d, i) => d !== undefined || image || i === 0)) {
      g.shapes.set(input.name, dims.map((d, i) => d ?? (i === 0 ? 1 : i === 1 ? 3 : inputSize)));
    }
    image = false;
  }
  for (const node of topological(model.nodes)) {
    const rule = RULES[node.opType];
    let outs: (Shape | undefined)[] = [];
    try {
      outs = (rule?.(node, g) ?? []).slice(0, node.outputs.length);
    } catch {
      outs = [];
    }
    const shapes = node.outputs.map((name, i) => {
      const s = outs[i];
      const ok = s !== undefined && s.every((d) => Number.isSafeInteger(d) && d >= 0);
      if (ok && name) g.shapes.set(name, s);
      return ok ? s : undefined;
    });
    visit(node, shapes, g);
  }
  return g;
}
