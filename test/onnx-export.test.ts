import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { fit } from '../src/model/fit.js';
import type { Model, ScoreResult } from '../src/model/model.js';
import { exportModelOnnx, type ExportOnnxOptions } from '../src/export/onnx-export.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { verdict } from '../src/postprocess/thresholds.js';
import { isPartscanError } from '../src/errors.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const { onnx } = onnxProto;

let tmp: string;
let model: Model;
let testFiles: string[];
let tensor: Float32Array;
let reference: ScoreResult[];
const S = 128;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-onnx-export-'));
  const train = await listImages(path.join(BOTTLE, 'train', 'good'));
  // 20 training images: the model has the per-position standardised image score (issue 28), so the
  // exported image_score is checked in that definition.
  model = await fit(train.slice(0, 20), {
    backbone: { backbone: 'resnet50', weights: REF_WEIGHTS },
    channels: 24,
    imageSize: S,
    calibration: train.slice(20, 24),
    seed: 0,
    batchSize: 4,
  });
  const good = await listImages(path.join(BOTTLE, 'test', 'good'));
  const large = await listImages(path.join(BOTTLE, 'test', 'broken_large'));
  const small = await listImages(path.join(BOTTLE, 'test', 'broken_small'));
  testFiles = [good[0]!, good[1]!, large[0]!, small[0]!];
  tensor = (await preprocessBatch(testFiles, model.header.preprocess)).tensor;
  // The random-weights backbone separates nothing, so calibrated thresholds leave every test image OK
  // and most normalised pixels clamped at 0. Manual thresholds inside the test images' own score range
  // exercise both verdicts, the unclamped normalisation range and both mask values.
  const raw = await model.score(testFiles);
  const scores = raw.map((r) => r.imageScore).sort((a, b) => a - b);
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of raw) for (const v of r.anomalyMap) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  model.setThresholds({
    image: (scores[1]! + scores[2]!) / 2,
    pixel: lo + 0.8 * (hi - lo),
    method: { image: 'manual', pixel: 'manual' },
    imageStats: { min: scores[0]!, max: scores[3]! },
    pixelStats: { min: lo, max: hi },
  });
  reference = await model.score(testFiles);
});

afterAll(async () => {
  await model?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** max|a − b| / max(1e-6, max|b|). */
function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / Math.max(1e-6, scale);
}

async function runExported(file: string): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  try {
    expect(session.inputNames).toEqual(['input']);
    const out = await session.run({ input: new ort.Tensor('float32', tensor, [testFiles.length, 3, S, S]) });
    return out as Record<string, ort.Tensor>;
  } finally {
    await session.release();
  }
}

/** Compares an export against Model.score; returns the measured agreement (logged for the report). */
async function checkAgainstScore(file: string, opts: ExportOnnxOptions = {}): Promise<Record<string, number>> {
  const out = await runExported(file);
  const n = testFiles.length;
  const per = S * S;
  expect(out.anomaly_map!.dims).toEqual([n, 1, S, S]);
  expect(out.image_score!.dims).toEqual([n]);
  expect(out.pred_mask!.dims).toEqual([n, 1, S, S]);
  expect(out.pred_mask!.type).toBe('uint8');
  const maps = out.anomaly_map!.data as Float32Array;
  const scores = out.image_score!.data as Float32Array;
  const masks = out.pred_mask!.data as Uint8Array;
  const t = model.header.thresholds!;
  let worstMap = 0;
  let worstScore = 0;
  let maskDiff = 0;
  let nearThreshold = 0;
  for (let i = 0; i < n; i++) {
    const r = reference[i]!;
    const map = maps.subarray(i * per, (i + 1) * per);
    const want = opts.raw ? r.anomalyMap : r.normalizedMap!;
    worstMap = Math.max(worstMap, relError(map, want));
    const wantScore = opts.raw ? r.imageScore : r.normalizedScore!;
    worstScore = Math.max(worstScore, Math.abs(scores[i]! - wantScore) / Math.max(1e-6, Math.abs(wantScore)));
    if (!opts.raw) expect(verdict(scores[i]!, t.band)).toBe(r.verdict);
    const mask = masks.subarray(i * per, (i + 1) * per);
    for (let k = 0; k < per; k++) {
      if (mask[k] !== r.mask![k]) {
        maskDiff++;
        // A disagreement is only acceptable right at the threshold (float32 rounding of the map).
        if (Math.abs(r.normalizedMap![k]! - 0.5) < 1e-5) nearThreshold++;
      }
    }
  }
  expect(model.header.imageScore).toEqual({ kind: 'standardized' });
  expect(worstMap).toBeLessThanOrEqual(1e-4);
  expect(worstScore).toBeLessThanOrEqual(1e-5);
  expect(maskDiff).toBe(nearThreshold);
  return { worstMap, worstScore, maskDiff };
}

