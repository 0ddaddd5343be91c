/**
 * Evaluation metrics: image/pixel AUROC, MVTec AUPRO, F1-max, and a one-call run evaluation.
 */

export * from './aupro.js';
export * from './auroc.js';
export * from './common.js';
export * from './components.js';
export * from './evaluate.js';
export * from './f1.js';
export * from './sort.js';
export * from './verdicts.js';
export * from './operating-curve.js';
