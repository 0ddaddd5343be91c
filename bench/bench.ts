/**
 * partscan benchmark: fits and scores a dataset and prints one JSON object.
 *
 *   npm run bench -- [--data ../shared/datasets/mvtec_bottle] [--backbone resnet50|mobilenetv2-int8] [--channels 100] [--image-size 224]
 *                    [--batch 16] [--score-batch N (default: the model's, 8 … 32 by d)] [--threads N] [--latency-samples 20] [--out model.partscan]
 *                    [--no-huge-pages] [--no-cli] [--no-reference] [--no-bundled] [--precision P]
 *
 * Figures: fit images/s, score ms/image (batch 1 and batched), p50/p95 single-image latency through the
 * public API (one call at a time, and every test image as a concurrent request through a
 * BatchingScorer), peak RSS after fit and at the end (process maxRSS), model file bytes, and the AUROCs
 * so speed is never bought with accuracy. Beside them (bench/default-path.ts): the default CLI fit and
 * eval as a user runs them (spawned; guards, leave-one-out check, calibration split), eval split into
 * scoring and metrics, the backbone-only floor, the PyTorch reference's fit and score times with the
 * same data and settings (when /usr/bin/python3 has torch), the CPU's ISA flags, and the ratios; the
 * footprint of the bench's model in a fresh process (RSS per model, cold start to the first verdict,
 * changeover between part types in a ModelPool) and the bundled backbone at its defaults (CLI fit and
 * eval against its backbone floor, file sizes, footprint).
 * `--precision P` is passed to both fits (`partscan fit --precision P`, `fit({ precision })`) for
 * backbones with a choice of precision.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fit } from '../src/model/fit.js';
import { DEFAULT_CHANNELS } from '../src/model/model.js';
import { backboneDefaults } from '../src/backbone/registry.js';
import { BatchingScorer } from '../src/model/batching-scorer.js';
import { evaluateModel } from '../src/model/evaluate.js';
import { loadDataset } from '../src/data/loaders.js';
import { hugePagesEnabled, relaunchWithHugePages } from '../src/util/huge-pages.js';
import type { FitOptions } from '../src/model/fit-options.js';
import { backboneFloor, bundledDefaultRun, cpuInfo, defaultCliRuns, footprintRun, referenceRun, startupBreakdown } from './default-path.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'datasets', 'mvtec_bottle') },
    // Default: the backbone's own (all 152 channels of the bundled mobilenetv2-int8), else 100.
    channels: { type: 'string' },
    'image-size': { type: 'string', default: '224' },
    batch: { type: 'string', default: '16' },
    'score-batch': { type: 'string' },
    threads: { type: 'string' },
    backbone: { type: 'string', default: 'resnet50' },
    weights: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'reference', 'resnet50-random-seed0.safetensors') },
    'latency-samples': { type: 'string', default: '20' },
    out: { type: 'string' },
    guards: { type: 'boolean', default: false },
    // Backbone precision of the fit (fp32 | int8; see docs/PRECISION.md).
    precision: { type: 'string', default: 'fp32' },
    // Measure without transparent huge pages (as an embedding program that does not set GLIBC_TUNABLES).
    'no-huge-pages': { type: 'boolean', default: false },
    // Leave out the spawned default CLI fit/eval, or the PyTorch reference (both take minutes).
    'no-cli': { type: 'boolean', default: false },
    'no-reference': { type: 'boolean', default: false },
    // Leave out the bundled backbone's default fit/eval against its floor, and its footprint.
    'no-bundled': { type: 'boolean', default: false },
  },
});
if (!values['no-huge-pages']) await relaunchWithHugePages();

const mb = (kb: number): number => Math.round(kb / 1024);
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))]!;
};

async function main(): Promise<void> {
  const channels = values.channels ? Number(values.channels) : (backboneDefaults(values.backbone!).channels ?? DEFAULT_CHANNELS);
  const imageSize = Number(values['image-size']);
  const threads = values.threads ? Number(values.threads) : undefined;
  const ds = await loadDataset(values.data!);
  const backbone = values.backbone === 'resnet50' && values.weights ? { backbone: 'resnet50', weights: values.weights } : { backbone: values.backbone! };
  const rss0 = process.resourceUsage().maxRSS;

  const fitOptions: FitOptions = {
    backbone,
    channels,
    imageSize,
    seed: 0,
    calibrationSplit: 0,
    batchSize: Number(values.batch),
    // Measure the PaDiM fit itself (as the reference does); the guards are measured separately.
    guards: values.guards === true,
    contaminationCheck: values.guards === true,
    precision: values.precision as 'fp32' | 'int8',
    ...(threads ? { threads } : {}),
  };
  const t0 = performance.now();
  const model = await fit(ds, fitOptions);
  const fitSeconds = (performance.now() - t0) / 1000;
  const modelFile = values.out ?? path.join(os.tmpdir(), `partscan-bench-${process.pid}.partscan`);
  const ts = performance.now();
  await model.save(modelFile);
  const saveSeconds = (performance.now() - ts) / 1000;
  const modelBytes = (await fs.stat(modelFile)).size;
  const rssAfterFit = process.resourceUsage().maxRSS;

  // Batched scoring over the test split (scoring only), then accuracy (scoring + metrics).
  const scoreBatch = values['score-batch'] ? Number(values['score-batch']) : model.defaultScoreBatchSize;
  const testFiles = ds.test.map((s) => s.path);
  // Warm-up, one batch: the first score expands the packed inverse covariances and creates the ORT
  // sessions, and the first batch of a size allocates (and first touches) that size's buffers, which
  // later batches reuse; the batched figure below is the steady state of a long-running scorer.
  const tw = performance.now();
  await model.score(testFiles.slice(0, scoreBatch), { batchSize: scoreBatch });
  const warmupSeconds = (performance.now() - tw) / 1000;
  const tb = performance.now();
  await model.score(testFiles, { batchSize: scoreBatch });
  const batchedMs = (performance.now() - tb) / testFiles.length;
  const ev = await evaluateModel(model, ds, { batchSize: scoreBatch });

  // Single-image latency through the public API (warm model).
  const samples = ds.test.slice(0, Number(values['latency-samples']));
  const lat: number[] = [];
  for (const s of samples) {
    const t = performance.now();
    await model.score(s.path);
    lat.push(performance.now() - t);
  }
  // Every test image as a concurrent single-image request (a service under load), batched by a
  // BatchingScorer: throughput and per-request latency.
  const scorer = new BatchingScorer(model, { maxBatch: scoreBatch });
  const tc = performance.now();
  const concurrentLat = await Promise.all(
    testFiles.map(async (f) => {
      const t = performance.now();
      await scorer.score(f);
      return performance.now() - t;
    }),
  );
  const concurrentMs = (performance.now() - tc) / testFiles.length;
  // The floor: the model's own backbone alone (its precision, its threads), at the scoring batch size.
  const floor = await backboneFloor({ backbone: await model.getBackbone(), files: testFiles, imageSize: model.size, batch: scoreBatch });
  await model.dispose();
  // Peak of the fit and scoring above; the start-up probe below reloads the model in this process.
  const rssAfterScoring = process.resourceUsage().maxRSS;

  // What users run, and the references to compare it with (see bench/default-path.ts).
  const weights = values.weights!;
  const resnetFixture = values.backbone === 'resnet50';
  const backboneArgs = resnetFixture ? ['--weights', weights] : ['--backbone', values.backbone!];
  const cliModel = path.join(os.tmpdir(), `partscan-bench-cli-${process.pid}.partscan`);
  const cliRuns = values['no-cli']
    ? { skipped: '--no-cli' }
    : await defaultCliRuns({ data: values.data!, backboneArgs, channels, imageSize, modelFile: cliModel, fitArgs: ['--precision', values.precision!] });
  await fs.rm(cliModel, { force: true });
  const startup = await startupBreakdown(modelFile, testFiles[0]!);
  // This bench's own model in a fresh process: RSS per model, cold start, changeover.
  const footprint = await footprintRun(modelFile, testFiles[0]!);
  // The footprint case: the bundled backbone at its defaults (d=152, 224 px), fitted as a user does.
  const bundledModel = path.join(os.tmpdir(), `partscan-bench-bundled-${process.pid}.partscan`);
  const bundledDefault = values['no-bundled']
    ? { skipped: '--no-bundled' }
    : await bundledDefaultRun({ data: values.data!, trainFiles: ds.train.map((s) => s.path), testFiles, modelFile: bundledModel });
  await fs.rm(bundledModel, { force: true });
  const reference = values['no-reference']
    ? { skipped: '--no-reference' }
    : resnetFixture
      ? await referenceRun({ data: values.data!, weights, channels, imageSize })
      : { skipped: 'the PyTorch reference runs ResNet50 only' };
  if (!values.out) await fs.rm(modelFile, { force: true });
  const ratio = (a: unknown, b: unknown): number | null => (typeof a === 'number' && typeof b === 'number' && b > 0 ? +(a / b).toFixed(2) : null);
  const refHuge = reference.withHugePages as { fit_s?: number; score_s?: number } | undefined;
  const refScoreMs = typeof reference.score_s === 'number' ? (reference.score_s * 1000) / testFiles.length : undefined;

  const out = {
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGB: Math.round(os.totalmem() / 2 ** 30), node: process.version, loadavg1: +os.loadavg()[0]!.toFixed(2) },
    cpu: cpuInfo(),
    config: { hugePages: hugePagesEnabled(), data: values.data, backbone: values.backbone, precision: values.precision, channels, imageSize, fitBatch: Number(values.batch), scoreBatch, threads: threads ?? 'default' },
    fit: { images: model.header.gaussian.images, seconds: +fitSeconds.toFixed(2), imagesPerSecond: +(model.header.gaussian.images / fitSeconds).toFixed(2), saveSeconds: +saveSeconds.toFixed(2) },
    score: {
      images: testFiles.length,
      warmupSeconds: +warmupSeconds.toFixed(2),
      evaluateSeconds: +ev.seconds.toFixed(2),
      evaluateScoringSeconds: +ev.scoringSeconds.toFixed(2),
      evaluateMetricsSeconds: +ev.metricsSeconds.toFixed(2),
      evaluateMetricsShare: +(ev.metricsSeconds / ev.seconds).toFixed(3),
      backboneFloorMsPerImage: floor.msPerImage,
      batchedMsPerImage: +batchedMs.toFixed(1),
      batchedImagesPerSecond: +(1000 / batchedMs).toFixed(2),
      batch1MsPerImage: +(lat.reduce((a, b) => a + b, 0) / lat.length).toFixed(1),
      latencyP50Ms: +quantile(lat, 0.5).toFixed(1),
      latencyP95Ms: +quantile(lat, 0.95).toFixed(1),
      concurrent: {
        requests: testFiles.length,
        msPerImage: +concurrentMs.toFixed(1),
        batches: scorer.batches,
        latencyP50Ms: +quantile(concurrentLat, 0.5).toFixed(1),
        latencyP95Ms: +quantile(concurrentLat, 0.95).toFixed(1),
      },
    },
    memory: { startRssMB: mb(rss0), peakRssAfterFitMB: mb(rssAfterFit), peakRssMB: mb(rssAfterScoring), peakRssWithStartupProbeMB: mb(process.resourceUsage().maxRSS) },
    modelBytes,
    footprint,
    bundledDefault,
    accuracy: { imageAuroc: ev.metrics.imageAuroc, pixelAuroc: ev.metrics.pixelAuroc, aupro: ev.metrics.aupro },
    defaultCli: cliRuns,
    startup,
    reference,
    ratios: {
      cliFitToReferenceFit: ratio((cliRuns as { fitSeconds?: number }).fitSeconds, reference.fit_s),
      cliEvalToReferenceScore: ratio((cliRuns as { evalSeconds?: number }).evalSeconds, reference.score_s),
      bareFitToReferenceFit: ratio(fitSeconds, reference.fit_s),
      batchedScoreToReferenceScore: ratio(batchedMs, refScoreMs),
      batchedScoreToBackboneFloor: ratio(batchedMs, floor?.msPerImage),
      bundledDefaultFitToBackboneFloor: (bundledDefault as { fitToFloor?: number }).fitToFloor ?? null,
    },
    // Against the reference run with the same glibc huge-pages tunable partscan's launcher sets for itself.
    ratiosToReferenceWithHugePages: {
      cliFitToReferenceFit: ratio((cliRuns as { fitSeconds?: number }).fitSeconds, refHuge?.fit_s),
      cliEvalToReferenceScore: ratio((cliRuns as { evalSeconds?: number }).evalSeconds, refHuge?.score_s),
      bareFitToReferenceFit: ratio(fitSeconds, refHuge?.fit_s),
    },
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
