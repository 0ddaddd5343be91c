import { describe, expect, it, beforeAll, afterAll, vi } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { isPartscanError } from '../src/errors.js';
import { readModelFile } from '../src/model/model-file.js';
import { inverseStripeInputs } from '../src/model/scoring-graph.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';
import { listImages } from '../src/data/loaders.js';

const backbone = { backbone: 'resnet50', weights: REF_WEIGHTS };
const common = { backbone, channels: 24, imageSize: 128, seed: 3, batchSize: 4 } as const;
let tmp: string;
let train: string[];
let calib: string[];
let model: Model;
let modelFile: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-model-'));
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  train = all.slice(0, 10);
  calib = all.slice(10, 14);
  model = await fit(train, { ...common, calibration: calib });
  modelFile = path.join(tmp, 'm.partscan');
  await model.save(modelFile);
});
afterAll(async () => {
  await model?.dispose();
  await fs.rm(tmp, { recursive: true, force: true });
});

async function expectCode(p: Promise<unknown>, code: string): Promise<Error> {
  try {
    await p;
  } catch (e) {
    expect(isPartscanError(e), String(e)).toBe(true);
    expect((e as { code: string }).code).toBe(code);
    return e as Error;
  }
  throw new Error(`expected a ${code} error`);
}

describe('fit and score', () => {
  it('records a self-describing header and calibrated thresholds', () => {
    const h = model.header;
    expect(h.embedding).toMatchObject({ channels: 24, gridH: 32, gridW: 32, totalChannels: 1792, seed: 3 });
    expect(h.gaussian.images).toBe(10);
    expect(h.backbone.layers).toEqual(['layer1', 'layer2', 'layer3']);
    expect(h.preprocess.imageSize).toBe(128);
    expect(h.thresholds?.image).toBeGreaterThan(0);
    // The 10 fitted images (leave-one-out) and the 4 calibration images, less those left out as likely defects.
    expect(h.fit.calibrationImages + h.thresholds!.operatingPoint!.goodScores.excluded).toBe(14);
    expect(h.calibration).toMatchObject({ good: h.fit.calibrationImages, defect: 0 });
    expect(h.calibration!.sources.leaveOneOut + h.calibration!.sources.heldOut).toBe(h.fit.calibrationImages);
    // Fewer than 20 good images: the image score is the map's maximum.
    expect(h.imageScore).toEqual({ kind: 'max' });
  });

  it('scores a defect higher than a good part; map is size² with max = image score', async () => {
    const [good, bad] = await model.score([
      path.join(BOTTLE, 'test', 'good', '000.png'),
      path.join(BOTTLE, 'test', 'broken_large', '000.png'),
    ]);
    expect(good!.anomalyMap.length).toBe(128 * 128);
    expect(good!.anomalyMap.reduce((a, b) => Math.max(a, b), -Infinity)).toBe(good!.imageScore);
    expect(bad!.imageScore).toBeGreaterThan(good!.imageScore);
    expect(bad!.verdict).toBeDefined();
    expect(bad!.normalizedScore!).toBeGreaterThanOrEqual(good!.normalizedScore!);
  });

  it('the single scoring session and the session-by-session path give the same maps', async () => {
    const files = [path.join(BOTTLE, 'test', 'broken_large', '000.png'), path.join(BOTTLE, 'test', 'good', '000.png')];
    const { tensor } = await preprocessBatch(files, model.header.preprocess);
    const batch = { data: tensor, dims: [2, 3, model.size, model.size] as [number, number, number, number] };
    // Spy on the fused path so that the comparison below cannot silently compare a path with itself.
    const fusedPath = vi.spyOn(model as unknown as { fusedMaps: (...a: unknown[]) => Promise<Float32Array[]> }, 'fusedMaps');
    const fused = await model.anomalyMaps(batch);
    expect(fusedPath).toHaveBeenCalledTimes(1);
    // A transform of the squared distances needs them, so it takes the session-by-session path.
    const stepwise = await model.anomalyMaps(batch, (d2) => d2);
    expect(fusedPath).toHaveBeenCalledTimes(1);
    fusedPath.mockRestore();
    const session = (await (model as unknown as { fusedScoring(): Promise<{ inputNames: readonly string[] } | undefined> }).fusedScoring())!;
    // The image, then the inverse-covariance stripes, fed at every run from the model's one copy.
    expect(session.inputNames).toEqual([model.header.backbone.inputName, ...inverseStripeInputs(model)]);
    for (let i = 0; i < 2; i++) {
      let worst = 0;
      let max = 0;
      for (let k = 0; k < fused[i]!.length; k++) {
        worst = Math.max(worst, Math.abs(fused[i]![k]! - stepwise[i]![k]!));
        max = Math.max(max, stepwise[i]![k]!);
      }
      expect(worst / max).toBeLessThan(1e-5);
    }
  });

  it('concurrent scoring on one model equals sequential scoring', async () => {
    const files = ['000.png', '001.png', '002.png'].map((f) => path.join(BOTTLE, 'test', 'contamination', f));
    const seq = [];
    for (const f of files) seq.push((await model.score(f)).imageScore);
    const par = await Promise.all(files.map((f) => model.score(f)));
    expect(par.map((r) => r.imageScore)).toEqual(seq);
  });

  it('a loaded model scores exactly like the fitted one', async () => {
    const loaded = await Model.load(modelFile);
    const f = path.join(BOTTLE, 'test', 'broken_small', '003.png');
    const [a, b] = [await model.score(f), await loaded.score(f)];
    expect(b.imageScore).toBe(a.imageScore);
    expect(b.verdict).toBe(a.verdict);
    await loaded.dispose();
  });
});

