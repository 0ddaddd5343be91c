/**
 * partscan tiling benchmark: whole-image vs native-resolution tiled scoring on one dataset, with the
 * same backbone, weights, d and seed. Prints one JSON object.
 *
 *   npm run bench:tiling -- [--data ../shared/datasets/mvtec_bottle] [--channels 100]
 *                           [--whole 256,224] [--tile 256] [--overlap 32,0]
 *                           [--batch 16] [--score-batch 8] [--threads N]
 *
 * Each configuration (`whole:<px>` per --whole size, `tile:<px>:<overlap>` per --tile × --overlap) runs
 * in its own child process, so its peak RSS (process maxRSS) is its own. Per configuration: fit seconds
 * and images/s, batched score ms/image over the test split (after a one-image warm-up; scoring only),
 * model file bytes, peak RSS, os.loadavg() before/after, and the metrics twice:
 *
 * - `evaluator`: exactly what {@link evaluateModel} computes — ground-truth masks resized (nearest) to the
 *   model's map size, i.e. the model input size for whole-image models (256² / 224²) and the native
 *   image size for tiled models (512² on MVTec bottle). These are NOT comparable across the two kinds;
 * - `native`: every map at the native image size (whole-image maps upsampled bilinearly with
 *   `model.mapToOriginal`, as export does; tiled maps already are) against native-resolution masks —
 *   the like-for-like pixel comparison.
 *
 * Fit batches: `--batch` images per backbone batch for whole-image models; for tiled models
 * ceil(batch / tiles per image) images, so a backbone batch holds about as many tiles.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { fit } from '../src/model/fit.js';
import { loadDataset } from '../src/data/loaders.js';
import { loadMask, tileLayout } from '../src/preprocess/preprocess.js';
import { evaluateRun, type EvaluationItem } from '../src/metrics/evaluate.js';
import { pixelAuroc } from '../src/metrics/auroc.js';
import { aupro } from '../src/metrics/aupro.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'datasets', 'mvtec_bottle') },
    channels: { type: 'string', default: '100' },
    whole: { type: 'string', default: '256,224' },
    tile: { type: 'string', default: '256' },
    overlap: { type: 'string', default: '32,0' },
    batch: { type: 'string', default: '16' },
    'score-batch': { type: 'string', default: '8' },
    threads: { type: 'string' },
    backbone: { type: 'string', default: 'resnet50' },
    weights: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'reference', 'resnet50-random-seed0.safetensors') },
    /** Internal: run one configuration (`whole:256`, `tile:256:32`) and print its JSON. */
    run: { type: 'string' },
  },
});

const list = (s: string | undefined): number[] =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map(Number);
const mb = (kb: number): number => Math.round(kb / 1024);
const r3 = (x: number): number => +x.toFixed(3);
const r4 = (x: number): number => +x.toFixed(4);
const load = (): number[] => os.loadavg().map((x) => +x.toFixed(2));
const log = (msg: string): void => void process.stderr.write(`[bench:tiling] ${msg}\n`);

type Config = { kind: 'whole'; size: number } | { kind: 'tile'; size: number; overlap: number };

function parseConfig(s: string): Config {
  const [kind, a, b] = s.split(':');
  if (kind === 'whole' && a) return { kind, size: Number(a) };
  if (kind === 'tile' && a && b !== undefined) return { kind, size: Number(a), overlap: Number(b) };
  throw new Error(`bad configuration ${s}`);
}

