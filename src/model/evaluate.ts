import { loadDataset } from '../data/loaders.js';
import { loadMask } from '../preprocess/preprocess.js';
import { evaluateRun, type EvaluationItem, type RunMetrics } from '../metrics/evaluate.js';
import { verdictQuality, type VerdictItem, type VerdictQuality } from '../metrics/verdicts.js';
import { operatingCurve, ratesAt, type OperatingCurvePoint } from '../metrics/operating-curve.js';
import { PartscanError } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { throwIfAborted } from '../util/abort.js';
import { evaluateOptionsSchema } from '../options/schemas.js';
import type { Dataset, Sample } from '../types.js';
import type { Model, ProgressEvent, ScoreResult } from './model.js';

/** The model's image threshold on the measured operating curve (part of the `eval --json` contract: docs/schemas/eval.schema.json). */
export interface ShippedOperatingPoint {
  /** The raw image threshold. */
  threshold: number;
  /** Share of good test images above it. */
  falseRejectRate: number;
  /** Share of defective test images at or below it. */
  escapeRate: number;
  /** The false-reject rate the threshold was set for (null for models without an operating point). */
  targetFalseRejectRate: number | null;
  /** Its false-reject rate estimated at fit from out-of-sample scores (null without an operating point). */
  estimatedFalseRejectRate: number | null;
}

/** The operating curve of the test set and the model's threshold on it. */
function operatingPoints(model: Model, items: { sample: Sample; result: ScoreResult }[]): { operatingPoints: OperatingCurvePoint[]; shippedOperatingPoint: ShippedOperatingPoint | null } {
  const good = items.filter((it) => !it.sample.anomalous).map((it) => it.result.imageScore);
  const defect = items.filter((it) => it.sample.anomalous).map((it) => it.result.imageScore);
  const t = model.header.thresholds;
  const operatingPoints = operatingCurve(good, defect);
  if (!t) return { operatingPoints, shippedOperatingPoint: null };
  const op = t.operatingPoint;
  return {
    operatingPoints,
    shippedOperatingPoint: {
      threshold: t.image,
      ...ratesAt(good, defect, t.image),
      targetFalseRejectRate: op?.falseRejectTarget ?? null,
      estimatedFalseRejectRate: op?.image.rate ?? null,
    },
  };
}

/** Result of {@link evaluateModel}: metrics plus every test image's score. */
export interface Evaluation {
  /**
   * The metrics (stable camelCase keys, the same in `eval --json`: docs/schemas/eval.schema.json), with the verdict quality at the
   * model's shipped threshold (`null` for a model without thresholds).
   */
  metrics: RunMetrics & {
    /** Escape and false-reject rates of the model's own verdicts; null without thresholds. */
    verdicts: VerdictQuality | null;
    /** The escape rate at false-reject rates 0, 0.5, 1, 2, 5 and 10 %, measured on this test set. */
    operatingPoints: OperatingCurvePoint[];
    /**
     * Where the model's image threshold sits on that curve: its false-reject and escape rates measured
     * here, and the target it was set for (null without thresholds).
     */
    shippedOperatingPoint: ShippedOperatingPoint | null;
  };
  /** Per test image: sample and score result. */
  items: {
    /** The test sample (file, label, mask). */
    sample: Sample;
    /** Its score result. */
    result: ScoreResult;
  }[];
  /** Wall time in seconds. */
  seconds: number;
  /** Of which scoring the images and loading the masks. */
  scoringSeconds: number;
  /** Of which computing the metrics from the scores and maps. */
  metricsSeconds: number;
}

/**
 * Scores a dataset's test split and computes image AUROC, pixel AUROC, AUPRO and F1-max (overall and
 * per defect type), and the quality of the model's own verdicts (escape and false-reject rates).
 * Ground-truth masks are resized (nearest) to the model's map size.
 *
 * @example
 * const model = await Model.load('bottle.partscan');
 * const { metrics } = await evaluateModel(model, 'mvtec/bottle'); // an MVTec-style folder or a Dataset
 * console.log(metrics.imageAuroc, metrics.pixelAuroc, metrics.verdicts?.escapeRate);
 */
export async function evaluateModel(
  model: Model,
  dataset: string | Dataset,
  opts: {
    /** Images per scoring batch (default the model's). */
    batchSize?: number;
    /** Progress: one 'score' unit per test image. */
    onProgress?: (e: ProgressEvent) => void;
    /** Cancels the evaluation: it rejects with a 'CANCELLED' PartscanError within one batch. */
    signal?: AbortSignal;
  } = {},
): Promise<Evaluation> {
  parseOptions(evaluateOptionsSchema, opts, 'evaluateModel');
  throwIfAborted(opts.signal, 'The evaluation');
  const t0 = performance.now();
  const ds = typeof dataset === 'string' ? await loadDataset(dataset) : dataset;
  if (ds.test.length === 0) {
    throw new PartscanError('DATASET', `${ds.root} has no test images to evaluate on.`, {
      file: ds.root,
      remedy: 'use an MVTec-style folder with test/<type>/ images, or a labelled CSV list',
    });
  }
  const bs = opts.batchSize ?? model.defaultScoreBatchSize;
  const evalItems: EvaluationItem[] = [];
  const items: Evaluation['items'] = [];
  // Several batches per call so the model can overlap decoding with inference.
  const chunk = bs * 4;
  const untiled = !model.header.tiling;
  for (let i = 0; i < ds.test.length; i += chunk) {
    const samples = ds.test.slice(i, i + chunk);
    // Without tiling every map is S×S, so the ground-truth masks decode (sharp's threads) while ORT scores.
    const masks = untiled ? samples.map((s) => (s.maskPath ? loadMask(s.maskPath, model.size, model.size) : undefined)) : [];
    for (const m of masks) m?.catch(() => undefined); // surfaced when awaited
    const results = await model.score(samples.map((s) => s.path), { batchSize: bs, ...(opts.signal ? { signal: opts.signal } : {}) });
    for (let k = 0; k < samples.length; k++) {
      const s = samples[k]!;
      const r = results[k]!;
      const item: EvaluationItem = { label: s.label, anomalous: s.anomalous, imageScore: r.imageScore, map: r.anomalyMap, width: r.mapWidth, height: r.mapHeight };
      if (s.maskPath) item.mask = await (masks[k] ?? loadMask(s.maskPath, r.mapWidth, r.mapHeight));
      evalItems.push(item);
      items.push({ sample: s, result: r });
    }
    opts.onProgress?.({ stage: 'score', done: Math.min(ds.test.length, i + chunk), total: ds.test.length });
  }
  const judged = items.filter((it) => it.result.verdict !== undefined);
  const verdicts =
    judged.length === items.length
      ? verdictQuality(judged.map((it): VerdictItem => ({ label: it.sample.label, anomalous: it.sample.anomalous, verdict: it.result.verdict! })))
      : null;
  throwIfAborted(opts.signal, 'The evaluation');
  const tm = performance.now();
  const metrics = { ...evaluateRun(evalItems), verdicts, ...operatingPoints(model, items) };
  const t1 = performance.now();
  return { metrics, items, seconds: (t1 - t0) / 1000, scoringSeconds: (tm - t0) / 1000, metricsSeconds: (t1 - tm) / 1000 };
}