describe('model file', () => {
  it('is deterministic: same data, seed and options → byte-identical file', async () => {
    const again = await fit(train, { ...common, calibration: calib });
    const f2 = path.join(tmp, 'again.partscan');
    await again.save(f2);
    await again.dispose();
    expect(Buffer.compare(await fs.readFile(modelFile), await fs.readFile(f2))).toBe(0);
  });

  it('rejects truncated, bit-flipped, wrong-magic and other-major-version files', async () => {
    const bytes = await fs.readFile(modelFile);
    const write = async (name: string, b: Uint8Array) => {
      const f = path.join(tmp, name);
      await fs.writeFile(f, b);
      return f;
    };
    await expectCode(Model.load(await write('trunc.partscan', bytes.subarray(0, bytes.length - 1000))), 'MODEL_FORMAT');
    await expectCode(Model.load(await write('tiny.partscan', bytes.subarray(0, 20))), 'MODEL_FORMAT');
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 5000]! ^= 0x10;
    await expectCode(Model.load(await write('flip.partscan', flipped)), 'MODEL_CHECKSUM');
    const flippedHeader = Buffer.from(bytes);
    flippedHeader[60]! ^= 0x01;
    await expectCode(Model.load(await write('fliph.partscan', flippedHeader)), 'MODEL_CHECKSUM');
    const magic = Buffer.from(bytes);
    magic.write('NOTAMODL', 0);
    await expectCode(Model.load(await write('magic.partscan', magic)), 'MODEL_FORMAT');
    const major = Buffer.from(bytes);
    major.writeUInt16LE(2, 8);
    const e = await expectCode(Model.load(await write('major.partscan', major)), 'MODEL_VERSION');
    expect(e.message).toContain('major.partscan');
    await expectCode(Model.load(path.join(tmp, 'missing.partscan')), 'MODEL_FORMAT');
  });

  it('refuses a backbone that differs from the fitted one', async () => {
    const e = await expectCode(Model.load(modelFile, { backbone: { backbone: 'resnet50-random', seed: 0 } }), 'BACKBONE_MISMATCH');
    expect(e.message).toContain('resnet50');
  });

  it('a compact (non-resumable) file is smaller and still scores', async () => {
    const f = path.join(tmp, 'compact.partscan');
    await model.save(f, { resumable: false, embedBackbone: false });
    const [full, compact] = [(await fs.stat(modelFile)).size, (await fs.stat(f)).size];
    expect(compact).toBeLessThan(full / 2);
    const m = await Model.load(f, { backbone });
    expect(m.m2).toBeUndefined();
    expect(m.samples).toBeUndefined();
    await m.dispose();
  });

  it('a resumable file of a fit with at most d/2 images keeps the samples instead of scatter matrices', async () => {
    // 10 images, d = 24: the low-rank fit; the samples (P·10·24 floats) are smaller than P·300 scatter values.
    expect(model.header.gaussian.resumeState).toBe('samples');
    const m = await Model.load(modelFile);
    expect(m.header.gaussian).toMatchObject({ resumable: true, resumeState: 'samples', images: 10 });
    // Scoring does not need them: left in the file until asked for.
    expect(m.samples).toBeUndefined();
    const kept = await m.resumeStatistics();
    expect(kept.m2).toBeUndefined();
    expect(kept.samples?.length).toBe(m.positions * 10 * 24);
    expect(kept.samples).toEqual(model.samples);
    expect(m.samples).toBe(kept.samples);
    await m.dispose();
    const eager = await Model.load(modelFile, { resumeStatistics: true });
    expect(eager.samples).toEqual(model.samples);
    await eager.dispose();
  });

  it('reads the statistics for resuming only when asked, and checks them then', async () => {
    const f = path.join(tmp, 'lazy.partscan');
    await fs.copyFile(modelFile, f);
    const { header } = await readModelFile(f, { sections: () => false });
    const section = header.sections.find((s) => s.name === 'samples')!;
    // Damage the samples section: loading and scoring still work (the section is not read) …
    const handle = await fs.open(f, 'r+');
    await handle.write(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, section.offset + 8);
    await handle.close();
    const m = await Model.load(f);
    const img = path.join(BOTTLE, 'test', 'broken_large', '001.png');
    expect((await m.score(img)).imageScore).toBeCloseTo((await model.score(img)).imageScore, 4);
    // … resuming or saving reads it, verifies it and refuses it.
    await expectCode(m.resumeStatistics(), 'MODEL_CHECKSUM');
    await expectCode(m.save(path.join(tmp, 'lazy-copy.partscan')), 'MODEL_CHECKSUM');
    // A compact save does not need it.
    await m.save(path.join(tmp, 'lazy-compact.partscan'), { resumable: false });
    await m.dispose();
    // A file replaced by another model after loading is refused, not mixed in.
    const five = await fit(train.slice(0, 5), { ...common, calibration: calib.slice(0, 2) });
    await five.save(f);
    await five.dispose();
    const swapped = await Model.load(f);
    await fs.copyFile(modelFile, f);
    await expectCode(swapped.resumeStatistics(), 'MODEL_FORMAT');
    await swapped.dispose();
  });
});

