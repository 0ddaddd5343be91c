import type { Tensor4D } from '../types.js';

/** What identifies a backbone: stored in the model file and compared when a model is loaded. */
export interface BackboneIdentity {
  /** Registry name ('resnet50', 'wide_resnet50_2', 'resnet18', 'resnet50-random') or 'onnx:<file name>'. */
  name: string;
  /** sha256 (hex) of the weights file (safetensors) or of the user's ONNX file the graph was built from. */
  sha256: string;
  /** Output tensor names, in order (e.g. ['layer1', 'layer2', 'layer3']). */
  layers: string[];
  /** Stride of each layer relative to the input (e.g. [4, 8, 16]). */
  strides: number[];
  /** Channels of each layer (e.g. [256, 512, 1024]). */
  channels: number[];
  /** Seed, for generated random weights. */
  seed?: number;
  /** 'int8' for a statically quantized graph (see src/backbone/quantize.ts); absent = float32. */
  precision?: 'int8';
}

/** A feature extractor: NCHW float32 image batch in, one feature map per layer out. */
export interface Backbone {
  /** What this backbone is. */
  readonly identity: BackboneIdentity;
  /** The ONNX graph the backbone runs (used by the single-graph export). */
  readonly onnx: Uint8Array;
  /** Name of the graph's image input. */
  readonly inputName: string;
  /** Runs the network; returns one map per `identity.layers` entry, in that order. Safe to call concurrently. */
  extract(input: Tensor4D): Promise<Tensor4D[]>;
  /**
   * Optional: runs the network and hands the maps to `use`; they are valid only until `use` settles
   * (their buffers are reused by later runs). Saves allocating fresh feature-map memory on every batch.
   */
  withFeatures?<T>(input: Tensor4D, use: (maps: Tensor4D[]) => T | Promise<T>): Promise<T>;
  /** Releases the ONNX Runtime session. */
  dispose(): Promise<void>;
}
