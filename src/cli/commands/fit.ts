/** `partscan fit`: fits a model on good images and saves it (or hands the fit to a queue worker). */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../../data/loaders.js';
import type { BackboneSpec } from '../../backbone/registry.js';
import { PartscanError } from '../../errors.js';
import { fit } from '../../model/fit.js';
import type { Model } from '../../model/model.js';
import type { FitOptions } from '../../model/fit-options.js';
import { ensureOutputDir } from '../../util/atomic-write.js';
import { EXIT_OK } from '../exit-codes.js';
import { formatBytes, toJson, type CliIo } from '../format.js';
import { expandImageArgs } from '../inputs.js';
import { createProgress } from '../progress.js';
import { fitQueueCommand } from './worker.js';
import { thresholdRuleOf, type FitFlags } from '../options.js';
import { formatOperatingPoint, formatReviewJoin } from '../format-thresholds.js';

export type { FitFlags };


export async function fitCommand(data: string[], f: FitFlags, io: CliIo): Promise<number> {
  const t0 = performance.now();
  // Fail on an unusable output location before minutes of fitting.
  await ensureOutputDir(path.dirname(path.resolve(f.out)));
  const outStat = await fs.stat(f.out).catch(() => undefined);
  if (outStat?.isDirectory()) {
    throw new PartscanError('OUTPUT', `--out ${f.out} is a directory.`, { file: f.out, remedy: 'give a file path such as model.partscan' });
  }
  if (f.queue) return fitQueueCommand(data, f, io);
  const backbone: BackboneSpec = {};
  if (f.backbone !== undefined) backbone.backbone = f.backbone;
  if (f.layers) backbone.layers = f.layers;
  if (f.weights) backbone.weights = f.weights;
  if (f.cacheDir) backbone.cacheDir = f.cacheDir;
  if (f.offline) backbone.offline = true;
  const progress = createProgress();
  // A resumed fit keeps its model's backbone (embedded, or rebuilt from the header): a spec only when one is named.
  const namesBackbone = f.backbone !== undefined || f.weights !== undefined || f.layers !== undefined;
  const opts: FitOptions = { ...(f.resume && !namesBackbone ? {} : { backbone }), onProgress: progress.onProgress };
  if (f.channels !== undefined) opts.channels = f.channels;
  if (f.imageSize !== undefined) opts.imageSize = f.imageSize;
  if (f.seed !== undefined) opts.seed = f.seed;
  if (f.calibrationSplit !== undefined) opts.calibrationSplit = f.calibrationSplit;
  if (f.calibration) opts.calibration = f.calibration;
  if (f.defects) opts.defects = (await loadDataset(f.defects)).test.filter((s) => s.anomalous);
  if (f.resume) opts.resume = f.resume;
  if (f.review) opts.review = f.review;
  if (f.imageRoot?.length) opts.imageRoots = f.imageRoot;
  if (f.batchSize !== undefined) opts.batchSize = f.batchSize;
  if (f.threads !== undefined) opts.threads = f.threads;
  if (f.roi) opts.roi = f.roi;
  if (f.band) opts.band = f.band;
  if (f.falseReject !== undefined) opts.falseRejectTarget = f.falseReject;
  if (f.reviewBand !== undefined) opts.reviewBand = f.reviewBand;
  if (f.thresholdRule) opts.thresholdRule = thresholdRuleOf(f.thresholdRule);
  if (f.imageScore) opts.imageScore = f.imageScore;
  if (f.looMemory !== undefined) opts.contaminationMemory = f.looMemory * 2 ** 20;
  if (f.precision !== undefined) opts.precision = f.precision;
  if (f.precision === 'int8' && !f.embedBackbone) {
    // Model.save refuses it too; saying so now saves the minutes of fitting.
    throw new PartscanError('OPTIONS', '--precision int8 needs the backbone embedded: an int8 model must embed its backbone.', {
      remedy: 'drop --no-embed-backbone, or use --precision fp32',
    });
  }
  if (f.tile !== undefined) opts.tile = { size: f.tile, overlap: f.tileOverlap ?? Math.round(f.tile / 8) };
  else if (f.tileOverlap !== undefined) {
    throw new PartscanError('OPTIONS', '--tile-overlap needs --tile.', { remedy: 'add --tile <px>, e.g. --tile 256 --tile-overlap 32' });
  }
  if (data.length === 0 && !(f.resume && f.review)) {
    throw new PartscanError('OPTIONS', 'fit needs the good images to fit on.', { remedy: 'give a dataset root, a folder, a list file or images (or --resume <model> --review <review.json>)' });
  }
  // One argument may be a dataset root, a folder or a list file; several are image paths / folders / globs.
  const source = data.length === 0 ? [] : data.length === 1 && !/[*?[{]/.test(data[0]!) ? data[0]! : await expandImageArgs(data);
  let model: Model;
  try {
    model = await fit(source, opts);
  } finally {
    progress.stop();
  }
  try {
    await model.save(f.out, { embedBackbone: f.embedBackbone, resumable: !f.compact });
  } finally {
    await model.dispose();
  }
  const bytes = (await fs.stat(f.out)).size;
  const h = model.header;
  const summary = {
    model: path.resolve(f.out),
    backbone: h.backbone.name,
    precision: h.backbone.precision ?? 'fp32',
    images: h.gaussian.images,
    calibrationImages: h.fit.calibrationImages,
    channels: h.embedding.channels,
    grid: { width: h.embedding.gridW, height: h.embedding.gridH },
    imageSize: h.preprocess.imageSize,
    thresholds: h.thresholds ?? null,
    warnings: (model.fitWarnings ?? []).map((w) => ({ code: w.code, message: w.message, ...(w.file ? { file: w.file } : {}) })),
    suspects: model.fitReport?.suspects ?? [],
    ...(model.fitReport?.review ? { review: model.fitReport.review } : {}),
    embeddedBackbone: f.embedBackbone,
    resumable: !f.compact,
    fileBytes: bytes,
    seconds: (performance.now() - t0) / 1000,
  };
  if (f.json) {
    io.out(toJson(summary) + '\n');
    return EXIT_OK;
  }
  const t = h.thresholds;
  io.out(
    [
      `model      ${summary.model} (${formatBytes(bytes)}${f.embedBackbone ? ', backbone embedded' : ''}${f.compact ? ', compact' : ''})`,
      `backbone   ${summary.backbone} (${summary.precision})`,
      `images     ${summary.images} fitted, ${summary.calibrationImages} scored out of sample for the thresholds`,
      `embedding  d ${summary.channels}, grid ${summary.grid.width}×${summary.grid.height}, input ${summary.imageSize} px`,
      `image score ${h.imageScore?.kind === 'standardized' ? 'standardised per position' : 'anomaly-map maximum'}`,
      ...(summary.review ? [formatReviewJoin(summary.review)] : []),
      t ? formatOperatingPoint(t) : 'thresholds none (too few good images to calibrate): verdicts unavailable until calibrated',
      `time       ${summary.seconds.toFixed(1)} s`,
    ].join('\n') + '\n',
  );
  for (const w of summary.warnings) io.err(`warning: ${w.message}\n`);
  return EXIT_OK;
}