async function runOne(name: string): Promise<unknown> {
  const cfg = parseConfig(name);
  const loadStart = load();
  const channels = Number(values.channels);
  const threads = values.threads ? Number(values.threads) : undefined;
  const ds = await loadDataset(values.data!);
  const backbone = values.backbone === 'resnet50' && values.weights ? { backbone: 'resnet50', weights: values.weights } : { backbone: values.backbone! };
  const meta = await sharp(ds.test[0]!.path).metadata();
  const native = { width: meta.width!, height: meta.height! };
  const boxes = cfg.kind === 'tile' ? tileLayout(native.width, native.height, cfg.size, cfg.overlap) : undefined;
  const tilesPerImage = boxes?.length ?? 1;
  const fitBatch = Math.max(1, Math.ceil(Number(values.batch) / tilesPerImage));

  log(`${name}: fitting ${ds.train.length} images (${tilesPerImage} sample(s) each, ${fitBatch} images per batch)`);
  const t0 = performance.now();
  const model = await fit(ds, {
    backbone,
    channels,
    seed: 0,
    calibrationSplit: 0,
    batchSize: fitBatch,
    guards: false,
    contaminationCheck: false,
    ...(cfg.kind === 'whole' ? { imageSize: cfg.size } : { tile: { size: cfg.size, overlap: cfg.overlap } }),
    ...(threads ? { threads } : {}),
  });
  const fitSeconds = (performance.now() - t0) / 1000;
  const rssAfterFit = process.resourceUsage().maxRSS;
  const modelFile = path.join(os.tmpdir(), `partscan-bench-tiling-${process.pid}.partscan`);
  await model.save(modelFile);
  const modelBytes = (await fs.stat(modelFile)).size;
  await fs.rm(modelFile, { force: true });

  const scoreBatch = Number(values['score-batch']);
  const testFiles = ds.test.map((s) => s.path);
  log(`${name}: fit ${fitSeconds.toFixed(1)} s; scoring ${testFiles.length} test images`);
  await model.score(testFiles[0]!); // warm-up: expands the inverses, creates the ORT sessions
  const ts = performance.now();
  const results = await model.score(testFiles, { batchSize: scoreBatch });
  const scoreMs = (performance.now() - ts) / testFiles.length;

  // (a) What evaluateModel computes: masks resized (nearest) to each result's map size.
  log(`${name}: metrics`);
  const items: EvaluationItem[] = [];
  for (let k = 0; k < ds.test.length; k++) {
    const s = ds.test[k]!;
    const r = results[k]!;
    const item: EvaluationItem = { label: s.label, anomalous: s.anomalous, imageScore: r.imageScore, map: r.anomalyMap, width: r.mapWidth, height: r.mapHeight };
    if (s.maskPath) item.mask = await loadMask(s.maskPath, r.mapWidth, r.mapHeight);
    items.push(item);
  }
  const ev = evaluateRun(items);
  const perDefectImageAuroc = Object.fromEntries(Object.entries(ev.perDefect).map(([k, v]) => [k, r4(v.imageAuroc)]));

  // (b) Like-for-like: every map at native resolution against native masks.
  const maps: Float32Array[] = [];
  const masks: (Uint8Array | undefined)[] = [];
  const anomalous: boolean[] = [];
  for (let k = 0; k < ds.test.length; k++) {
    const s = ds.test[k]!;
    const r = results[k]!;
    const w = r.info?.width ?? native.width;
    const h = r.info?.height ?? native.height;
    maps.push(r.mapWidth === w && r.mapHeight === h ? r.anomalyMap : model.mapToOriginal(r.anomalyMap, w, h));
    masks.push(s.maskPath ? await loadMask(s.maskPath, w, h) : undefined);
    anomalous.push(s.anomalous);
  }
  const nativePixelAuroc = pixelAuroc(maps, masks, { anomalous });
  const nativeAupro = aupro(maps, masks, { width: native.width, height: native.height }, 0.3, { anomalous });
  const images = ds.train.length;
  await model.dispose();

  return {
    config: name,
    ...(boxes ? { tiles: { perImage: tilesPerImage, starts: [...new Set(boxes.map((b) => b.x))], size: cfg.size, overlap: (cfg as { overlap: number }).overlap } } : {}),
    modelInput: model.size,
    fit: {
      images,
      samples: model.header.gaussian.images,
      batchImages: fitBatch,
      seconds: +fitSeconds.toFixed(2),
      imagesPerSecond: +(images / fitSeconds).toFixed(2),
    },
    score: { images: testFiles.length, batch: scoreBatch, msPerImage: +scoreMs.toFixed(1), imagesPerSecond: +(1000 / scoreMs).toFixed(2) },
    modelBytes,
    memory: { peakRssAfterFitMB: mb(rssAfterFit), peakRssMB: mb(process.resourceUsage().maxRSS) },
    accuracy: {
      imageAuroc: r4(ev.imageAuroc),
      image_auroc_per_defect: perDefectImageAuroc,
      evaluator: { mapSize: `${results[0]!.mapWidth}x${results[0]!.mapHeight}`, pixelAuroc: r4(ev.pixelAuroc), aupro: r4(ev.aupro) },
      native: { mapSize: `${native.width}x${native.height}`, pixelAuroc: r4(nativePixelAuroc), aupro: r4(nativeAupro) },
    },
    loadavg: { start: loadStart, end: load() },
  };
}

function child(name: string): Promise<unknown> {
  const self = fileURLToPath(import.meta.url);
  const pass: string[] = [];
  for (const k of ['data', 'channels', 'batch', 'score-batch', 'threads', 'backbone', 'weights'] as const) {
    const v = values[k];
    if (v !== undefined) pass.push(`--${k}`, String(v));
  }
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, self, ...pass, '--run', name], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${name} exited with ${code}`));
      try {
        resolve(JSON.parse(out));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

async function main(): Promise<void> {
  if (values.run) {
    process.stdout.write(JSON.stringify(await runOne(values.run)) + '\n');
    return;
  }
  const configs = [
    ...list(values.whole).map((s) => `whole:${s}`),
    ...list(values.tile).flatMap((t) => list(values.overlap).map((o) => `tile:${t}:${o}`)),
  ];
  const loadStart = load();
  const t0 = performance.now();
  const runs: unknown[] = [];
  for (const c of configs) runs.push(await child(c));
  const out = {
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    setup: {
      data: values.data,
      backbone: values.backbone,
      weights: values.weights,
      channels: Number(values.channels),
      seed: 0,
      calibrationSplit: 0,
      guards: false,
      threads: values.threads ?? 'default',
      metrics:
        'imageAuroc: max of the map (tiled: max over tile maps). evaluator: masks resized (nearest) to the map size (whole-image: model input; tiled: native). native: all maps at native resolution (whole-image maps upsampled bilinearly), native masks.',
    },
    runs,
    totalSeconds: r3((performance.now() - t0) / 1000),
    loadavg: { start: loadStart, end: load() },
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench:tiling failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
