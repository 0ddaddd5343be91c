/**
 * The types graph-building helpers share, free of onnx-proto's types: declarations that name them
 * (the model's striped inverse, the post-processing graph helpers) reach the published types, and
 * onnx-proto's declarations do not compile with `skipLibCheck: false`.
 */

/** A float attribute value (plain numbers are taken as ints, which most attributes are). */
export interface FloatAttribute {
  /** The value. */
  float: number;
}

/** A node attribute value: an int, a float, a list of ints, or a string. */
export type OnnxAttributeValue = number | number[] | string | FloatAttribute;

/** Where graph-building helpers put what they build (constants and nodes), whoever assembles the graph. */
export interface GraphSink {
  /** Adds a float32 constant. */
  float(name: string, dims: number[], data: Float32Array): void;
  /** Adds an int64 constant. */
  int64(name: string, dims: number[], values: readonly number[]): void;
  /** Adds a node (its name is the sink's business). */
  node(op: string, inputs: string[], outputs: string[], attrs?: Record<string, OnnxAttributeValue>): void;
  /** The graph's default-domain opset (ReduceMax takes its axes as an input from opset 18); default ONNX_OPSET (onnx/graph.ts). */
  opset?: number;
}
