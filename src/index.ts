/**
 * partscan — industrial visual anomaly detection (PaDiM) in TypeScript.
 *
 * This root entry is the curated API: fit a model on good parts, load and score it, evaluate,
 * export, write run folders and reports, monitor a line, and run it all on queue workers. The
 * building blocks underneath (preprocessing, metrics, thresholds, guards, ONNX surgery, run-file
 * writers, …) are public too, through `partscan/advanced` (src/advanced.ts).
 *
 * Names are listed one by one (no `export *`) so that the root API only grows on purpose;
 * test/public-api.test.ts pins the list.
 *
 * @packageDocumentation
 */

// Fit, load, score.
export { fit } from './model/fit.js';
export { Model } from './model/model.js';
export type { FitReport, ImageSource, ModelHeader, ProgressEvent, ScoreInput, ScoreOptions, ScoreResult } from './model/model.js';
export type { FitOptions } from './model/fit-options.js';
export type { RawFrame } from './preprocess/raw-frame.js';
export { BatchingScorer, type BatchingScorerOptions } from './model/batching-scorer.js';
// Many part types in one process: loaded models within a memory budget (changeover).
export { ModelPool } from './model/model-pool.js';
export type { ModelPoolOptions } from './model/model-pool.js';
export type { BackboneSpec } from './backbone/registry.js';
export type { Region, Verdict } from './postprocess/index.js';

// Move the operating point of a fitted model (false-reject target, review band, labelled images).
export { calibrate } from './model/recalibrate.js';
export type { CalibrateOptions, CalibrationResult } from './model/recalibrate.js';

// QA review: labels given in the report (review.json) join a model (calibrate / fit with `review`).
export { buildReview } from './review/review-file.js';
export type { ReviewFile } from './review/review-file.js';

// Evaluate on a labelled dataset.
export { evaluateModel } from './model/evaluate.js';
export type { Evaluation } from './model/evaluate.js';
export { loadDataset } from './data/index.js';
export type { Dataset, Sample } from './types.js';

// Render a result as pictures; export: ONNX graph, run folders, QA report.
export { renderResult } from './export/render.js';
export type { RenderOptions } from './export/render.js';
export { exportModelOnnx } from './export/onnx-export.js';
export type { ExportOnnxOptions } from './export/onnx-export.js';
export { scoreToRunDir, writeScoredRun } from './export/score-run.js';
export type { ScoreRunFailure, ScoreRunOptions, ScoredRunManifest } from './export/score-run.js';
export type { ImageResult, RunManifest } from './export/index.js';
export { writeReport } from './report/html.js';
export type { ReportOptions } from './report/html.js';

// Demo on synthetic parts.
export { runDemo } from './demo.js';
export type { DemoOptions, DemoResult } from './demo.js';

// Line monitoring: control charts over a stream of scored images.
export { LineMonitor } from './monitor/line-monitor.js';
export type { LineMonitorOptions, MonitorInput, RunMonitor } from './monitor/line-monitor.js';

// Queue workers (BullMQ on Redis): scoring and fitting beyond one process (docs/WORKERS.md).
export { fitOnQueue, scoreOnQueue, startWorker } from './queue/index.js';
export type { PartscanWorker, QueueConnectionOptions, QueueFitOptions, QueueScoreOptions, WorkerOptions } from './queue/index.js';

// Errors and warnings.
export { PartscanError, isPartscanError } from './errors.js';
export type { PartscanErrorCode, PartscanWarning } from './errors.js';
