/**
 * Post-processing: anomaly maps from the score grid to verdicts, masks and regions.
 * resize → blur → normalise → threshold → mask / regions.
 */

export * from './blur.js';
export * from './morphology.js';
export * from './normalize.js';
export * from './regions.js';
export * from './resize.js';
export * from './roi.js';
export * from './shape.js';
export * from './threshold-rules.js';
export * from './thresholds.js';