/** Means within 1e-4 and inverse covariances within 1e-3 (relative, Frobenius) of the expected model's. */
function expectSameGaussians(got: Model, expected: Model): void {
  let maxMean = 0;
  for (let i = 0; i < expected.mean.length; i++) maxMean = Math.max(maxMean, Math.abs(got.mean[i]! - expected.mean[i]!));
  expect(maxMean).toBeLessThan(1e-4);
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.invCovPacked.length; i++) {
    num += (got.invCovPacked[i]! - expected.invCovPacked[i]!) ** 2;
    den += expected.invCovPacked[i]! ** 2;
  }
  expect(Math.sqrt(num / den)).toBeLessThan(1e-3);
}

describe('incremental fit', () => {
  it('fit --resume equals fitting all images at once (to float tolerance)', async () => {
    const first = await fit(train.slice(0, 6), { ...common, calibration: calib });
    const f = path.join(tmp, 'first.partscan');
    await first.save(f);
    await first.dispose();
    const resumed = await fit(train.slice(6), { ...common, resume: f, calibration: calib });
    expect(resumed.header.gaussian.images).toBe(10);
    expectSameGaussians(resumed, model);
    const img = path.join(BOTTLE, 'test', 'broken_large', '001.png');
    const [a, b] = [await model.score(img), await resumed.score(img)];
    expect(Math.abs(a.imageScore - b.imageScore) / a.imageScore).toBeLessThan(1e-3);
    await resumed.dispose();
  });

  it('resuming past d/2 images switches from kept samples to streaming scatter matrices, same result', async () => {
    // d = 8: 4 images fit low-rank (samples kept); 4 + 6 = 10 > 4 stream from the resumed samples on.
    const opts = { ...common, channels: 8, calibration: calib.slice(0, 2) };
    const all = await fit(train, opts);
    expect(all.header.gaussian.resumeState).toBe('scatter');
    const first = await fit(train.slice(0, 4), opts);
    expect(first.header.gaussian.resumeState).toBe('samples');
    const f = path.join(tmp, 'first-low-rank.partscan');
    await first.save(f);
    await first.dispose();
    const resumed = await fit(train.slice(4), { ...opts, resume: f });
    expect(resumed.header.gaussian).toMatchObject({ images: 10, resumeState: 'scatter' });
    expect(resumed.samples).toBeUndefined();
    expectSameGaussians(resumed, all);
    for (let i = 0; i < all.m2!.length; i++) expect(Math.abs(resumed.m2![i]! - all.m2![i]!)).toBeLessThan(1e-3 * (1 + Math.abs(all.m2![i]!)));
    await Promise.all([all.dispose(), resumed.dispose()]);
  });
});

