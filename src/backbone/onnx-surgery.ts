/**
 * Graph surgery that turns any ONNX classifier into a feature extractor: list the tensors its nodes
 * produce, pick some as feature maps, and get back a model whose graph outputs are exactly those
 * tensors, as float32, with everything after them pruned away.
 *
 * Quantized models (QLinearConv / QDQ, e.g. the ONNX model zoo's int8 MobileNetV2) keep their
 * intermediate activations as uint8/int8. PaDiM needs real values, so each quantized tensor gets a
 * DequantizeLinear with the scale and zero point the quantizer attached to it; the float result
 * carries the name the caller asked for, and the raw integer tensor is renamed inside the graph.
 *
 * Limits: the model must be self-contained (no external-data initializers), and the re-encoding uses
 * the ONNX 1.10 schema that onnx-proto ships, so fields added to the format later are not preserved.
 *
 * The surgery lives in ./surgery/ by role: graph-index.ts (decode, index, static listing), expose.ts
 * (rewire outputs) and probe.ts (measure dims, suggest layers); this file is its public face.
 */
import * as expose from './surgery/expose.js';
import * as graphIndex from './surgery/graph-index.js';
import type { IntermediateTensorInfo, OnnxSurgeryOptions } from './surgery/types.js';

export { describeIntermediateTensors, inspectOnnxOutputs, suggestFeatureLayers } from './surgery/probe.js';
export type { IntermediateTensorInfo, OnnxOutputDims, OnnxSurgeryOptions, SuggestedFeatureLayer } from './surgery/types.js';

// Declared here rather than re-exported, so that the published declarations of this public module do
// not import the surgery modules' onnx-proto types (whose own declarations need @types/long).

/** Lists tensors produced by nodes (candidates for feature maps), in topological/graph order. */
export function listIntermediateTensors(model: Uint8Array, opts?: Pick<OnnxSurgeryOptions, 'source'>): IntermediateTensorInfo[] {
  return graphIndex.listIntermediateTensors(model, opts);
}

/**
 * Returns a new model whose graph outputs are exactly the named tensors (float32), in the given order.
 * The original outputs are removed and the graph pruned to what those tensors need. Quantized
 * (uint8/int8) tensors get a DequantizeLinear with the tensor's scale and zero point; float16/double
 * tensors get a Cast. Either way the float32 output keeps the requested name (the raw tensor is
 * renamed inside the graph). Unless `keepInputShape` is set, the image input's batch, height and width
 * become symbolic so the extractor runs at any batch size and resolution.
 *
 * @throws PartscanError ONNX_TENSOR_NOT_FOUND for unknown names (with close names), ONNX_FORMAT for an
 *   unreadable model or a quantized tensor whose scale cannot be found, OPTIONS for non-activation tensors.
 */
export function exposeIntermediateOutputs(model: Uint8Array, names: string[], opts?: OnnxSurgeryOptions): Uint8Array {
  return expose.exposeIntermediateOutputs(model, names, opts);
}

/** Name of the single image input (ignoring inputs that are also initializers). */
export function onnxImageInputName(model: Uint8Array, opts?: Pick<OnnxSurgeryOptions, 'source'>): string {
  return expose.onnxImageInputName(model, opts);
}
