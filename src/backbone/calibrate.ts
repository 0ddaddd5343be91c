/**
 * Activation calibration for the int8 backbone: the float graph is run on good images with every
 * tensor the quantizer needs exposed as an output, and each tensor's range is taken as a percentile
 * of its values (default 99.99 %: the rare extreme values of good parts would otherwise stretch the
 * uint8 step for everything else). Percentiles are found per batch from a fine histogram and
 * averaged over the batches, so the result depends only on the images, their order and the batch
 * size: the same images always give the same ranges, hence the same int8 graph.
 */
import ort from 'onnxruntime-node';
import { z } from 'zod';
import type { onnx as OnnxTypes } from 'onnx-proto';
import onnxProto from 'onnx-proto';
import { PartscanError } from '../errors.js';
import { createSession } from '../onnx/session.js';
import type { Tensor4D } from '../types.js';
import { decodeModel, OnnxDataType, tensorValueInfo } from '../onnx/graph.js';
import { defaultIntraOpThreads, OrtBackbone } from './ort-backbone.js';
import { calibrationTensors, quantizeGraphQdq, type ActivationRange } from './quantize.js';
import type { Backbone } from './types.js';

const { onnx } = onnxProto;

/** Options of {@link calibrateActivations} and {@link quantizeBackbone}. */
export interface CalibrationOptions {
  /** Percentile of each tensor's values taken as its upper end (the lower end mirrors it); 100 = min/max. Default 99.99. */
  percentile?: number;
  /** Histogram bins per tensor and batch (default 4096). */
  bins?: number;
  /** ORT intra-op threads (default as for the backbone). */
  threads?: number;
}

const calibrationOptionsSchema = z.object({
  percentile: z.number().min(90).max(100).optional(),
  bins: z.number().int().min(64).max(1 << 20).optional(),
  threads: z.number().int().min(1).optional(),
});

/** Default percentile of the activation ranges. */
export const DEFAULT_CALIBRATION_PERCENTILE = 99.99;

/** Default number of good images the fit calibrates the int8 backbone on (all when fewer). */
export const DEFAULT_CALIBRATION_IMAGES = 16;

function checkOptions(opts: CalibrationOptions): Required<Omit<CalibrationOptions, 'threads'>> & { threads: number } {
  const parsed = calibrationOptionsSchema.safeParse(opts);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new PartscanError('OPTIONS', `Invalid calibration option ${issue.path.join('.')}: ${issue.message}.`, {
      remedy: 'percentile in [90, 100], bins an integer in [64, 1048576], threads ≥ 1',
    });
  }
  return {
    percentile: parsed.data.percentile ?? DEFAULT_CALIBRATION_PERCENTILE,
    bins: parsed.data.bins ?? 4096,
    threads: parsed.data.threads ?? defaultIntraOpThreads(),
  };
}

/** Values histogrammed per tensor and batch at most; larger tensors are read at a fixed odd stride. */
export const CALIBRATION_MAX_SAMPLES = 1 << 18;

/**
 * [lower, upper] percentile of `x` (upper = `percentile`, lower = 100 − `percentile`): exact min and
 * max at 100, otherwise read off a `bins`-bin histogram over the sample's [min, max] (bin edges, so the
 * range never shrinks by more than one bin width). Below 100 only `maxSamples` values are read, at a
 * fixed odd stride (odd, so it does not alias with the even plane sizes of feature maps): deterministic.
 */
export function percentileRange(x: Float32Array, percentile: number, bins: number, maxSamples = CALIBRATION_MAX_SAMPLES): ActivationRange {
  let stride = percentile >= 100 ? 1 : Math.ceil(x.length / maxSamples);
  if (stride > 1 && stride % 2 === 0) stride++;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < x.length; i += stride) {
    const v = x[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!Number.isFinite(min) || !Number.isFinite(max)) return { min: NaN, max: NaN };
  if (percentile >= 100 || max === min) return { min, max };
  const hist = new Float64Array(bins);
  const k = bins / (max - min);
  let n = 0;
  for (let i = 0; i < x.length; i += stride, n++) hist[Math.min(bins - 1, Math.floor((x[i]! - min) * k))]++;
  const tail = (n * (100 - percentile)) / 100;
  let lo = 0;
  for (let acc = 0; lo < bins - 1 && acc + hist[lo]! <= tail; lo++) acc += hist[lo]!;
  let hi = bins - 1;
  for (let acc = 0; hi > 0 && acc + hist[hi]! <= tail; hi--) acc += hist[hi]!;
  return { min: min + lo / k, max: Math.min(max, min + (hi + 1) / k) };
}