describe('tiling', () => {
  it('lays out tiles covering the image and stitches back to native resolution', async () => {
    const { tileLayout } = await import('../src/preprocess/preprocess.js');
    const boxes = tileLayout(512, 400, 256, 32);
    const covered = new Uint8Array(512 * 400);
    for (const b of boxes) for (let y = b.y; y < b.y + b.height; y++) for (let x = b.x; x < b.x + b.width; x++) covered[y * 512 + x] = 1;
    expect(covered.every((v) => v === 1)).toBe(true);
    expect(boxes.every((b) => b.width === 256 && b.height === 256)).toBe(true);
    const { stitchTiles } = await import('../src/model/model.js');
    // Tiles that agree (one linear ramp over the whole image, sampled at each tile's own 64×64 grid)
    // stitch back to the ramp: pins the placement and the resampling of every tile.
    const ramp = (x: number, y: number) => 0.01 * x + 0.02 * y;
    const maps = boxes.map((b) => {
      const m = new Float32Array(64 * 64);
      // Pixel centres of the 64-grid in native coordinates (bilinear resize aligns centres).
      for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) m[y * 64 + x] = ramp(b.x + ((x + 0.5) * b.width) / 64 - 0.5, b.y + ((y + 0.5) * b.height) / 64 - 0.5);
      return m;
    });
    const st = stitchTiles(maps, boxes, 64, 512, 400, 32);
    expect(st.length).toBe(512 * 400);
    // Away from the image border (where bilinear resizing clamps), the ramp is reproduced.
    let worst = 0;
    for (let y = 4; y < 396; y++) for (let x = 4; x < 508; x++) worst = Math.max(worst, Math.abs(st[y * 512 + x]! - ramp(x, y)));
    expect(worst).toBeLessThan(1e-3);
  });

  it('blends tiles that disagree with a linear ramp across their overlap', async () => {
    const { stitchTiles } = await import('../src/model/model.js');
    // Two 256-px tiles side by side overlapping by 64 px: the left one says 1, the right one 3.
    const boxes = [
      { x: 0, y: 0, width: 256, height: 256 },
      { x: 192, y: 0, width: 256, height: 256 },
    ];
    const maps = [new Float32Array(256 * 256).fill(1), new Float32Array(256 * 256).fill(3)];
    const st = stitchTiles(maps, boxes, 256, 448, 256, 64);
    const row = Array.from({ length: 448 }, (_, x) => st[128 * 448 + x]!);
    // Only one tile covers a pixel: its value, exactly.
    for (let x = 0; x < 192; x++) expect(row[x]).toBeCloseTo(1, 6);
    for (let x = 256; x < 448; x++) expect(row[x]).toBeCloseTo(3, 6);
    // Across the overlap each tile's weight ramps down to its edge: strictly increasing, symmetric about
    // the overlap's middle (value 2 there), and no tile dominates the other's side of the overlap.
    for (let x = 193; x < 256; x++) expect(row[x]!).toBeGreaterThan(row[x - 1]!);
    for (let k = 0; k < 32; k++) expect(row[192 + k]! + row[255 - k]!).toBeCloseTo(4, 5);
    // 8.5 px into the overlap the right tile weighs (8.5/64) against the left one's (55.5/64).
    expect(row[200]!).toBeCloseTo((55.5 + 3 * 8.5) / 64, 5);
  });

  it('fits on native-resolution tiles and scores full-resolution maps (max over tiles)', async () => {
    const tiled = await fit(train.slice(0, 4), { backbone, channels: 16, tile: { size: 256, overlap: 32 }, imageSize: 128, calibration: calib.slice(0, 2), seed: 1 });
    expect(tiled.header.tiling).toEqual({ tile: 256, overlap: 32 });
    expect(tiled.header.gaussian.images).toBe(4 * 9); // 512 px bottle: 3×3 tiles of 256 with overlap ≥ 32
    const r = await tiled.score(path.join(BOTTLE, 'test', 'broken_large', '000.png'));
    expect([r.mapWidth, r.mapHeight]).toEqual([512, 512]);
    expect(r.anomalyMap.length).toBe(512 * 512);
    let mapMax = -Infinity;
    for (const v of r.anomalyMap) mapMax = Math.max(mapMax, v);
    expect(mapMax).toBeLessThanOrEqual(r.imageScore + 1e-4);
    expect(mapMax).toBeGreaterThan(0);
    expect(r.mask?.length).toBe(512 * 512);
    await tiled.dispose();
  });
});

