/**
 * The `partscan` command line: a thin shell over the public API (fit, Model, evaluateModel,
 * scoreToRunDir, writeReport, runDemo). It parses flags, calls the API, and prints — nothing else.
 *
 * Conventions:
 * - stdout carries results; with `--json` it carries exactly one JSON object (NaN → null) and nothing
 *   else. Progress bars and warnings go to stderr, bars only when stderr is a terminal.
 * - Exit codes: 0 success; 1 unexpected error (a bug); 2 usage error or a typed PartscanError (bad
 *   input, missing file, unwritable output...); 3 partial success: `score` / `eval --out` wrote the run
 *   but some images could not be scored (they are listed, with a count).
 * - Errors print one line, `partscan: <message>` (a PartscanError's message includes the file and the
 *   remedy); stack traces only with PARTSCAN_DEBUG=1.
 * - SIGINT, SIGTERM, SIGHUP cancel `fit`, `score` and `export`: their temp files and the outputs they
 *   created are removed and the process ends by the signal (see src/util/cancellation.ts).
 */

import { exportModelOnnx } from '../export/onnx-export.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { loadDataset } from '../../datasets/loaders.js';
import { BACKBONES, type BackboneSpec } from '../../models/registry.js';
import { PartscanError } from '../errors.js';
import { evaluateModel } from '../model/evaluate.js';
import { readModelFile } from '../model/model-file.js';
import { checkModelSections, parseModelHeader } from '../model/header-schema.js';
import { fit } from '../model/fit.js';
import { Model, PARTSCAN_VERSION, type FitOptions, type ModelHeader } from '../model/model.js';
import { scoreToRunDir, writeScoredRun, type ScoredRunManifest } from '../export/score-run.js';
import { writeReport } from '../report/html.js';
import { ensureOutputDir } from '../util/atomic-write.js';
import { runCancellable } from '../util/cancellation.js';
import { runDemo } from '../demo.js';
import { errorLine, fmtNum, formatBytes, formatTable, toJson } from './format.js';
import { formatVerdictLine, formatVerdictTable } from './format-verdicts.js';
import type { VerdictQuality } from '../metrics/verdicts.js';
import { expandImageArgs } from './inputs.js';
import { createProgress } from './progress.js';
import { fitQueueCommand, registerWorkerCommand } from './worker.js';
import type { CliIo } from './format.js';

export type { CliIo };

/** Exit code: success. */
export const EXIT_OK = 0;
/** Exit code: unexpected error (a bug; rerun with PARTSCAN_DEBUG=1 for the stack). */
export const EXIT_UNEXPECTED = 1;
/** Exit code: usage error or typed PartscanError. */
export const EXIT_USAGE = 2;
/** Exit code: the run was written but some images could not be scored. */
export const EXIT_PARTIAL = 3;

const defaultIo: CliIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

// ---------------------------------------------------------------------------------------------------
// Option parsers: turn flag text into typed values, or a usage error naming the flag.

