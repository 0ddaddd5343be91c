/** Public types of the ONNX graph surgery (see ../onnx-surgery.ts). */

/** A tensor produced by a node of the graph: a candidate feature map. */
export interface IntermediateTensorInfo {
  /** Tensor name, as written in the graph (what you pass to {@link exposeIntermediateOutputs}). */
  name: string;
  /** Operator of the node that produces it ('QLinearConv', 'Relu', ...). */
  opType: string;
  /** Name of the producing node; `<opType>_<index>` when the graph leaves it empty. */
  nodeName: string;
  /** Element type ('float', 'uint8', 'int8', 'int64', ...), or 'unknown' when the graph does not say and it cannot be inferred. */
  elemType: string;
  /** True for integer activations that need dequantizing (uint8/int8, or 16/4-bit with a known scale). */
  quantized: boolean;
  /** Dimensions, filled by probing ({@link describeIntermediateTensors}); absent from the static listing. */
  dims?: number[];
}

/** Options shared by the surgery functions. */
export interface OnnxSurgeryOptions {
  /** Where the model came from (a path), quoted in error messages. */
  source?: string;
  /**
   * Keep the declared batch, height and width of the image input. By default they are made symbolic
   * (and the stale shapes of intermediate value_info entries dropped), so the extractor accepts any
   * batch size and input resolution, e.g. 256 px on a classifier exported at 224 px.
   */
  keepInputShape?: boolean;
}

/** Measured dims of one exposed tensor, from {@link inspectOnnxOutputs}. */
export interface OnnxOutputDims {
  /** Tensor name, as requested. */
  name: string;
  /** Dimensions of the float32 output, e.g. [N, C, H, W]. */
  dims: number[];
}

/** A layer proposed by {@link suggestFeatureLayers}. */
export interface SuggestedFeatureLayer {
  /** Downsampling factor relative to the input (4, 8 or 16). */
  stride: number;
  /** Tensor name to expose. */
  name: string;
  /** Dims measured at batch 1 and the requested input size: [1, C, H, W]. */
  dims: number[];
}
