/**
 * Scoring into a run directory: every image's exports (overlay, 16-bit heatmap, mask, downsized
 * original) plus `results.json` / `results.csv`, the folder the HTML report and the CLI's `score`
 * command work on. One image that cannot be decoded never aborts the run: it is listed as a failure.
 */

import path from 'node:path';
import { promises as fs } from 'node:fs';
import { PartscanError, isPartscanError } from '../errors.js';
import { throwIfAborted } from '../util/abort.js';
import { parseOptions } from '../options/parse.js';
import { scoreRunOptionsSchema, writeScoredRunOptionsSchema } from '../options/schemas.js';
import type { Model, ProgressEvent, ScoreInput, ScoreOptions, ScoreResult } from '../model/model.js';
import { PARTSCAN_VERSION } from '../model/model.js';
import { modelScoringSha256 } from '../model/model-identity.js';
import { mapMinimum } from '../model/calibration-pool.js';
import { BUFFER_SOURCE } from '../preprocess/decode.js';
import { FRAME_SOURCE } from '../preprocess/raw-frame.js';
import type { Thresholds } from '../postprocess/thresholds.js';
import { ensureOutputDir } from '../util/atomic-write.js';
import { writeHeatmap16Png, writeImagePng, writeMaskPng, writeOverlayPng } from './images.js';
import { resultLayers } from './render.js';
import { writeRunResults, type ImageResult, type RunManifest } from './results.js';
import { LineMonitor, type LineMonitorOptions, type RunMonitor } from '../monitor/line-monitor.js';

/** Which per-image files to write (each defaults to true). */
export interface RunExports {
  /** `<stem>.overlay.png`: normalised heatmap blended on the photo, defect contours drawn. */
  overlay?: boolean;
  /** `<stem>.heatmap.png`: normalised map as 16-bit greyscale. */
  heatmap?: boolean;
  /** `<stem>.mask.png`: binary defect mask (0/255). */
  mask?: boolean;
  /** `<stem>.original.png`: the (downsized) photo, for the report. */
  original?: boolean;
}

/** Options of {@link scoreToRunDir} and {@link writeScoredRun}. */
export interface ScoreRunOptions {
  /** Images per backbone batch (default 8). */
  batchSize?: number;
  /** Minimum region area in pixels of the anomaly map (model resolution; default 0). */
  minArea?: number;
  /** Which files to write per image (default: all). */
  exports?: RunExports;
  /**
   * Longest side of the exported images (default {@link DEFAULT_EXPORT_MAX_SIDE}). All four exports of an
   * image share this size so they overlay pixel for pixel; larger photos are downsized, never enlarged.
   */
  maxSide?: number;
  /** Ground-truth labels by input path (evaluation runs), copied into each result. */
  labels?: Map<string, string>;
  /** Model path recorded in the manifest (default: the file the model was loaded from, else '<memory>'). */
  modelPath?: string;
  /** Progress: one 'score' unit per input image. */
  onProgress?: (e: ProgressEvent) => void;
  /**
   * Cancels the run: it rejects with a 'CANCELLED' PartscanError within one batch, and the files it had
   * written are removed (results.json, written last, never appears).
   */
  signal?: AbortSignal;
  /**
   * Line monitoring of the run, inputs taken in the order given ({@link LineMonitor}; default on with
   * default settings); `false` leaves `monitor` out of the manifest.
   */
  monitor?: LineMonitorOptions | false;
}

/** An input that could not be scored, as recorded in the manifest's `failures`. */
export interface ScoreRunFailure {
  /** The input path, as given. */
  file: string;
  /** PartscanError code ('IMAGE_DECODE', ...) or 'UNEXPECTED'. */
  code: string;
  /** What went wrong. */
  message: string;
}

/**
 * The manifest written by {@link scoreToRunDir}: a {@link RunManifest} plus the inputs that failed
 * (extra fields are kept by readers of results.json).
 */
