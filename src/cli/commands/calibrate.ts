/** `partscan calibrate`: moves a fitted model's operating point without refitting and writes the model. */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { calibrate, type CalibrateOptions } from '../../model/recalibrate.js';
import { EXIT_OK } from '../exit-codes.js';
import { toJson, type CliIo } from '../format.js';
import { formatOperatingPoint, formatReviewJoin } from '../format-thresholds.js';
import { loadModel } from '../load-model.js';
import { thresholdRuleOf, THRESHOLD_RULE_NAMES } from '../options.js';
import { createProgress } from '../progress.js';

export interface CalibrateFlags {
  out: string;
  falseReject?: number;
  reviewBand?: number;
  thresholdRule?: (typeof THRESHOLD_RULE_NAMES)[number];
  defects?: string;
  good?: string;
  review?: string;
  imageRoot?: string[];
  batchSize?: number;
  threads?: number;
  weights?: string;
  json?: boolean;
}

export async function calibrateCommand(modelFile: string, f: CalibrateFlags, io: CliIo): Promise<number> {
  const t0 = performance.now();
  const model = await loadModel(modelFile, f.threads, f.weights);
  const progress = createProgress();
  try {
    const opts: CalibrateOptions = { onProgress: progress.onProgress };
    if (f.falseReject !== undefined) opts.falseRejectTarget = f.falseReject;
    if (f.reviewBand !== undefined) opts.reviewBand = f.reviewBand;
    if (f.thresholdRule) opts.thresholdRule = thresholdRuleOf(f.thresholdRule);
    if (f.defects) opts.defects = f.defects;
    if (f.good) opts.good = f.good;
    if (f.review) opts.review = f.review;
    if (f.imageRoot?.length) opts.imageRoots = f.imageRoot;
    if (f.batchSize !== undefined) opts.batchSize = f.batchSize;
    const r = await calibrate(model, opts);
    progress.stop();
    // Same kind of file as the input: backbone embedded or not, resumable or compact.
    await model.save(f.out, { embedBackbone: model.header.backbone.embedded, resumable: model.header.gaussian.resumable });
    const summary = {
      model: path.resolve(f.out),
      from: path.resolve(modelFile),
      thresholds: r.thresholds,
      previous: r.previous ?? null,
      added: r.added,
      ...(r.review ? { review: r.review } : {}),
      calibration: model.header.calibration ?? null,
      warnings: r.warnings,
      fileBytes: (await fs.stat(f.out)).size,
      seconds: (performance.now() - t0) / 1000,
    };
    if (f.json) {
      io.out(toJson(summary) + '\n');
      return EXIT_OK;
    }
    io.out(`model      ${summary.model}\n${r.review ? `${formatReviewJoin(r.review)}\n` : ''}${formatOperatingPoint(r.thresholds)}\n`);
    if (r.previous) io.out(`before     image ${r.previous.image.toPrecision(4)}, pixel ${r.previous.pixel.toPrecision(4)} (${r.previous.method.image})\n`);
    io.out(`time       ${summary.seconds.toFixed(1)} s\n`);
    for (const w of r.warnings) io.err(`warning: ${w.message}\n`);
    return EXIT_OK;
  } finally {
    progress.stop();
    await model.dispose();
  }
}
