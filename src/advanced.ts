/**
 * `partscan/advanced` — the building blocks under the root API, for callers who compose their own
 * pipeline: preprocessing, backbones and ONNX surgery, embeddings and Gaussian statistics,
 * post-processing and thresholds, metrics, training-set and drift guards, run-file writers, the
 * model file format and queue job types.
 *
 * Everything here was public before the root entry was curated; nothing is repeated from the root
 * (`partscan`), so each name has one entry. test/public-api.test.ts checks that the two stay disjoint.
 *
 * @packageDocumentation
 */

// Fit and model internals: calibration split, tiling, contamination, model-file format.
export { splitCalibration, trainingImages } from './model/fit.js';
export { PARTSCAN_VERSION, DEFAULT_CHANNELS, DEFAULT_EPSILON, BLUR_SIGMA, stitchTiles } from './model/model.js';
export type { MapBatch } from './model/types.js';
export { readModelFile, writeModelFile, MODEL_MAGIC, MODEL_FORMAT_MAJOR, MODEL_FORMAT_MINOR } from './model/model-file.js';
export type { ModelFileContents, SectionInfo, SectionData, SectionDtype } from './model/model-file.js';
export { contaminationSuspects, leaveOneOutScores, leaveOneOutScoresFromEmbeddings, looTransform, outOfSampleByBackbone, outOfSampleFromEmbeddings } from './model/out-of-sample.js';
export type { ContaminationSuspect, OutOfSampleGrids } from './model/out-of-sample.js';
export { fitStandardization, STANDARDIZE_QUANTILE } from './postprocess/standardize.js';
export type { FittedStandardization, PositionStandardization } from './postprocess/standardize.js';
export { CalibrationPool } from './model/calibration-pool.js';
export type { CalibrationSource, CalibrationSources, CalibrationSummary, KeyedRow, PoolEntry } from './model/calibration-pool.js';
export { MODEL_IDENTITY_VERSION, modelScoringSha256 } from './model/model-identity.js';

// QA review files (review.json): format, schema, reading, the image files they name.
export { parseReview, readReviewFile, REVIEW_FORMAT, REVIEW_LIMITS, reviewFileSchema, reviewItemSchema } from './review/review-file.js';
export type { ReviewItem, ReviewLabel, ReviewedPart } from './review/review-file.js';
export { resolveReviewImages } from './review/review-images.js';
export type { ResolvedReviewItem } from './review/review-images.js';
export type { MonitorReference } from './model/monitor-reference.js';

// Errors and shared types.
export type { PartscanErrorInit } from './errors.js';
export type { ImageInfo, PreprocessOptions, PreprocessedImage, Tensor4D } from './types.js';

// Stages.
export * from './preprocess/index.js';
export { fitInside, preprocessTiles, tileLayout } from './preprocess/preprocess.js';
export { FRAME_SOURCE, checkRawFrame } from './preprocess/raw-frame.js';
export type { TileBox } from './preprocess/preprocess.js';
export type { Backbone, BackboneIdentity } from './backbone/types.js';
export { OrtBackbone, type OrtBackboneOptions } from './backbone/ort-backbone.js';
export { SafeTensors, type SafeTensorEntry } from './backbone/safetensors.js';
export { buildResNetOnnx, resnetLayerInfo } from './backbone/resnet.js';
export type { BuildResNetOptions, ResNetArch, ResNetLayerInfo, ResNetWeights, WeightLookup, WeightTensor } from './backbone/resnet.js';
export { describeIntermediateTensors, listIntermediateTensors, exposeIntermediateOutputs, suggestFeatureLayers } from './backbone/onnx-surgery.js';
export type { IntermediateTensorInfo, OnnxSurgeryOptions, SuggestedFeatureLayer } from './backbone/onnx-surgery.js';
export { BACKBONES, DEFAULT_BACKBONE, resolveBackbone, loadBackbone, isWeightsCached } from './backbone/registry.js';
export type { BackboneRegistryEntry, BundledRegistryEntry, ResNetRegistryEntry, ResolvedBackbone } from './backbone/registry.js';
export { selectChannels, gatherEmbedding, channelSources } from './embedding/embedding.js';
export type { ChannelSource } from './embedding/embedding.js';
export { GaussianAccumulator, fitGaussiansLowRank, lowRankSampleLimit, packedSize, type FittedGaussians } from './stats/gaussian-stats.js';
export { StatsKernels, type LowRankResult } from './stats/ort-kernels.js';

