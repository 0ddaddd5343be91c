/** `partscan eval`: metrics of a model on a labelled dataset, optionally with its scored run. */

import path from 'node:path';
import { writeScoredRun } from '../../export/score-run.js';
import type { VerdictQuality } from '../../metrics/verdicts.js';
import { evaluateModel, type Evaluation } from '../../model/evaluate.js';
import { ensureOutputDir } from '../../util/atomic-write.js';
import { EXIT_OK, EXIT_PARTIAL } from '../exit-codes.js';
import { fmtNum, formatTable, toJson, type CliIo } from '../format.js';
import { formatOperatingCurve, formatVerdictTable } from '../format-verdicts.js';
import { loadModel } from '../load-model.js';
import { createProgress } from '../progress.js';

export interface EvalFlags {
  json?: boolean;
  out?: string;
  batchSize?: number;
  threads?: number;
  weights?: string;
}

export async function evalCommand(modelFile: string, dataset: string, f: EvalFlags, io: CliIo): Promise<number> {
  if (f.out) await ensureOutputDir(f.out);
  const model = await loadModel(modelFile, f.threads, f.weights);
  const progress = createProgress();
  let code = EXIT_OK;
  let output: Record<string, unknown>;
  try {
    const evaluation = await evaluateModel(model, dataset, {
      onProgress: progress.onProgress,
      ...(f.batchSize !== undefined ? { batchSize: f.batchSize } : {}),
    });
    progress.stop();
    output = { ...evaluation.metrics, seconds: evaluation.seconds, model: path.resolve(modelFile), dataset: path.resolve(dataset) };
    if (f.out) {
      const labels = new Map(evaluation.items.map((it) => [it.result.source, it.sample.label]));
      const manifest = await writeScoredRun(
        model,
        evaluation.items.map((it) => it.result),
        f.out,
        { labels, modelPath: modelFile },
      );
      output.out = path.resolve(f.out);
      output.failures = manifest.failures;
      if (manifest.failures.length) code = EXIT_PARTIAL;
    }
  } finally {
    progress.stop();
    await model.dispose();
  }
  if (f.json) {
    io.out(toJson(output) + '\n');
    return code;
  }
  const m = output as unknown as { image_auroc: number; pixel_auroc: number; aupro: number; image_f1_max: number; n_good: number; n_defect: number; seconds: number; per_defect: Record<string, { image_auroc: number; pixel_auroc: number; aupro: number; image_f1_max: number; n_defect: number }> };
  const rows = [
    ['all', fmtNum(m.image_auroc), fmtNum(m.pixel_auroc), fmtNum(m.aupro), fmtNum(m.image_f1_max), `${m.n_good}/${m.n_defect}`],
    ...Object.entries(m.per_defect).map(([k, s]) => [k, fmtNum(s.image_auroc), fmtNum(s.pixel_auroc), fmtNum(s.aupro), fmtNum(s.image_f1_max), `${m.n_good}/${s.n_defect}`]),
  ];
  io.out(formatTable(['set', 'image AUROC', 'pixel AUROC', 'AUPRO', 'F1-max', 'good/defect'], rows) + '\n');
  const verdicts = output.verdicts as VerdictQuality | null;
  io.out(verdicts ? `\nat the model's threshold:\n${formatVerdictTable(verdicts)}\n` : '\nverdicts: none (the model has no thresholds)\n');
  const curve = output as unknown as Pick<Evaluation['metrics'], 'operating_points' | 'shipped_operating_point'>;
  io.out(`\noperating curve on this set (partscan calibrate --false-reject r moves the threshold):\n${formatOperatingCurve(curve.operating_points, curve.shipped_operating_point)}\n`);
  io.out(`\n${m.seconds.toFixed(1)} s${f.out ? ` — scored run in ${path.resolve(f.out)}` : ''}\n`);
  return code;
}
