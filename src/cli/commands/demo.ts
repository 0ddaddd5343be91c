/** `partscan demo`: the offline end-to-end demo on synthetic parts. */

import { runDemo } from '../../demo.js';
import { EXIT_OK } from '../exit-codes.js';
import { fmtNum, fmtPct as pct, toJson, type CliIo } from '../format.js';
import { formatVerdictLine } from '../format-verdicts.js';
import { createProgress } from '../progress.js';

export async function demoCommand(f: { dir: string; json?: boolean; cacheDir?: string; backbone?: string }, io: CliIo): Promise<number> {
  const progress = createProgress();
  let result;
  try {
    result = await runDemo({
      dir: f.dir,
      ...(f.backbone ? { backbone: f.backbone } : {}),
      onProgress: progress.onProgress,
      ...(f.cacheDir ? { cacheDir: f.cacheDir } : {}),
      onStep: (m) => {
        progress.stop();
        if (!f.json) io.err(`• ${m}\n`);
      },
    });
  } finally {
    progress.stop();
  }
  if (f.json) {
    io.out(toJson(result) + '\n');
    return EXIT_OK;
  }
  const m = result.metrics;
  io.out(
    [
      `partscan demo — ${result.backboneNote} — ${result.seconds.toFixed(1)} s`,
      `image AUROC ${fmtNum(m.image_auroc)}  pixel AUROC ${fmtNum(m.pixel_auroc)}  AUPRO ${fmtNum(m.aupro)}  F1-max ${fmtNum(m.image_f1_max)}  (${m.n_good} good, ${m.n_defect} defective)`,
      ...(m.verdicts ? [formatVerdictLine(m.verdicts)] : []),
      ...(m.shipped_operating_point?.target_false_reject_rate != null
        ? [`threshold at a ${pct(m.shipped_operating_point.target_false_reject_rate)} false-reject target, from the training images scored out of sample (docs/THRESHOLDS.md)`]
        : []),
      `model   ${result.modelPath}`,
      `report  ${result.reportPath}`,
    ].join('\n') + '\n',
  );
  return EXIT_OK;
}
