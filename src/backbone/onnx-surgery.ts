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
export { listIntermediateTensors } from './surgery/graph-index.js';
export { exposeIntermediateOutputs, onnxImageInputName } from './surgery/expose.js';
export { describeIntermediateTensors, inspectOnnxOutputs, suggestFeatureLayers } from './surgery/probe.js';
export type { IntermediateTensorInfo, OnnxOutputDims, OnnxSurgeryOptions, SuggestedFeatureLayer } from './surgery/types.js';
