/**
 * Input guards: training-set checks (duplicates, constant images, size/colour outliers) and
 * whole-image drift statistics.
 */

export { DEFAULT_DRIFT_K, DEFAULT_RELATIVE_FLOOR, driftScore, fitDriftModel, parseDriftModel } from './drift.js';
export type { DriftFitOptions, DriftModel, DriftResult } from './drift.js';
export * from './fingerprint.js';
export * from './image-stats.js';
export * from './phash.js';
export * from './resample.js';
export * from './thumbnail.js';
export * from './training-set.js';