export interface ScoredRunManifest extends RunManifest {
  /** Inputs that could not be scored (decode errors, unreadable files), in input order. */
  failures: ScoreRunFailure[];
  /**
   * True when the model had no thresholds: verdicts are then 'UNCERTAIN' and normalised scores are
   * relative to this run's score range, not a decision (see {@link scoreToRunDir}).
   */
  uncalibrated?: boolean;
  /** Line monitoring over the run in input order: alarm, first alarm index, reasons, chart data. */
  monitor?: RunMonitor;
}

/** Default longest side of exported images: enough to judge a defect, small enough for a report. */
export const DEFAULT_EXPORT_MAX_SIDE = 1024;

const IMAGE_ERROR_CODES = new Set(['IMAGE_DECODE', 'IMAGE_UNSUPPORTED', 'IMAGE_TOO_LARGE', 'IMAGE_TOO_SMALL', 'INVALID_TENSOR', 'INVALID_FRAME', 'DATASET']);

/**
 * Scores `inputs` (image paths) with `model` and writes a complete run into `outDir`: per image
 * `<stem>.overlay.png`, `<stem>.heatmap.png` (16-bit), `<stem>.mask.png` and `<stem>.original.png`,
 * then `results.csv` and `results.json` (the latter last, so it only appears once the run is complete).
 *
 * - `outDir` is checked first: a typed 'OUTPUT' error when it is a file or not writable, before any work.
 * - Stems are the input base names without extension; a repeated name gets `-2`, `-3`... so no input
 *   overwrites another's exports.
 * - Images that cannot be decoded (corrupt, truncated, unsupported...) are recorded in `failures` and in
 *   the manifest's warnings; the run continues. Other errors (model, output) abort it.
 * - A model without thresholds still yields heatmaps and results: since ImageResult requires a verdict,
 *   every verdict is 'UNCERTAIN' (no decision is possible), normalised scores are min–max over this
 *   run, each heatmap is min–max normalised per image, masks are empty, and the manifest records
 *   placeholder 'manual' thresholds at the middle of the run's range with `uncalibrated: true`.
 *
 * @example
 * const model = await Model.load('bottle.partscan');
 * const manifest = await scoreToRunDir(model, ['part-001.png', 'part-002.png'], 'runs/0042');
 * console.log(manifest.results.map((r) => r.verdict), manifest.failures);
 * await writeReport('runs/0042');
 */
export async function scoreToRunDir(
  model: Model,
  inputs: ReadonlyArray<ScoreInput>,
  outDir: string,
  opts: ScoreRunOptions = {},
): Promise<ScoredRunManifest> {
  parseOptions(scoreRunOptionsSchema, opts, 'scoreToRunDir');
  await ensureOutputDir(outDir);
  const bs = opts.batchSize ?? model.defaultScoreBatchSize;
  const scoreOpts: ScoreOptions = { batchSize: bs, ...(opts.minArea !== undefined ? { minArea: opts.minArea } : {}), ...(opts.signal ? { signal: opts.signal } : {}) };
  const names = inputs.map(inputName);
  const stems = uniqueStems(names);
  const exported: ImageResult[] = [];
  const failures: ScoreRunFailure[] = [];
  // Created before any work so that invalid monitor options fail fast.
  const monitor = opts.monitor === false ? undefined : new LineMonitor(model, opts.monitor ?? {});
  // A few backbone batches per call lets the model overlap decoding with inference.
  const chunk = bs * 2;
  return cancellableRun(outDir, opts.signal, async (track) => {
    for (let i = 0; i < inputs.length; i += chunk) {
      const part = inputs.slice(i, i + chunk);
      const scored = await scoreIsolatingFailures(model, part, names.slice(i, i + chunk), scoreOpts);
      for (let k = 0; k < part.length; k++) {
        const s = scored[k]!;
        if ('failure' in s) {
          failures.push(s.failure);
          continue;
        }
        try {
          exported.push(track(await exportScoredImage(model, s.result, outDir, stems[i + k]!, opts)));
          monitor?.push(s.result, i + k);
        } catch (e) {
          if (!isImageError(e)) throw e;
          failures.push(failureOf(names[i + k]!, e));
        }
      }
      throwIfAborted(opts.signal, 'Scoring the run');
      opts.onProgress?.({ stage: 'score', done: Math.min(inputs.length, i + chunk), total: inputs.length });
    }
    const manifest = buildManifest(model, exported, failures, opts.modelPath, monitor?.result());
    await writeRunResults(outDir, manifest);
    return manifest;
  });
}

