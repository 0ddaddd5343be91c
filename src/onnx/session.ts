/**
 * The one ONNX Runtime session factory: every InferenceSession partscan creates (backbone, statistics
 * kernels, map post-processing, scoring graph, calibration and surgery probes) comes from
 * {@link createSession}, with options from {@link ortSessionOptions} and threads from
 * {@link defaultThreads}, so thread counts and pool settings are decided in one place.
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';

/**
 * Cap of the default intra-op thread count for the statistics kernels and the scoring graph: ORT's
 * own default (one thread per core) oversubscribes small boxes.
 */
export const KERNEL_THREAD_CAP = 8;
/** Cap of the default intra-op thread count for a backbone session (more rarely helps convolutions at these sizes). */
export const BACKBONE_THREAD_CAP = 4;

/**
 * Default intra-op thread count: all available cores, at most `cap`. The backbone passes
 * {@link BACKBONE_THREAD_CAP}; everything else uses {@link KERNEL_THREAD_CAP}.
 */
export function defaultThreads(cap: number = KERNEL_THREAD_CAP): number {
  return Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, cap));
}

/**
 * Session options shared by every ONNX Runtime session partscan creates. Scoring alternates between
 * these sessions many times per image, and each has its own intra-op thread pool: ORT's default lets
 * idle pool threads spin-wait for new work, so on a small box the pool that just finished keeps the
 * cores busy while the next session's pool waits for them. Spinning is therefore off.
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

/** Creates a session over ONNX bytes with {@link ortSessionOptions}(`threads`, `extra`). */
export function createSession(
  bytes: Uint8Array,
  threads: number = defaultThreads(),
  extra: Partial<ort.InferenceSession.SessionOptions> = {},
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, ortSessionOptions(threads, extra));
}