function intArg(name: string, min: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got "${v}".`);
    return n;
  };
}

function shareArg(v: string): number {
  const n = Number(v);
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError(`must be a number in [0, 1), got "${v}".`);
  return n;
}

function listArg(v: string): string[] {
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('expects a comma-separated list.');
  return items;
}

function bandArg(v: string): { low: number; high: number } {
  const [low, high, ...rest] = v.split(',').map(Number);
  if (rest.length || !(low !== undefined && high !== undefined && low >= 0 && low < high && high <= 1)) {
    throw new InvalidArgumentError(`expects "low,high" with 0 ≤ low < high ≤ 1, got "${v}".`);
  }
  return { low, high };
}

// ---------------------------------------------------------------------------------------------------
// Commands

interface FitFlags {
  out: string;
  backbone?: string;
  layers?: string[];
  weights?: string;
  channels?: number;
  imageSize?: number;
  seed?: number;
  calibrationSplit?: number;
  calibration?: string;
  defects?: string;
  resume?: string;
  batchSize?: number;
  threads?: number;
  embedBackbone: boolean;
  compact?: boolean;
  roi?: string;
  band?: { low: number; high: number };
  cacheDir?: string;
  offline?: boolean;
  tile?: number;
  tileOverlap?: number;
  looMemory?: number;
  precision?: 'fp32' | 'int8';
  json?: boolean;
  queue?: string;
  queueName?: string;
}

async function fitCommand(data: string[], f: FitFlags, io: CliIo): Promise<number> {
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
  const opts: FitOptions = { backbone, onProgress: progress.onProgress };
  if (f.channels !== undefined) opts.channels = f.channels;
  if (f.imageSize !== undefined) opts.imageSize = f.imageSize;
  if (f.seed !== undefined) opts.seed = f.seed;
  if (f.calibrationSplit !== undefined) opts.calibrationSplit = f.calibrationSplit;
  if (f.calibration) opts.calibration = f.calibration;
  if (f.defects) opts.defects = (await loadDataset(f.defects)).test.filter((s) => s.anomalous);
  if (f.resume) opts.resume = f.resume;
  if (f.batchSize !== undefined) opts.batchSize = f.batchSize;
  if (f.threads !== undefined) opts.threads = f.threads;
  if (f.roi) opts.roi = f.roi;
  if (f.band) opts.band = f.band;
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
  // One argument may be a dataset root, a folder or a list file; several are image paths / folders / globs.
  const source = data.length === 1 && !/[*?[{]/.test(data[0]!) ? data[0]! : await expandImageArgs(data);
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
      `images     ${summary.images} fitted, ${summary.calibrationImages} for calibration`,
      `embedding  d ${summary.channels}, grid ${summary.grid.width}×${summary.grid.height}, input ${summary.imageSize} px`,
      t
        ? `thresholds image ${fmtNum(t.image)} (${t.method.image}), pixel ${fmtNum(t.pixel)} (${t.method.pixel})${t.band ? `, band ${t.band.low}..${t.band.high}` : ''}`
        : 'thresholds none (no calibration images): verdicts unavailable until calibrated',
      `time       ${summary.seconds.toFixed(1)} s`,
    ].join('\n') + '\n',
  );
  for (const w of summary.warnings) io.err(`warning: ${w.message}\n`);
  return EXIT_OK;
}

interface ScoreFlags {
  out: string;
  json?: boolean;
  minArea?: number;
  batchSize?: number;
  threads?: number;
  maxSide?: number;
  weights?: string;
  queue?: string;
  queueName?: string;
}

/**
 * Loads a model; `weights` supplies local safetensors for a model saved without its backbone
 * (--no-embed-backbone) when the registry weights are not cached.
 */
async function loadModel(file: string, threads?: number, weights?: string): Promise<Model> {
  const opts: Parameters<typeof Model.load>[1] = threads !== undefined ? { threads } : {};
  if (weights) {
    const header = parseModelHeader((await readModelFile(file, { sections: () => false })).header, file);
    const spec: BackboneSpec = { backbone: header.backbone.name, weights, offline: true };
    if (header.backbone.seed !== undefined) spec.seed = header.backbone.seed;
    opts.backbone = spec;
  }
  return Model.load(file, opts);
}

function runSummary(manifest: ScoredRunManifest, outDir: string) {
  const counts = { OK: 0, NG: 0, UNCERTAIN: 0, failed: manifest.failures.length };
  for (const r of manifest.results) counts[r.verdict]++;
  return {
    outDir: path.resolve(outDir),
    counts,
    results: manifest.results.map((r) => ({
      file: r.file,
      imageScore: r.imageScore,
      normalizedScore: r.normalizedScore,
      verdict: r.verdict,
      regions: r.regions.length,
      ...(r.label !== undefined ? { label: r.label } : {}),
      outputs: r.outputs ?? {},
      ...(r.warnings?.length ? { warnings: r.warnings } : {}),
    })),
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
    String(r.regions),
  ]);
  io.out(formatTable(['file', 'score', 'normalised', 'verdict', 'regions'], rows) + '\n');
  const c = summary.counts;
  io.out(`\n${c.OK} OK, ${c.NG} NG, ${c.UNCERTAIN} uncertain${c.failed ? `, ${c.failed} failed` : ''} — results in ${summary.outDir}\n`);
  if (summary.uncalibrated) io.err('warning: the model has no thresholds: verdicts are UNCERTAIN and scores relative to this run.\n');
  if (summary.monitor?.alarm) io.err(`line monitor ALARM at image ${summary.monitor.firstAlarmAt}:\n${summary.monitor.reasons.map((r) => `  ${r}\n`).join('')}`);
  for (const f of summary.failures) io.err(`failed: ${f.file}: ${f.message}\n`);
}

async function scoreCommand(modelFile: string, inputs: string[], f: ScoreFlags, io: CliIo): Promise<number> {
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
      ? await (await import('../queue/producer.js')).scoreOnQueue(modelFile, files, f.out, { ...common, model, redis: f.queue, ...(f.queueName ? { queue: f.queueName } : {}) })
      : await scoreToRunDir(model, files, f.out, { ...common, ...(f.batchSize !== undefined ? { batchSize: f.batchSize } : {}) });
  } finally {
    progress.stop();
    await model.dispose();
  }
  const summary = { ...runSummary(manifest, f.out), seconds: (performance.now() - t0) / 1000 };
  if (f.json) io.out(toJson(summary) + '\n');
  else printRun(summary, io);
  return manifest.failures.length ? EXIT_PARTIAL : EXIT_OK;
}

interface EvalFlags {
  json?: boolean;
  out?: string;
  batchSize?: number;
  threads?: number;
  weights?: string;
}

async function evalCommand(modelFile: string, dataset: string, f: EvalFlags, io: CliIo): Promise<number> {
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
  io.out(`\n${m.seconds.toFixed(1)} s${f.out ? ` — scored run in ${path.resolve(f.out)}` : ''}\n`);
  return code;
}

async function exportCommand(modelFile: string, f: { onnx: string; raw?: boolean; weights?: string; json?: boolean }, io: CliIo): Promise<number> {
  const t0 = performance.now();
  const model = await Model.load(modelFile, f.weights ? { backbone: { backbone: 'resnet50', weights: f.weights } } : {});
  try {
    const r = await exportModelOnnx(model, f.onnx, f.raw ? { raw: true } : {});
    const summary = { onnx: path.resolve(r.file), bytes: r.bytes, externalData: r.externalData ?? null, seconds: (performance.now() - t0) / 1000 };
    io.out(f.json ? toJson(summary) + '\n' : `${summary.onnx} (${formatBytes(r.bytes)}${r.externalData ? `, weights in ${r.externalData}` : ''})\n`);
  } finally {
    await model.dispose();
  }
  return EXIT_OK;
}

async function reportCommand(runDir: string, f: { out?: string; title?: string; json?: boolean }, io: CliIo): Promise<number> {
  const file = await writeReport(runDir, { ...(f.out ? { out: f.out } : {}), ...(f.title ? { title: f.title } : {}) });
  io.out(f.json ? toJson({ report: file }) + '\n' : `${file}\n`);
  return EXIT_OK;
}

async function infoCommand(modelFile: string, f: { json?: boolean }, io: CliIo): Promise<number> {
  // Reads the file only: no ONNX Runtime session is created for the backbone.
  const contents = await readModelFile(modelFile);
  const parsed = parseModelHeader(contents.header, modelFile);
  checkModelSections(parsed, contents.sections, modelFile);
  const { sections, ...header } = parsed;
  const bytes = (await fs.stat(modelFile)).size;
  const info = {
    file: path.resolve(modelFile),
    fileBytes: bytes,
    header,
    sections: sections.map((s) => ({ name: s.name, dtype: s.dtype, shape: s.shape, bytes: s.byteLength })),
  };
  if (f.json) {
    io.out(toJson(info) + '\n');
    return EXIT_OK;
  }
  const h = header as ModelHeader;
  const t = h.thresholds;
  const p = h.preprocess;
  io.out(
    [
      `file        ${info.file} (${formatBytes(bytes)})`,
      `format      ${h.format} ${h.formatVersion.join('.')}, written by partscan ${h.partscanVersion}`,
      `backbone    ${h.backbone.name} (${h.backbone.precision ?? 'fp32'}, layers ${h.backbone.layers.join(',')}, sha256 ${h.backbone.sha256.slice(0, 12)}…, ${h.backbone.embedded ? 'embedded' : BACKBONES[h.backbone.name]?.kind === 'bundled' ? 'not embedded: ships with partscan' : 'not embedded: needs the cached weights'})`,
      `preprocess  ${p.imageSize} px${p.cropSize ? `, crop ${p.cropSize}` : ''}, ${p.kernel}`,
      `embedding   d ${h.embedding.channels} of ${h.embedding.totalChannels}, seed ${h.embedding.seed}, grid ${h.embedding.gridW}×${h.embedding.gridH}`,
      `statistics  ${h.gaussian.images} images, ε ${h.gaussian.epsilon}, ${h.gaussian.resumable ? `resumable (${h.gaussian.resumeState === 'samples' ? 'keeps the samples' : 'keeps scatter matrices'})` : 'compact'}`,
      t
        ? `thresholds  image ${fmtNum(t.image)} (${t.method.image}), pixel ${fmtNum(t.pixel)} (${t.method.pixel})${t.band ? `, band ${t.band.low}..${t.band.high}` : ''}`
        : 'thresholds  none',
      ...(h.tiling ? [`tiling      ${h.tiling.tile} px tiles, overlap ${h.tiling.overlap}`] : []),
      ...(h.roi ? [`roi         ${h.roi.width}×${h.roi.height}`] : []),
      `sections    ${info.sections.map((s) => `${s.name} ${formatBytes(s.bytes)}`).join(', ')}`,
    ].join('\n') + '\n',
  );
  return EXIT_OK;
}

async function demoCommand(f: { dir: string; json?: boolean; cacheDir?: string; backbone?: string }, io: CliIo): Promise<number> {
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
      `model   ${result.modelPath}`,
      `report  ${result.reportPath}`,
    ].join('\n') + '\n',
  );
  return EXIT_OK;
}

// ---------------------------------------------------------------------------------------------------
// Program

function buildProgram(io: CliIo, setCode: (code: number) => void): Command {
  const program = new Command('partscan')
    .description('Industrial visual anomaly detection (PaDiM): fit on good parts, score new parts.')
    .version(PARTSCAN_VERSION, '-V, --version', 'print the partscan version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => io.err(s),
      outputError: (s, write) => write(`partscan: ${s.replace(/^error: /, '')}`),
    });
  const run = (fn: (...a: never[]) => Promise<number>) =>
    async (...args: unknown[]) => setCode(await (fn as (...a: unknown[]) => Promise<number>)(...args));

  program
    .command('fit')
    .description('fit a model on good images (a folder, an MVTec-style dataset root, a CSV list, or several images/globs)')
    .argument('<data...>', 'dataset root, folder, list file, or image files / folders / quoted globs')
    .requiredOption('-o, --out <file>', 'model file to write (e.g. model.partscan)')
    .addOption(new Option('--backbone <name>', `backbone: ${Object.keys(BACKBONES).join(', ')}, or an .onnx file`))
    .option('--layers <a,b,c>', 'feature layers (required for .onnx backbones)', listArg)
    .option('--weights <file>', 'local safetensors weights for a registry ResNet (no download)')
    .option('--channels <d>', 'embedding size d (default 100; all 152 for mobilenetv2-int8)', intArg('--channels', 1))
    .option('--image-size <px>', 'network input side (default 256; 224 for mobilenetv2-int8)', intArg('--image-size', 32))
    .option('--seed <n>', 'seed of the channel choice and calibration split (default 0)', intArg('--seed', 0))
    .option('--calibration-split <share>', 'share of good images held out for thresholds (default 0.1)', shareArg)
    .option('--calibration <dir>', 'separate good images for calibration (instead of a split)')
    .option('--defects <root-or-csv>', 'labelled defective images (MVTec root or CSV list) for F1-adaptive thresholds')
    .option('--resume <model>', 'continue from a resumable model, adding these images')
    .option('--batch-size <n>', 'images per backbone batch (default 16)', intArg('--batch-size', 1))
    .option('--threads <n>', 'ONNX Runtime threads', intArg('--threads', 1))
    .option('--no-embed-backbone', 'do not store the backbone graph in the model (smaller; needs the weights at score time)')
    .option('--compact', 'drop the resume statistics (smaller; the model cannot be resumed)')
    .option('--roi <mask.png>', 'region of interest: white = inspect, black = ignore')
    .option('--band <low,high>', 'uncertainty band in normalised units, e.g. 0.45,0.55', bandArg)
    .option('--cache-dir <dir>', 'backbone weights cache (default $PARTSCAN_CACHE_DIR or ~/.cache/partscan)')
    .option('--offline', 'never download weights')
    .addOption(new Option('--precision <p>', 'backbone precision: fp32 (default) or int8 (quantized, calibrated on the good images)').choices(['fp32', 'int8']))
    .option('--tile <px>', 'split images into tiles of this size at native resolution (large images)', intArg('--tile', 16))
    .option('--tile-overlap <px>', 'overlap between tiles (default tile/8)', intArg('--tile-overlap', 0))
    .option('--loo-memory <MiB>', 'memory for keeping training embeddings so the leave-one-out check needs no second backbone pass (default 1/8 of RAM; 0 = second pass)', intArg('--loo-memory', 0))
    .option('--queue <redis-url>', 'fit on a queue worker (partscan worker) via this Redis; paths must be on shared storage')
    .option('--queue-name <name>', 'queue name (default partscan)')
    .option('--json', 'print one JSON object')
    .action(run((data: string[], flags: FitFlags) => runCancellable([flags.out], () => fitCommand(data, flags, io))));

  program
    .command('score')
    .description('score images; writes overlays, heatmaps, masks and results.json/csv into --out')
    .argument('<model>', 'model file')
    .argument('<images...>', 'image files, folders, or quoted globs ("parts/**/*.png")')
    .requiredOption('-o, --out <dir>', 'run directory to write')
    .option('--min-area <px>', 'drop regions smaller than this (model-resolution pixels)', intArg('--min-area', 0))
    .option('--batch-size <n>', 'images per scoring batch (default 8, up to 32 for large --channels)', intArg('--batch-size', 1))
    .option('--max-side <px>', 'longest side of exported images (default 1024)', intArg('--max-side', 16))
    .option('--threads <n>', 'ONNX Runtime threads', intArg('--threads', 1))
    .option('--weights <file>', 'backbone safetensors, for a model saved with --no-embed-backbone')
    .option('--queue <redis-url>', 'score on queue workers (partscan worker) via this Redis; paths must be on shared storage')
    .option('--queue-name <name>', 'queue name (default partscan)')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExit status: 0 all scored, 3 some images could not be scored (listed), 2 bad input.')
    .action(run((model: string, images: string[], flags: ScoreFlags) => runCancellable([flags.out], () => scoreCommand(model, images, flags, io))));

  program
    .command('eval')
    .description('evaluate a model on a labelled dataset (image/pixel AUROC, AUPRO, F1-max)')
    .argument('<model>', 'model file')
    .argument('<dataset>', 'MVTec-style dataset root or labelled CSV list')
    .option('-o, --out <dir>', 'also write the scored run (exports + results) here')
    .option('--batch-size <n>', 'images per scoring batch (default 8, up to 32 for large --channels)', intArg('--batch-size', 1))
    .option('--threads <n>', 'ONNX Runtime threads', intArg('--threads', 1))
    .option('--weights <file>', 'backbone safetensors, for a model saved with --no-embed-backbone')
    .option('--json', 'print one JSON object (metrics; NaN as null)')
    .action(run((model: string, dataset: string, flags: EvalFlags) => evalCommand(model, dataset, flags, io)));

  program
    .command('report')
    .description('write the HTML QA report of a scored run')
    .argument('<run-dir>', 'run directory written by score / eval --out')
    .option('-o, --out <file.html>', 'report file (default <run-dir>/report.html)')
    .option('--title <text>', 'page title')
    .option('--json', 'print one JSON object')
    .action(run((runDir: string, flags: { out?: string; title?: string; json?: boolean }) => reportCommand(runDir, flags, io)));

  program
    .command('info')
    .description("show a model file's header: backbone, preprocessing, embedding, thresholds, sizes")
    .argument('<model>', 'model file')
    .option('--json', 'print one JSON object')
    .action(run((model: string, flags: { json?: boolean }) => infoCommand(model, flags, io)));

  program
    .command('export')
    .description('export a fitted model as one ONNX graph (backbone + PaDiM head + blur + normalisation)')
    .argument('<model>', 'model file')
    .requiredOption('--onnx <file>', 'output .onnx file (an external .data file is written beside it for > 2 GB models)')
    .option('--raw', 'output raw scores instead of normalised ones')
    .option('--weights <file>', 'backbone safetensors, for a model saved with --no-embed-backbone')
    .option('--json', 'print one JSON object')
    .action(
      run((model: string, flags: { onnx: string; raw?: boolean; weights?: string; json?: boolean }) =>
        runCancellable([flags.onnx, `${flags.onnx}.data`], () => exportCommand(model, flags, io)),
      ),
    );

  program
    .command('demo')
    .description('offline end-to-end demo on generated synthetic parts: fit, evaluate, report')
    .option('--dir <dir>', 'work folder', 'partscan-demo')
    .option('--cache-dir <dir>', 'backbone weights cache')
    .option('--backbone <name>', 'registry backbone (default mobilenetv2-int8, shipped; resnet50-random for a smoke run)')
    .option('--json', 'print one JSON object')
    .action(run((flags: { dir: string; json?: boolean; cacheDir?: string; backbone?: string }) => demoCommand(flags, io)));

  registerWorkerCommand(program, io, run);

  return program;
}

/**
 * Runs the CLI on `argv` (as in `process.argv`: node, script, then arguments) and returns the exit
 * code instead of exiting, so it can be embedded and tested. See the module comment for conventions.
 */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  let code = EXIT_OK;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version "errors" are successes; commander already printed usage errors.
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    io.err(`partscan: ${errorLine(e)}\n`);
    return e instanceof PartscanError ? EXIT_USAGE : EXIT_UNEXPECTED;
  }
}