// Post-processing (Region and Verdict are in the root entry).
export * from './postprocess/blur.js';
export * from './postprocess/morphology.js';
export * from './postprocess/normalize.js';
export * from './postprocess/resize.js';
export * from './postprocess/roi.js';
export * from './postprocess/shape.js';
export { binaryMask, connectedRegions, extractRegions, regionsInImage } from './postprocess/regions.js';
export type { ExtractRegionsOptions, ExtractedRegions, PixelBox, PixelPoint, RegionOptions } from './postprocess/regions.js';
export { DEFAULT_UNCERTAIN_BAND, imageNormalization, pixelNormalization, validateBand, verdict } from './postprocess/thresholds.js';
export type { EstimatedRate, GoodOnlyRule, OperatingPoint, QuantileRule, ScoreRange, SigmaRule, ThresholdMethod, Thresholds, VerdictBand } from './postprocess/thresholds.js';
export {
  DEFAULT_GOOD_RULE,
  DEFAULT_MAX_POOLED_PIXELS,
  describeRule,
  f1AdaptiveThreshold,
  pixelF1Threshold,
  pixelThresholdFromGood,
  quantileSorted,
  thresholdFromGood,
} from './postprocess/threshold-rules.js';
export type { F1Threshold } from './postprocess/threshold-rules.js';
export { DEFAULT_FALSE_REJECT_TARGET, FEW_GOOD_IMAGES, selectThresholds } from './postprocess/operating-point.js';
export type { CalibrationScores, ThresholdOptions, ThresholdRule, ThresholdSelection } from './postprocess/operating-point.js';
export { fitExponentialTail, tailExceedance, tailExceedanceUpper95, tailQuantile } from './postprocess/tail-model.js';
export type { ExponentialTail, TailFit } from './postprocess/tail-model.js';
export { clopperPearson } from './metrics/intervals.js';
export type { RateInterval } from './metrics/intervals.js';

// Metrics.
export * from './metrics/index.js';
export type { F1Cut } from './metrics/pr-sweep.js';

// Run files: images, colormaps, results.json/csv (ImageResult and RunManifest are in the root entry).
export * from './export/colormap.js';
export * from './export/images.js';
export {
  CSV_COLUMNS,
  RESULTS_CSV,
  RESULTS_JSON,
  csvField,
  readRunManifest,
  resultsToCsv,
  writeResultsCsv,
  writeResultsJson,
  writeRunResults,
  type RunResultFiles,
} from './export/results.js';
// The pieces of scoreToRunDir, for callers that assemble their own run (examples/watch-folder.ts).
export { DEFAULT_EXPORT_MAX_SIDE, buildManifest, exportScoredImage, uniqueStems } from './export/score-run.js';
export { resultLayers } from './export/render.js';
export type { RenderKind, ResultLayers } from './export/render.js';
export type { RunExports } from './export/score-run.js';
export type { ExportOnnxResult } from './export/onnx-export.js';
// Results the root's calls return, named for callers who store them.
export type { PooledModel } from './model/model-pool.js';
export type { ReviewJoinSummary } from './model/types.js';
export { DEFAULT_INLINE_BUDGET } from './report/html.js';
export { EXTERNAL_DATA_AUTO_TENSOR_BYTES, EXTERNAL_DATA_AUTO_TOTAL_BYTES } from './export/onnx-export.js';
export { DEMO_BACKBONE } from './demo.js';

// Datasets.
export { listImages, generateSyntheticParts } from './data/index.js';
export type { SyntheticOptions } from './data/index.js';

// Guards: training set, contamination statistics, drift.
export * from './guards/index.js';
export { driftDescriptorFromTensor } from './guards/tensor-descriptor.js';
export { CONTAMINATION_Z, CONTAMINATION_GAP, CONTAMINATION_GAP_FROM_Z, logRobustZ, scoreOutliers } from './guards/robust-stats.js';

// Queue job payloads (the queue functions and their options are in the root entry).
export type { FitJobData, FitJobResult, QueueWorkerHandle, ScoreJobData, ScoreJobRecord } from './queue/index.js';

// Line-monitor defaults.
export {
  DEFAULT_MONITOR_LAMBDA,
  DEFAULT_MONITOR_LIMIT,
  DEFAULT_MONITOR_CLIP,
  DEFAULT_MONITOR_ALPHA,
  DEFAULT_MONITOR_MIN_SHIFT,
  DEFAULT_MONITOR_MIN_NG_RISE,
} from './monitor/line-monitor.js';
export type { DriftFeature, MonitorPoint } from './monitor/line-monitor.js';
export { ENVELOPE_NEIGHBOURS, ENVELOPE_TAIL, ENVELOPE_LOCAL_SHARE } from './monitor/envelope.js';
