/**
 * End-to-end tests of the `partscan` CLI: every command runs as a real child process on the TypeScript
 * sources (`node --import tsx src/cli/main.ts`), on a tiny bottle subset (12 images, 128 px, d 30).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli } from './helpers/cli.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

let tmp: string;
let modelFile: string;
const goodImg = path.join(BOTTLE, 'test', 'good', '000.png');
const badImg = path.join(BOTTLE, 'test', 'broken_large', '000.png');

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-cli-'));
  const train = path.join(tmp, 'train');
  await fs.mkdir(train);
  const names = (await fs.readdir(path.join(BOTTLE, 'train', 'good'))).filter((n) => n.endsWith('.png')).sort().slice(0, 12);
  for (const n of names) await fs.symlink(path.join(BOTTLE, 'train', 'good', n), path.join(train, n));
  // A small MVTec-layout dataset: 3 good, 3 broken_large with masks.
  const ds = path.join(tmp, 'ds');
  for (const d of ['train/good', 'test/good', 'test/broken_large', 'ground_truth/broken_large']) await fs.mkdir(path.join(ds, d), { recursive: true });
  await fs.symlink(path.join(BOTTLE, 'train', 'good', names[0]!), path.join(ds, 'train', 'good', '000.png'));
  for (const i of ['000', '001', '002']) {
    await fs.symlink(path.join(BOTTLE, 'test', 'good', `${i}.png`), path.join(ds, 'test', 'good', `${i}.png`));
    await fs.symlink(path.join(BOTTLE, 'test', 'broken_large', `${i}.png`), path.join(ds, 'test', 'broken_large', `${i}.png`));
    await fs.symlink(path.join(BOTTLE, 'ground_truth', 'broken_large', `${i}_mask.png`), path.join(ds, 'ground_truth', 'broken_large', `${i}_mask.png`));
  }
  modelFile = path.join(tmp, 'm.partscan');
  const r = await cli([
    'fit', train, '--out', modelFile, '--backbone', 'resnet50', '--weights', REF_WEIGHTS,
    '--image-size', '128', '--channels', '30', '--calibration-split', '0.25', '--json',
  ]);
  expect(r.code, r.stderr).toBe(0);
  const summary = JSON.parse(r.stdout);
  expect(summary).toMatchObject({ images: 9, channels: 30, grid: { width: 32, height: 32 } });
  // Out of sample for the thresholds: the 9 fitted images (leave-one-out) and the 3 held out, less any left out as likely defects.
  expect(summary.calibrationImages + summary.thresholds.operatingPoint.goodScores.excluded).toBe(12);
  expect(summary.thresholds.image).toBeGreaterThan(0);
}, 180_000);

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('partscan CLI', () => {
  it('--help works for every command and --version prints the version', async () => {
    const runs = await Promise.all(['fit', 'score', 'eval', 'calibrate', 'report', 'info', 'demo'].map((c) => cli([c, '--help'])));
    for (const r of runs) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: partscan /);
    }
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    const v = await cli(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('fit wrote the model; info --json parses without loading the backbone', async () => {
    expect(existsSync(modelFile)).toBe(true);
    const r = await cli(['info', modelFile, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.header.embedding.channels).toBe(30);
    expect(info.header.backbone.name).toBe('resnet50');
    expect(info.sections.map((s: { name: string }) => s.name)).toContain('mean');
    const human = await cli(['info', modelFile]);
    expect(human.stdout).toContain('thresholds');
  });

  it('score writes exports, results.json/csv and a parsable --json summary; report writes HTML', async () => {
    const out = path.join(tmp, 'run');
    const r = await cli(['score', modelFile, goodImg, badImg, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.results).toHaveLength(2);
    expect(summary.failures).toEqual([]);
    for (const res of summary.results) expect(['OK', 'NG', 'UNCERTAIN']).toContain(res.verdict);
    // Line monitoring of the run (two images cannot raise an alarm: one image moves a chart by at most λ·clip).
    expect(summary.monitor).toMatchObject({ alarm: false, firstAlarmAt: null, reasons: [], images: 2, reference: true });
    expect(JSON.parse(await fs.readFile(path.join(out, 'results.json'), 'utf8')).monitor.points).toHaveLength(2);
    const files = await fs.readdir(out);
    expect(files).toEqual(expect.arrayContaining(['results.json', 'results.csv']));
    // Both inputs are named 000.png: stems are made unique.
    for (const stem of ['000', '000-2']) {
      for (const kind of ['overlay', 'heatmap', 'mask', 'original']) expect(files).toContain(`${stem}.${kind}.png`);
    }
    const rep = await cli(['report', out, '--title', 'CLI test']);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stdout.trim()).toBe(path.join(out, 'report.html'));
    expect((await fs.readFile(path.join(out, 'report.html'), 'utf8')).includes('CLI test')).toBe(true);
  });

  it('export writes one ONNX graph that plain onnxruntime runs, agreeing with score', async () => {
    const onnxFile = path.join(tmp, 'm.onnx');
    const r = await cli(['export', modelFile, '--onnx', onnxFile, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).onnx).toBe(onnxFile);
    const ort = await import('onnxruntime-node');
    const { Model } = await import('../src/model/model.js');
    const { preprocessBatch } = await import('../src/preprocess/preprocess.js');
    const model = await Model.load(modelFile);
    const session = await ort.InferenceSession.create(onnxFile);
    const pre = await preprocessBatch([badImg], model.header.preprocess);
    const out = await session.run({ input: new ort.Tensor('float32', pre.tensor, [1, 3, 128, 128]) });
    const ref = await model.score(badImg);
    const score = (out.image_score!.data as Float32Array)[0]!;
    expect(Math.abs(score - ref.normalizedScore!)).toBeLessThan(1e-4);
    const map = out.anomaly_map!.data as Float32Array;
    let maxErr = 0;
    for (let i = 0; i < map.length; i++) maxErr = Math.max(maxErr, Math.abs(map[i]! - ref.normalizedMap![i]!));
    expect(maxErr).toBeLessThan(1e-4);
    await session.release();
    await model.dispose();
  });

  it('score records an undecodable image, keeps the rest, exits 3', async () => {
    const trunc = path.join(tmp, 'trunc.png');
    await fs.writeFile(trunc, (await fs.readFile(goodImg)).subarray(0, 200));
    const out = path.join(tmp, 'run-partial');
    const r = await cli(['score', modelFile, trunc, badImg, '--out', out]);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('1 failed');
    expect(r.stderr).toContain('trunc.png');
    const manifest = JSON.parse(await fs.readFile(path.join(out, 'results.json'), 'utf8'));
    expect(manifest.results).toHaveLength(1);
    expect(manifest.failures[0].file).toBe(trunc);
  });

  it('eval --json prints exactly one JSON object with the metric contract', async () => {
    const out = path.join(tmp, 'eval-run');
    const r = await cli(['eval', modelFile, path.join(tmp, 'ds'), '--json', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout); // throws if anything else is on stdout
    for (const k of ['image_auroc', 'pixel_auroc', 'aupro', 'image_f1_max', 'n_good', 'n_defect', 'per_defect', 'seconds']) expect(m).toHaveProperty(k);
    expect(m.n_good).toBe(3);
    expect(m.n_defect).toBe(3);
    expect(m.per_defect).toHaveProperty('broken_large');
    // Verdict quality at the shipped threshold: counts add up to the test set, per defect type too.
    const v = m.verdicts;
    const sum = (c: { OK: number; NG: number; UNCERTAIN: number }) => c.OK + c.NG + c.UNCERTAIN;
    expect(sum(v.confusion.good)).toBe(3);
    expect(sum(v.confusion.defect)).toBe(3);
    expect(v.escape_rate).toBe(v.confusion.defect.OK / 3);
    expect(v.false_reject_rate).toBe(v.confusion.good.NG / 3);
    expect(Object.keys(v.per_defect).sort()).toEqual(Object.keys(m.per_defect).sort());
    expect(v.escape_rate_ci95[0]).toBeLessThanOrEqual(v.escape_rate);
    expect(v.escape_rate_ci95[1]).toBeGreaterThanOrEqual(v.escape_rate);
    // The operating curve measured on the test set, and the shipped threshold on it.
    expect(m.operating_points.map((p: { false_reject_rate: number }) => p.false_reject_rate)).toEqual([0, 0.005, 0.01, 0.02, 0.05, 0.1]);
    for (const p of m.operating_points) expect(Object.keys(p).sort()).toEqual(['escape_rate', 'false_reject_rate', 'measured_false_reject_rate', 'threshold']);
    expect(m.shipped_operating_point).toMatchObject({ threshold: expect.any(Number), target_false_reject_rate: 0.01 });
    expect(m.shipped_operating_point.false_reject_rate).toBe(v.false_reject_rate);
    const text = await cli(['eval', modelFile, path.join(tmp, 'ds')]);
    expect(text.stdout).toMatch(/operating curve on this set/);
    expect(text.stdout).toMatch(/^shipped \(target 1\.0%\)\s+\S+%/m);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/at the model's threshold:\nverdicts\s+escape\s+false reject\s+uncertain/);
    expect(text.stdout).toMatch(/^broken_large\s+\S+%/m);
    expect(existsSync(path.join(out, 'results.json'))).toBe(true);
  });

  it('errors: missing model, unknown backbone, --out on a file — one clear line, non-zero exit', async () => {
    const missing = path.join(tmp, 'nope.partscan');
    const a = await cli(['score', missing, goodImg, '--out', path.join(tmp, 'r2')]);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain(missing);
    expect(a.stderr).toMatch(/^partscan: /);
    expect(a.stderr).not.toMatch(/\n\s+at /); // no stack trace

    const b = await cli(['fit', path.join(tmp, 'train'), '--out', path.join(tmp, 'x.partscan'), '--backbone', 'nope']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/Unknown backbone "nope"/);

    const c = await cli(['score', modelFile, goodImg, '--out', modelFile]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/Output directory .* is a file/);

    const d = await cli(['fit', path.join(tmp, 'train')]);
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(/^partscan: .*--out/);

    // No silent fallback: the default resnet50 without cached weights and without downloads is one error with the ways out.
    const e = await cli(['fit', path.join(tmp, 'train'), '--out', path.join(tmp, 'y.partscan'), '--offline', '--cache-dir', path.join(tmp, 'empty-cache')]);
    expect(e.code).toBe(2);
    expect(e.stderr.trim().split('\n')).toHaveLength(1);
    expect(e.stderr).toMatch(/--weights <file\.safetensors>.*network.*--backbone mobilenetv2-int8/);
    expect(existsSync(path.join(tmp, 'y.partscan'))).toBe(false);
  });

  it('demo runs end to end offline and writes its report', async () => {
    const dir = path.join(tmp, 'demo');
    const r = await cli(['demo', '--dir', dir, '--json'], 280_000);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    // The bundled ImageNet backbone, no download: real detection on the first run.
    expect(result.backbone).toBe('mobilenetv2-int8');
    expect(result.backboneNote).toMatch(/shipped with partscan/);
    expect(result.metrics.image_auroc).toBeGreaterThanOrEqual(0.95);
    const v = result.metrics.verdicts;
    expect(v.confusion.good.OK + v.confusion.good.NG + v.confusion.good.UNCERTAIN).toBe(result.metrics.n_good);
    expect(v.confusion.defect.NG).toBeGreaterThanOrEqual(20);
    expect(existsSync(result.reportPath)).toBe(true);
    expect(existsSync(result.modelPath)).toBe(true);
  }, 300_000);
});
