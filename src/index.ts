/**
 * partscan — industrial visual anomaly detection (PaDiM) in TypeScript.
 *
 * The data path, one module per stage:
 * image → preprocess → backbone → embedding → Gaussian stats → score map → post-process → export.
 *
 * @packageDocumentation
 */

// The main API: fit, load, score, evaluate.
export { fit, splitCalibration, trainingImages } from './model/fit.js';
export { BatchingScorer, type BatchingScorerOptions } from './model/batching-scorer.js';
export {
  Model,
  PARTSCAN_VERSION,
  DEFAULT_CHANNELS,
  DEFAULT_EPSILON,
  BLUR_SIGMA,
} from './model/model.js';
export type {
  FitOptions,
  ImageSource,
  ModelHeader,
  ProgressEvent,
  ScoreInput,
  ScoreOptions,
  ScoreResult,
} from './model/model.js';
export { evaluateModel } from './model/evaluate.js';
export type { Evaluation } from './model/evaluate.js';
export { readModelFile, writeModelFile, MODEL_MAGIC, MODEL_FORMAT_MAJOR, MODEL_FORMAT_MINOR } from './model/model-file.js';
export type { ModelFileContents, SectionInfo, SectionData, SectionDtype } from './model/model-file.js';

// Errors and shared types.
export { PartscanError, isPartscanError } from './errors.js';
export type { PartscanErrorCode, PartscanErrorInit, PartscanWarning } from './errors.js';
export type { Dataset, ImageInfo, PreprocessOptions, PreprocessedImage, Sample, Tensor4D } from './types.js';

// Stages.
export * from './preprocess/index.js';
export type { Backbone, BackboneIdentity } from './backbone/types.js';
export { OrtBackbone } from './backbone/ort-backbone.js';
export { SafeTensors } from './backbone/safetensors.js';
export { buildResNetOnnx, resnetLayerInfo } from './backbone/resnet.js';
export type { ResNetArch } from './backbone/resnet.js';
export { listIntermediateTensors, exposeIntermediateOutputs, suggestFeatureLayers } from './backbone/onnx-surgery.js';
export { BACKBONES, DEFAULT_BACKBONE, resolveBackbone, loadBackbone, isWeightsCached } from '../models/registry.js';
export type { BackboneSpec, ResolvedBackbone } from '../models/registry.js';
export { selectChannels, gatherEmbedding, channelSources } from './embedding/embedding.js';
export type { ChannelSource } from './embedding/embedding.js';
export { GaussianAccumulator, fitGaussiansLowRank, lowRankSampleLimit, packedSize, type FittedGaussians } from './stats/gaussian-stats.js';
export { StatsKernels, type LowRankResult } from './stats/ort-kernels.js';
export * from './postprocess/index.js';
export * from './metrics/index.js';
export * from './export/index.js';
export { writeReport } from './report/html.js';
export type { ReportOptions } from './report/html.js';
export { loadDataset, listImages, generateSyntheticParts } from '../datasets/index.js';
export type { SyntheticOptions } from '../datasets/index.js';
export * from './guards/index.js';
export { driftDescriptorFromTensor } from './guards/tensor-descriptor.js';
export type { FitReport } from './model/model.js';
export { stitchTiles } from './model/model.js';
export { CONTAMINATION_Z, CONTAMINATION_GAP, CONTAMINATION_GAP_FROM_Z, logRobustZ, scoreOutliers } from './guards/robust-stats.js';
export { contaminationSuspects, leaveOneOutScores } from './model/contamination.js';
export type { ContaminationSuspect } from './model/contamination.js';
export { preprocessTiles, tileLayout } from './preprocess/preprocess.js';
export type { TileBox } from './preprocess/preprocess.js';
export { exportModelOnnx } from './export/onnx-export.js';
export type { ExportOnnxOptions, ExportOnnxResult } from './export/onnx-export.js';
export { scoreToRunDir, writeScoredRun } from './export/score-run.js';
export type { ScoreRunOptions, ScoredRunManifest } from './export/score-run.js';
// Queue workers (BullMQ on Redis): scoring and fitting beyond one process (docs/WORKERS.md).
export * from './queue/index.js';
export { runDemo } from './demo.js';
export type { DemoOptions, DemoResult } from './demo.js';

// Line monitoring: control charts over a stream of scored images.
export { LineMonitor, DEFAULT_MONITOR_LAMBDA, DEFAULT_MONITOR_LIMIT, DEFAULT_MONITOR_CLIP, DEFAULT_MONITOR_ALPHA } from './monitor/line-monitor.js';
export type { LineMonitorOptions, MonitorInput, MonitorPoint, RunMonitor } from './monitor/line-monitor.js';
export type { MonitorReference } from './model/monitor-reference.js';