/**
 * Runs the body of a run writer so that a cancellation leaves nothing half-written: the exports it
 * wrote (tracked as they are made) are removed again; results.json, written last, never exists then.
 */
async function cancellableRun<T>(outDir: string, signal: AbortSignal | undefined, body: (track: (r: ImageResult) => ImageResult) => Promise<T>): Promise<T> {
  const written: string[] = [];
  const track = (r: ImageResult): ImageResult => {
    for (const f of Object.values(r.outputs ?? {})) if (f) written.push(path.join(outDir, f));
    return r;
  };
  try {
    throwIfAborted(signal, 'Scoring the run');
    return await body(track);
  } catch (e) {
    if (isPartscanError(e, 'CANCELLED')) await Promise.all(written.map((f) => fs.rm(f, { force: true })));
    throw e;
  }
}

/** The name an input goes by in a run: its path, or '<buffer>', '<frame>', '<tensor>'. */
function inputName(input: ScoreInput): string {
  if (typeof input === 'string') return input;
  // Encoded bytes in any byte array (a Uint8ClampedArray too) are a buffer, as the result names them.
  if (input instanceof Uint8Array || (input as unknown) instanceof Uint8ClampedArray) return BUFFER_SOURCE;
  return 'dims' in input ? '<tensor>' : FRAME_SOURCE;
}

/**
 * Writes a run from results that are already scored (e.g. by `evaluateModel`), so an evaluation can
 * export its run without scoring twice. Same files and manifest as {@link scoreToRunDir}.
 *
 * An entry may also be an {@link ImageResult} whose files were already exported into `outDir` by
 * {@link exportScoredImage} elsewhere (queue workers): it is taken as it is. `failures` lists inputs
 * that failed before reaching this writer.
 *
 * @example
 * const { items } = await evaluateModel(model, 'mvtec/bottle');
 * await writeScoredRun(model, items.map((i) => i.result), 'runs/eval');
 */
export async function writeScoredRun(
  model: Model,
  results: ReadonlyArray<ScoreResult | ImageResult>,
  outDir: string,
  opts: ScoreRunOptions & { failures?: ScoreRunFailure[]; inputIndices?: readonly number[] } = {},
): Promise<ScoredRunManifest> {
  parseOptions(writeScoredRunOptionsSchema, opts, 'writeScoredRun');
  await ensureOutputDir(outDir);
  const stems = uniqueStems(results.map((r) => ('anomalyMap' in r ? r.source : r.file)));
  const exported: ImageResult[] = [];
  const failures: ScoreRunFailure[] = [...(opts.failures ?? [])];
  const monitor = opts.monitor === false ? undefined : new LineMonitor(model, opts.monitor ?? {});
  return cancellableRun(outDir, opts.signal, async (track) => {
    for (let i = 0; i < results.length; i++) {
      throwIfAborted(opts.signal, 'Writing the run');
      const r = results[i]!;
      const index = opts.inputIndices?.[i] ?? i;
      if (!('anomalyMap' in r)) {
        exported.push(r);
        monitor?.push({ source: r.file, imageScore: r.imageScore, ...(r.verdict ? { verdict: r.verdict } : {}), ...(r.drift ? { drift: { ...r.drift, reasons: [] } } : {}) }, index);
        opts.onProgress?.({ stage: 'score', done: i + 1, total: results.length });
        continue;
      }
      try {
        exported.push(track(await exportScoredImage(model, r, outDir, stems[i]!, opts)));
        monitor?.push(r, index);
      } catch (e) {
        if (!isImageError(e)) throw e;
        failures.push(failureOf(r.source, e));
      }
      opts.onProgress?.({ stage: 'score', done: i + 1, total: results.length });
    }
    throwIfAborted(opts.signal, 'Writing the run');
    const manifest = buildManifest(model, exported, failures, opts.modelPath, monitor?.result());
    await writeRunResults(outDir, manifest);
    return manifest;
  });
}