describe('ROI mask', () => {
  it('is fitted into the model; ignored pixels never count; a wrong-size ROI is refused', async () => {
    const sharp = (await import('sharp')).default;
    // Bottle images are 512×512: inspect only the left half.
    const roiPx = Buffer.alloc(512 * 512);
    for (let y = 0; y < 512; y++) for (let x = 0; x < 256; x++) roiPx[y * 512 + x] = 255;
    const roiFile = path.join(tmp, 'roi.png');
    await sharp(roiPx, { raw: { width: 512, height: 512, channels: 1 } }).png().toFile(roiFile);
    const m = await fit(train.slice(0, 6), { ...common, channels: 12, calibration: calib.slice(0, 2), roi: roiFile });
    expect(m.header.roi).toEqual({ width: 128, height: 128 });
    const f = path.join(tmp, 'roi-model.partscan');
    await m.save(f);
    const loaded = await Model.load(f);
    const r = await loaded.score(path.join(BOTTLE, 'test', 'broken_large', '002.png'));
    for (let y = 0; y < 128; y++) for (let x = 64; x < 128; x++) expect(r.mask![y * 128 + x]).toBe(0);
    for (const reg of r.regions!) expect(reg.bbox.x + reg.bbox.width).toBeLessThanOrEqual(64);
    await loaded.dispose();
    await m.dispose();
    const small = path.join(tmp, 'roi-small.png');
    await sharp(Buffer.alloc(100 * 100, 255), { raw: { width: 100, height: 100, channels: 1 } }).png().toFile(small);
    const e = await expectCode(fit(train.slice(0, 3), { ...common, channels: 8, calibration: calib.slice(0, 2), roi: small }), 'MASK');
    expect(e.message).toContain('roi-small.png');
  });
});