/** The float graph with `names` (intermediate tensors) added as float outputs. */
function exposeAll(fp32Onnx: Uint8Array, names: string[]): Uint8Array {
  const model = decodeModel(fp32Onnx);
  const g = model.graph as OnnxTypes.IGraphProto;
  const have = new Set((g.output ?? []).map((o) => o.name));
  const extra = names.filter((n) => !have.has(n)).map((n) => tensorValueInfo(n, OnnxDataType.FLOAT, []));
  // No shapes: ORT infers them; an empty dim list would claim a scalar.
  for (const v of extra) delete (v.type!.tensorType as { shape?: unknown }).shape;
  return onnx.ModelProto.encode(onnx.ModelProto.create({ ...model, graph: { ...g, output: [...(g.output ?? []), ...extra] } })).finish();
}

/**
 * Calibrated ranges of every tensor {@link quantizeGraphQdq} needs, from float batches of good images
 * (NCHW, the backbone's input). Deterministic for the same batches.
 * Throws 'DATASET' when no batch is given, 'ONNX_FORMAT' for graphs the quantizer cannot handle.
 */
export async function calibrateActivations(
  fp32Onnx: Uint8Array,
  batches: AsyncIterable<Tensor4D> | Iterable<Tensor4D>,
  opts: CalibrationOptions = {},
): Promise<Map<string, ActivationRange>> {
  const o = checkOptions(opts);
  const names = calibrationTensors(fp32Onnx);
  // Basic optimisation only: the layout rewrites of 'all' would add a reorder per exposed tensor, which costs more than they save here.
  const session = await createSession(exposeAll(fp32Onnx, names), o.threads, { graphOptimizationLevel: 'basic' });
  const inputName = session.inputNames[0]!;
  const sums = new Map<string, { min: number; max: number }>(names.map((n) => [n, { min: 0, max: 0 }]));
  let count = 0;
  try {
    for await (const batch of batches) {
      const feed = new ort.Tensor('float32', batch.data, [...batch.dims]);
      const fetch = names.filter((n) => n !== inputName);
      const out = await session.run({ [inputName]: feed }, fetch);
      for (const n of names) {
        const data = n === inputName ? batch.data : (out[n]!.data as Float32Array);
        const r = percentileRange(data, o.percentile, o.bins);
        const s = sums.get(n)!;
        s.min += r.min;
        s.max += r.max;
      }
      for (const t of Object.values(out)) t.dispose?.();
      count++;
    }
  } finally {
    await session.release();
  }
  if (count === 0) {
    throw new PartscanError('DATASET', 'No images to calibrate the int8 backbone on.', { remedy: 'give at least one good image, or use precision fp32' });
  }
  return new Map(names.map((n) => [n, { min: sums.get(n)!.min / count, max: sums.get(n)!.max / count }]));
}

/**
 * An int8 copy of a float backbone: calibrated on `batches` (good images, preprocessed as for the
 * fit), quantized ({@link quantizeGraphQdq}), and opened in a new session. Its identity is the float
 * backbone's with `precision: 'int8'`; the float backbone is left open (the caller disposes it).
 */
export async function quantizeBackbone(
  backbone: Backbone,
  batches: AsyncIterable<Tensor4D> | Iterable<Tensor4D>,
  opts: CalibrationOptions = {},
): Promise<OrtBackbone> {
  if (backbone.identity.precision === 'int8') {
    throw new PartscanError('OPTIONS', `Backbone ${backbone.identity.name} is already int8.`, { remedy: 'quantize the float backbone' });
  }
  const ranges = await calibrateActivations(backbone.onnx, batches, opts);
  const int8 = quantizeGraphQdq(backbone.onnx, ranges);
  return OrtBackbone.create(int8, { ...backbone.identity, precision: 'int8' }, {
    ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads } : {}),
    inputName: backbone.inputName,
  });
}
