import type * as ort from 'onnxruntime-node';

/**
 * Session options shared by every ONNX Runtime session partscan creates (backbone, statistics
 * kernels, map post-processing). Scoring alternates between these sessions many times per image, and
 * each has its own intra-op thread pool: ORT's default lets idle pool threads spin-wait for new work,
 * so on a small box the pool that just finished keeps the cores busy while the next session's pool
 * waits for them (measured: backbone batch-1 66 ms → 33 ms with spinning off, 2 cores).
 */
export function ortSessionOptions(threads: number, extra: Partial<ort.InferenceSession.SessionOptions> = {}): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    ...extra,
  };
}