/**
 * Writes one scored image's exports into `outDir` as `<stem>.*.png` and returns its {@link ImageResult}
 * (output paths relative to `outDir`). Building block of {@link scoreToRunDir} for callers that
 * assemble their own manifest (e.g. a folder watcher appending results). Results of every input kind
 * are accepted: the photo is read again from the path, bytes or frame the result was scored from.
 * (`_model` is kept for compatibility: the result carries all that placing its maps needs.)
 */
export async function exportScoredImage(
  _model: Model,
  r: ScoreResult,
  outDir: string,
  stem: string,
  opts: Pick<ScoreRunOptions, 'exports' | 'maxSide' | 'labels'> = {},
): Promise<ImageResult> {
  const want: Required<RunExports> = { overlay: true, heatmap: true, mask: true, original: true, ...opts.exports };
  const maxSide = opts.maxSide ?? DEFAULT_EXPORT_MAX_SIDE;
  const info = r.info ?? { width: r.mapWidth, height: r.mapHeight };
  const outputs: NonNullable<ImageResult['outputs']> = {};
  const calibrated = r.normalizedMap !== undefined && r.normalizedScore !== undefined && r.verdict !== undefined;
  if (want.overlay || want.heatmap || want.mask || want.original) {
    // The photo is only needed for overlay/original; the maps are placed on it at the export size.
    const layers = await resultLayers(r, { maxSide, photo: want.overlay || want.original });
    const { width: w, height: h, normMap: mapped, mask } = layers;
    const file = (kind: string) => `${stem}.${kind}.png`;
    if (want.overlay) {
      await writeOverlayPng(path.join(outDir, file('overlay')), layers.photo!, mapped, mask);
      outputs.overlay = file('overlay');
    }
    if (want.heatmap) {
      await writeHeatmap16Png(path.join(outDir, file('heatmap')), mapped, w, h);
      outputs.heatmap = file('heatmap');
    }
    if (want.mask) {
      await writeMaskPng(path.join(outDir, file('mask')), mask, w, h);
      outputs.mask = file('mask');
    }
    if (want.original) {
      await writeImagePng(path.join(outDir, file('original')), layers.photo!);
      outputs.original = file('original');
    }
  }
  const mapMin = mapMinimum(r.anomalyMap);
  const result: ImageResult = {
    file: r.source,
    imageScore: r.imageScore,
    mapMax: r.mapMax,
    ...(Number.isFinite(mapMin) ? { mapMin } : {}),
    // Uncalibrated placeholder; buildManifest replaces it with the run-relative value.
    normalizedScore: calibrated ? r.normalizedScore! : 0.5,
    verdict: calibrated ? r.verdict! : 'UNCERTAIN',
    regions: calibrated ? (r.regions ?? []) : [],
    width: info.width,
    height: info.height,
    outputs,
  };
  if (r.drift) result.drift = { flag: r.drift.flag, score: r.drift.score, ...(r.drift.z ? { z: r.drift.z } : {}) };
  if (r.warnings.length) result.warnings = r.warnings.map((wn) => wn.message);
  const label = opts.labels?.get(r.source);
  if (label !== undefined) result.label = label;
  return result;
}

/**
 * The manifest for exported results: the model's thresholds, or (uncalibrated model) run-relative
 * placeholder thresholds with scores re-normalised over the run; failures become warnings too.
 */