describe('exportModelOnnx', () => {
  it('exports one graph whose outputs match Model.score (inline data)', async () => {
    expect(model.header.thresholds).toBeDefined();
    // The test images should exercise both verdicts.
    expect(new Set(reference.map((r) => r.verdict)).size).toBeGreaterThan(1);
    const file = path.join(tmp, 'inline', 'model.onnx');
    const started = Date.now();
    const res = await exportModelOnnx(model, file);
    const ms = Date.now() - started;
    expect(res.file).toBe(file);
    expect(res.externalData).toBeUndefined();
    expect(res.bytes).toBe((await fs.stat(file)).size);
    await expect(fs.stat(`${file}.data`)).rejects.toThrow();
    const agreement = await checkAgainstScore(file);
    console.log(`[onnx-export] inline: ${res.bytes} bytes, export ${ms} ms, agreement ${JSON.stringify(agreement)}`);
  });

  it('writes big tensors to <out>.data and ORT loads them from the file path', async () => {
    const file = path.join(tmp, 'external', 'model.onnx');
    const res = await exportModelOnnx(model, file, { externalDataThreshold: 0 });
    expect(res.externalData).toBe(`${file}.data`);
    expect(res.externalDataBytes).toBe((await fs.stat(`${file}.data`)).size);
    const decoded = onnx.ModelProto.decode(await fs.readFile(file));
    const inits = decoded.graph!.initializer!;
    expect(inits.length).toBeGreaterThan(0);
    // Every float tensor goes out; int64 shape/index constants stay inline (needed at shape inference).
    for (const t of inits) {
      if (t.dataType === onnx.TensorProto.DataType.INT64) {
        expect(t.dataLocation).not.toBe(onnx.TensorProto.DataLocation.EXTERNAL);
        continue;
      }
      expect(t.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
      const entries = Object.fromEntries(t.externalData.map((e) => [e.key, e.value]));
      expect(entries.location).toBe('model.onnx.data');
      expect(Number(entries.offset) % 4096).toBe(0);
      expect(t.rawData.length).toBe(0);
    }
    const inv = inits.find((t) => t.name === 'partscan/inv_cov')!;
    const P = model.positions;
    const d = model.dim;
    expect(inv.dims.map(Number)).toEqual([P, d, d]);
    // The inverse is symmetric and matches the packed triangle (entry (i, j≤i) at i(i+1)/2 + j).
    const entries = Object.fromEntries(inv.externalData.map((e) => [e.key, e.value]));
    const raw = (await fs.readFile(`${file}.data`)).subarray(Number(entries.offset), Number(entries.offset) + Number(entries.length));
    const full = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const p = P - 1;
    const [i, j] = [d - 1, 3];
    expect(full[p * d * d + i * d + j]).toBe(model.invCovPacked[p * ((d * (d + 1)) / 2) + (i * (i + 1)) / 2 + j]);
    expect(full[p * d * d + j * d + i]).toBe(full[p * d * d + i * d + j]);
    const agreement = await checkAgainstScore(file);
    console.log(`[onnx-export] external: ${res.bytes} + ${res.externalDataBytes} bytes, agreement ${JSON.stringify(agreement)}`);
  });

  it('raw: true outputs the raw map and score of Model.score', async () => {
    const file = path.join(tmp, 'raw.onnx');
    await exportModelOnnx(model, file, { raw: true });
    const agreement = await checkAgainstScore(file, { raw: true });
    console.log(`[onnx-export] raw: agreement ${JSON.stringify(agreement)}`);
  });

  it('reproduces the step normalisation of a degenerate calibration span (max == min) and the band', async () => {
    const saved = model.header.thresholds!;
    const savedReference = reference;
    try {
      model.setThresholds({
        ...saved,
        pixelStats: { min: saved.pixelStats.min, max: saved.pixelStats.min },
        band: { low: 0.45, high: 0.55 },
      });
      reference = await model.score(testFiles);
      const file = path.join(tmp, 'degenerate.onnx');
      await exportModelOnnx(model, file);
      const agreement = await checkAgainstScore(file);
      console.log(`[onnx-export] degenerate span: agreement ${JSON.stringify(agreement)}`);
    } finally {
      model.setThresholds(saved);
      reference = savedReference;
    }
  });

  it('masks pred_mask with the model ROI', async () => {
    const savedReference = reference;
    try {
      model.roi = new Uint8Array(S * S);
      for (let y = 0; y < S; y++) model.roi.fill(1, y * S, y * S + S / 2);
      reference = await model.score(testFiles);
      const file = path.join(tmp, 'roi.onnx');
      await exportModelOnnx(model, file);
      const agreement = await checkAgainstScore(file);
      const masks = (await runExported(file)).pred_mask!.data as Uint8Array;
      for (let i = 0; i < masks.length; i++) if (masks[i]) expect(i % S).toBeLessThan(S / 2);
      console.log(`[onnx-export] roi: agreement ${JSON.stringify(agreement)}`);
    } finally {
      model.roi = undefined;
      reference = savedReference;
    }
  });

  it('exports raw outputs and no pred_mask for a model without thresholds', async () => {
    const saved = model.header.thresholds!;
    try {
      model.setThresholds(undefined);
      const file = path.join(tmp, 'uncalibrated.onnx');
      await exportModelOnnx(model, file);
      const decoded = onnx.ModelProto.decode(await fs.readFile(file));
      const meta = Object.fromEntries(decoded.metadataProps.map((e) => [e.key, JSON.parse(e.value) as unknown]));
      expect(meta['partscan.normalized']).toBe(false);
      expect(meta['partscan.thresholds']).toBe(null);
      const out = await runExported(file);
      expect(Object.keys(out).sort()).toEqual(['anomaly_map', 'image_score']);
      const maps = out.anomaly_map!.data as Float32Array;
      for (let i = 0; i < testFiles.length; i++) {
        expect(relError(maps.subarray(i * S * S, (i + 1) * S * S), reference[i]!.anomalyMap)).toBeLessThanOrEqual(1e-4);
        expect(Math.abs((out.image_score!.data as Float32Array)[i]! - reference[i]!.imageScore)).toBeLessThanOrEqual(1e-4 * reference[i]!.imageScore);
      }
    } finally {
      model.setThresholds(saved);
    }
  });

  it('records the preprocessing, thresholds and versions in metadata_props', async () => {
    const file = path.join(tmp, 'inline', 'model.onnx');
    const decoded = onnx.ModelProto.decode(await fs.readFile(file));
    const meta = Object.fromEntries(decoded.metadataProps.map((e) => [e.key, JSON.parse(e.value) as unknown]));
    const p = model.header.preprocess;
    expect(meta['partscan.preprocess.image_size']).toBe(p.imageSize);
    expect(meta['partscan.preprocess.crop_size']).toBe(null);
    expect(meta['partscan.preprocess.input_size']).toBe(S);
    expect(meta['partscan.preprocess.mean']).toEqual(p.mean);
    expect(meta['partscan.preprocess.std']).toEqual(p.std);
    expect(meta['partscan.preprocess.background']).toEqual(p.background);
    expect(meta['partscan.preprocess.kernel']).toBe(p.kernel);
    expect(meta['partscan.preprocess.channel_order']).toBe('RGB');
    expect(meta['partscan.preprocess.layout']).toBe('NCHW');
    expect(meta['partscan.preprocess.auto_orient']).toBe(true);
    expect(meta['partscan.preprocess']).toMatchObject({ imageSize: p.imageSize, mean: p.mean, std: p.std, kernel: p.kernel });
    expect(meta['partscan.thresholds']).toEqual(model.header.thresholds);
    expect(meta['partscan.normalized']).toBe(true);
    expect(meta['partscan.version']).toBe(model.header.partscanVersion);
    expect(meta['partscan.model_format']).toEqual({ format: 'partscan-model', version: model.header.formatVersion });
    expect(Number(decoded.opsetImport.find((o) => !o.domain)?.version)).toBe(17);
    expect(decoded.graph!.output!.map((o) => o.name)).toEqual(['anomaly_map', 'image_score', 'pred_mask']);
  });

  it('refuses bad options with typed errors', async () => {
    const e = await exportModelOnnx(model, path.join(tmp, 'x.onnx'), { externalDataThreshold: -1 }).catch((err: unknown) => err);
    expect(isPartscanError(e, 'OPTIONS')).toBe(true);
    const dir = path.join(tmp, 'is-a-dir.onnx');
    await fs.mkdir(dir);
    const e2 = await exportModelOnnx(model, dir).catch((err: unknown) => err);
    expect(isPartscanError(e2, 'OUTPUT')).toBe(true);
  });
});
