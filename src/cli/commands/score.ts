/** `partscan score`: scores images into a run folder (locally or on queue workers). */

import path from 'node:path';
import { scoreToRunDir, type ScoredRunManifest } from '../../export/score-run.js';
import { ensureOutputDir } from '../../util/atomic-write.js';
import { EXIT_ALARM, EXIT_OK, EXIT_PARTIAL } from '../exit-codes.js';
import { fmtNum, formatTable, toJson, type CliIo } from '../format.js';
import { expandImageArgs } from '../inputs.js';
import { loadModel } from '../load-model.js';
import { createProgress } from '../progress.js';

export interface ScoreFlags {
  out: string;
  json?: boolean;
  minArea?: number;
  batchSize?: number;
  threads?: number;
  maxSide?: number;
  weights?: string;
  queue?: string;
  queueName?: string;
  failOnAlarm?: boolean;
}

function runSummary(manifest: ScoredRunManifest, outDir: string) {
  const counts = { OK: 0, NG: 0, UNCERTAIN: 0, failed: manifest.failures.length };
  for (const r of manifest.results) counts[r.verdict]++;
  return {
    outDir: path.resolve(outDir),
    counts,
    // Each entry exactly as in the run's results.json (regions as an array, in source-image pixels).
    results: manifest.results,
    failures: manifest.failures,
    ...(manifest.uncalibrated ? { uncalibrated: true } : {}),
    ...(manifest.monitor ? { monitor: monitorSummary(manifest.monitor) } : {}),
  };
}

/** The run-level monitoring result without its per-image chart data. */
function monitorSummary({ points: _p, ...m }: NonNullable<ScoredRunManifest['monitor']>) {
  return m;
}

/** A path for tables: relative to the working directory when inside it, else as given. */
function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

function printRun(summary: ReturnType<typeof runSummary>, io: CliIo): void {
  const rows = summary.results.map((r) => [
    displayPath(r.file),
    fmtNum(r.imageScore, 2),
    fmtNum(r.normalizedScore, 3),
    r.verdict,
    String(r.regions.length),
  ]);
  io.out(formatTable(['file', 'score', 'normalised', 'verdict', 'regions'], rows) + '\n');
  const c = summary.counts;
  io.out(`\n${c.OK} OK, ${c.NG} NG, ${c.UNCERTAIN} uncertain${c.failed ? `, ${c.failed} failed` : ''} — results in ${summary.outDir}\n`);
  if (summary.uncalibrated) io.err('warning: the model has no thresholds: verdicts are UNCERTAIN and scores relative to this run.\n');
  if (summary.monitor?.alarm) io.err(`line monitor ALARM at image ${summary.monitor.firstAlarmAt}:\n${summary.monitor.reasons.map((r) => `  ${r}\n`).join('')}`);
  for (const f of summary.failures) io.err(`failed: ${f.file}: ${f.message}\n`);
}

export async function scoreCommand(modelFile: string, inputs: string[], f: ScoreFlags, io: CliIo): Promise<number> {
  const t0 = performance.now();
  await ensureOutputDir(f.out);
  const files = await expandImageArgs(inputs);
  const model = await loadModel(modelFile, f.threads, f.weights);
  const progress = createProgress();
  let manifest: ScoredRunManifest;
  try {
    const common = {
      onProgress: progress.onProgress,
      modelPath: modelFile,
      ...(f.minArea !== undefined ? { minArea: f.minArea } : {}),
      ...(f.maxSide !== undefined ? { maxSide: f.maxSide } : {}),
    };
    manifest = f.queue
      ? await (await import('../../queue/index.js')).scoreOnQueue(modelFile, files, f.out, { ...common, model, redis: f.queue, ...(f.queueName ? { queue: f.queueName } : {}) })
      : await scoreToRunDir(model, files, f.out, { ...common, ...(f.batchSize !== undefined ? { batchSize: f.batchSize } : {}) });
  } finally {
    progress.stop();
    await model.dispose();
  }
  const summary = { ...runSummary(manifest, f.out), seconds: (performance.now() - t0) / 1000 };
  if (f.json) io.out(toJson(summary) + '\n');
  else printRun(summary, io);
  if (f.failOnAlarm && manifest.monitor?.alarm) return EXIT_ALARM;
  return manifest.failures.length ? EXIT_PARTIAL : EXIT_OK;
}