export function buildManifest(
  model: Model,
  results: ImageResult[],
  failures: ScoreRunFailure[] = [],
  modelPath?: string,
  monitor?: RunMonitor,
): ScoredRunManifest {
  const warnings = failures.map((f) => `${f.file}: not scored (${f.code}): ${f.message}`);
  let thresholds: Thresholds | undefined = model.header.thresholds;
  let uncalibrated = false;
  if (!thresholds) {
    uncalibrated = true;
    const scores = results.map((r) => r.imageScore);
    const lo = scores.length ? Math.min(...scores) : 0;
    const hi = scores.length ? Math.max(...scores) : 0;
    for (const r of results) r.normalizedScore = hi > lo ? (r.imageScore - lo) / (hi - lo) : 0.5;
    const mid = (lo + hi) / 2;
    thresholds = {
      image: mid,
      pixel: mid,
      method: { image: 'manual', pixel: 'manual' },
      imageStats: { min: lo, max: hi },
      pixelStats: { min: lo, max: hi },
    };
    warnings.unshift(
      'The model has no calibrated thresholds: verdicts are UNCERTAIN, normalised scores are relative to this run and heatmaps to each image. Re-fit with calibration images for decisions.',
    );
  }
  const manifest: ScoredRunManifest = {
    createdBy: 'partscan',
    version: PARTSCAN_VERSION,
    createdAt: new Date().toISOString(),
    model: { path: modelPath ?? model.modelFile ?? '<memory>', thresholds, backbone: model.header.backbone.name, sha256: modelScoringSha256(model) },
    results,
    failures,
  };
  if (warnings.length) manifest.warnings = warnings;
  if (uncalibrated) manifest.uncalibrated = true;
  if (monitor) manifest.monitor = monitor;
  return manifest;
}

/**
 * Export stems from input paths: base name without extension, made unique (`name`, `name-2`, ...)
 * case-insensitively, so files from different folders never overwrite each other (also on
 * case-insensitive file systems).
 */
export function uniqueStems(inputs: readonly string[]): string[] {
  const seen = new Map<string, number>();
  const taken = new Set<string>();
  return inputs.map((input) => {
    // In-memory inputs ('<buffer>', '<frame>', '<tensor>') are named after their kind.
    const plain = /^<\w+>$/.test(input) ? input.slice(1, -1) : input;
    const base = path.basename(plain, path.extname(plain)).replace(/[^\w.\-]+/g, '_') || 'image';
    let stem = base;
    let n = seen.get(base.toLowerCase()) ?? 1;
    while (taken.has(stem.toLowerCase())) stem = `${base}-${++n}`;
    seen.set(base.toLowerCase(), n);
    taken.add(stem.toLowerCase());
    return stem;
  });
}

type Scored = { result: ScoreResult } | { failure: ScoreRunFailure };

/**
 * Scores a batch; when it fails on an image error, scores the images one by one so that only the bad
 * ones are dropped (the batch decoder stops at the first bad image).
 */
async function scoreIsolatingFailures(model: Model, part: ScoreInput[], names: string[], scoreOpts: ScoreOptions): Promise<Scored[]> {
  try {
    return (await model.score(part, scoreOpts)).map((result) => ({ result }));
  } catch (e) {
    if (!isImageError(e)) throw e;
  }
  const out: Scored[] = [];
  for (let k = 0; k < part.length; k++) {
    try {
      out.push({ result: await model.score(part[k]!, scoreOpts) });
    } catch (e) {
      if (!isImageError(e)) throw e;
      out.push({ failure: failureOf(names[k]!, e) });
    }
  }
  return out;
}

/** Errors about one input (skip it) as opposed to errors about the model or the output (abort). */
export function isImageError(e: unknown): boolean {
  return e instanceof PartscanError ? IMAGE_ERROR_CODES.has(e.code) : false;
}

/** The manifest's failure entry for an input that could not be scored. */
export function failureOf(file: string, e: unknown): ScoreRunFailure {
  return e instanceof PartscanError
    ? { file, code: e.code, message: e.message }
    : { file, code: 'UNEXPECTED', message: e instanceof Error ? e.message : String(e) };
}
