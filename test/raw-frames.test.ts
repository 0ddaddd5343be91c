/**
 * The SDK as inspection software embeds it (issue 24, items 1 and 3): camera frames in — raw RGB / BGR /
 * mono8 / RGBA buffers with a stride, and encoded bytes in any Uint8Array — scoring like the same pixels
 * saved as PNG; typed errors naming the field for inconsistent frames; region boxes in the source
 * image's pixels (the model-grid box kept as mapBbox), consistent with crops, ROI and tiles, and the
 * same in results.json and the report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { fit } from '../src/model/fit.js';
import type { Model } from '../src/model/model.js';
import type { ScoreInput, ScoreResult } from '../src/model/types.js';
import { isPartscanError } from '../src/errors.js';
import { contiguousRgb, type RawFrame } from '../src/preprocess/raw-frame.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { writeScoredRun } from '../src/export/score-run.js';
import { writeReport } from '../src/report/html.js';
import { expectContract } from './helpers/json-contract.js';
import { BOTTLE } from './helpers/shared.js';
import { thrown } from './helpers/errors.js';
import { FIXTURE_BACKBONE, smallBottleModel } from './helpers/small-bottle-model.js';

const defect = path.join(BOTTLE, 'test', 'broken_large', '000.png');
const good = path.join(BOTTLE, 'test', 'good', '000.png');
let tmp: string;
let train: string[];
let model: Model;
const backbone = FIXTURE_BACKBONE;

beforeAll(async () => {
  ({ tmp, train, model } = await smallBottleModel('frames'));
}, 180_000);

afterAll(async () => {
  await model?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** Decoded pixels of a file, as a camera would hand them over. */
async function pixels(file: string, channels: 3 | 4 = 3): Promise<RawFrame & { data: Uint8Array }> {
  const img = sharp(file);
  const { data, info } = await (channels === 4 ? img.ensureAlpha() : img.removeAlpha()).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function expectSameScore(a: ScoreResult, b: ScoreResult): void {
  expect(Math.abs(a.imageScore - b.imageScore)).toBeLessThan(1e-4);
  expect(maxDiff(a.anomalyMap, b.anomalyMap)).toBeLessThan(1e-4);
  expect(b.verdict).toBe(a.verdict);
}

/**
 * These tests are about coordinates, not about where a few-image fit puts its pixel threshold: put it
 * below the peaks of the defective parts used, so that they show regions.
 */
async function pixelThresholdBelowPeaks(m: Model, files: string[]): Promise<void> {
  const rs = await m.score(files);
  const peak = (map: Float32Array) => map.reduce((a, v) => Math.max(a, v), -Infinity);
  const t = m.header.thresholds!;
  m.setThresholds({ ...t, pixel: 0.8 * Math.min(...rs.map((r) => peak(r.anomalyMap))) });
}


describe('raw camera frames', () => {
  it('an RGB frame scores within 1e-4 of the same pixels as PNG, and is read in place', async () => {
    const frame = await pixels(defect);
    const [fromFile, fromFrame] = await Promise.all([model.score(defect), model.score(frame)]);
    expectSameScore(fromFile, fromFrame);
    expect(fromFrame.source).toBe('<frame>');
    expect(fromFrame.info).toMatchObject({ width: 512, height: 512, channels: 3, format: 'raw', bitDepth: 8 });
    // No copy: libvips reads the caller's buffer.
    expect(contiguousRgb(frame).buffer).toBe(frame.data.buffer);
  });

  it("a BGR frame with padded rows (order: 'bgr', stride) scores like the PNG; one repack, never a write to the caller's buffer", async () => {
    const rgb = await pixels(defect);
    const stride = rgb.width * 3 + 64;
    const data = new Uint8Array(stride * rgb.height).fill(0xab); // padding holds garbage
    for (let y = 0; y < rgb.height; y++) {
      for (let x = 0; x < rgb.width; x++) {
        const s = (y * rgb.width + x) * 3;
        const d = y * stride + x * 3;
        data[d] = rgb.data[s + 2]!;
        data[d + 1] = rgb.data[s + 1]!;
        data[d + 2] = rgb.data[s]!;
      }
    }
    const before = Uint8Array.from(data);
    const bgr: RawFrame = { data, width: rgb.width, height: rgb.height, channels: 3, stride, order: 'bgr' };
    expectSameScore(await model.score(defect), await model.score(bgr));
    expect(data).toEqual(before);
    expect(contiguousRgb(bgr).buffer).not.toBe(data.buffer);
  });

  it('a mono8 frame scores like the grey PNG, an RGBA frame like the RGBA PNG (alpha flattened alike)', async () => {
    const grayPng = await sharp(defect).greyscale().png().toBuffer();
    const gray = await sharp(grayPng).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    expect(gray.info.channels).toBe(1);
    expectSameScore(await model.score(grayPng), await model.score({ data: gray.data, width: gray.info.width, height: gray.info.height, channels: 1 }));

    // Alpha that matters: a transparent band flattened onto the white background.
    const rgba = await pixels(defect, 4);
    for (let y = 100; y < 160; y++) for (let x = 0; x < rgba.width; x++) rgba.data[(y * rgba.width + x) * 4 + 3] = 40;
    const rgbaPng = await sharp(rgba.data, { raw: { width: rgba.width, height: rgba.height, channels: 4 } }).png().toBuffer();
    expectSameScore(await model.score(rgbaPng), await model.score(rgba));
  });

  it('encoded bytes in any Uint8Array (not only a Buffer) and Uint8ClampedArray frames score like the file', async () => {
    const bytes = await fs.readFile(defect);
    const plain = new Uint8Array(bytes.byteLength);
    plain.set(bytes);
    const ref = await model.score(defect);
    const fromBytes = await model.score(plain);
    expectSameScore(ref, fromBytes);
    expect(fromBytes.source).toBe('<buffer>');
    const frame = await pixels(defect);
    expectSameScore(ref, await model.score({ ...frame, data: new Uint8ClampedArray(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength) }));
  });

  it('one batch may mix paths, bytes, frames and tensors; each scores as it does alone', async () => {
    const tensor = await preprocessBatch([good], model.header.preprocess);
    const inputs: ScoreInput[] = [defect, await fs.readFile(good), await pixels(defect), { data: tensor.tensor, dims: [1, 3, 128, 128] }];
    const batch = await model.score(inputs, { batchSize: 4 });
    const alone = await Promise.all(inputs.map((i) => model.score(i)));
    batch.forEach((r, k) => expectSameScore(alone[k]!, r));
    expect(batch.map((r) => r.source)).toEqual([defect, '<buffer>', '<frame>', '<tensor>']);
  });

  it('an inconsistent frame is a typed INVALID_FRAME error naming the field; a bare array is no TypeError', async () => {
    const f = await pixels(defect);
    const cases: [Partial<RawFrame> & Record<string, unknown>, string][] = [
      [{ data: f.data.subarray(0, 1000) }, 'data'],
      [{ stride: f.width * 3 - 1 }, 'stride'],
      [{ channels: 2 as never }, 'channels'],
      [{ width: 0 }, 'width'],
      [{ height: 1.5 }, 'height'],
      [{ order: 'grb' as never }, 'order'],
      [{ data: new Float32Array(10) as never }, 'data'],
      [{ pitch: 4 }, 'pitch'],
    ];
    for (const [change, field] of cases) {
      const e = await thrown(() => model.score({ ...f, ...change } as RawFrame));
      expect(isPartscanError(e, 'INVALID_FRAME'), `${field}: ${String(e)}`).toBe(true);
      expect((e as Error).message).toContain(`Invalid raw frame: ${field} `);
    }
    // Undecodable bytes in a Uint8Array: the decode error, not "undefined is not iterable".
    expect(isPartscanError(await thrown(() => model.score(new Uint8Array(64).fill(7))), 'IMAGE_DECODE')).toBe(true);
    for (const bad of [3, null, new Float32Array(12), { foo: 1 }]) {
      expect(isPartscanError(await thrown(() => model.score(bad as never)), 'OPTIONS'), String(bad)).toBe(true);
    }
  });
});

describe('region coordinates: source-image pixels, the model grid kept as mapBbox', () => {
  it('bbox, centroid and area are the map region scaled onto the image; results.json and the report say the same', async () => {
    const r = await model.score(defect);
    expect(r.regions!.length).toBeGreaterThan(0);
    const s = 512 / 128;
    for (const g of r.regions!) {
      expect(g.bbox).toEqual({ x: g.mapBbox.x * s, y: g.mapBbox.y * s, width: g.mapBbox.width * s, height: g.mapBbox.height * s });
      expect(g.centroid.x).toBeCloseTo((g.mapCentroid.x + 0.5) * s - 0.5, 9);
      expect(g.centroid.y).toBeCloseTo((g.mapCentroid.y + 0.5) * s - 0.5, 9);
      expect(g.areaPx).toBe(g.mapAreaPx * s * s);
      expect(g.bbox.x + g.bbox.width).toBeLessThanOrEqual(512);
    }
    // The mask pixels of a region lie inside its map box.
    const g = r.regions![0]!;
    let inside = 0;
    for (let y = g.mapBbox.y; y < g.mapBbox.y + g.mapBbox.height; y++) for (let x = g.mapBbox.x; x < g.mapBbox.x + g.mapBbox.width; x++) inside += r.mask![y * 128 + x]!;
    expect(inside).toBeGreaterThanOrEqual(g.mapAreaPx);

    const run = path.join(tmp, 'coords-run');
    const manifest = await writeScoredRun(model, [r], run, { monitor: false });
    const json = JSON.parse(await fs.readFile(path.join(run, 'results.json'), 'utf8'));
    expectContract('results', json);
    expect(json.results[0].regions).toEqual(JSON.parse(JSON.stringify(r.regions)));
    expect(json.results[0]).toMatchObject({ width: 512, height: 512 });
    expect(manifest.results[0]!.regions[0]!.bbox).toEqual(g.bbox);
    const html = await fs.readFile(await writeReport(run), 'utf8');
    expect(html).toContain(`${g.bbox.x}, ${g.bbox.y}, ${g.bbox.width}×${g.bbox.height}`);
  });

  it('a non-square image: x scales by width / map side, y by height / map side', async () => {
    const wide = await sharp(defect).resize(800, 300, { fit: 'fill' }).png().toBuffer();
    const r = await model.score(wide);
    expect(r.regions!.length).toBeGreaterThan(0);
    for (const g of r.regions!) {
      expect(g.bbox.x).toBe(Math.floor((g.mapBbox.x * 800) / 128));
      expect(g.bbox.y).toBe(Math.floor((g.mapBbox.y * 300) / 128));
      expect(g.bbox.x + g.bbox.width).toBe(Math.min(800, Math.ceil(((g.mapBbox.x + g.mapBbox.width) * 800) / 128)));
      expect(g.bbox.y + g.bbox.height).toBe(Math.min(300, Math.ceil(((g.mapBbox.y + g.mapBbox.height) * 300) / 128)));
    }
  });

  it('a centre-cropped model: boxes land in the crop window of the image (mapWindow), never outside it', async () => {
    const cropped = await fit(train, { backbone, imageSize: 160, preprocess: { cropSize: 128 }, channels: 30, calibrationSplit: 0.25, contaminationCheck: false });
    try {
      await pixelThresholdBelowPeaks(cropped, [defect]);
      const r = await cropped.score(defect);
      // The crop is 128 of 160 px, offset 16: 64..448 of the 512-px image.
      expect(r.mapWindow).toEqual({ x: 51, y: 51, width: 410, height: 410 });
      expect(r.regions!.length).toBeGreaterThan(0);
      for (const g of r.regions!) {
        expect(g.bbox.x).toBeGreaterThanOrEqual(51);
        expect(g.bbox.y).toBeGreaterThanOrEqual(51);
        expect(g.bbox.x + g.bbox.width).toBeLessThanOrEqual(51 + 410);
        expect(g.bbox.y + g.bbox.height).toBeLessThanOrEqual(51 + 410);
      }
      // The map back on the image (export, overlay) is 0 outside the window.
      const full = cropped.mapToOriginal(r.normalizedMap!, 512, 512);
      expect(full[10 * 512 + 10]).toBe(0);
      expect(full[256 * 512 + 256]).toBeGreaterThan(0);
    } finally {
      await cropped.dispose();
    }
  }, 180_000);

  it('with a ROI, every region lies inside the inspected part of the image', async () => {
    // Inspect the left half only.
    const roi = path.join(tmp, 'roi.png');
    const half = new Uint8Array(512 * 512);
    for (let y = 0; y < 512; y++) half.fill(255, y * 512, y * 512 + 256);
    await sharp(half, { raw: { width: 512, height: 512, channels: 1 } }).png().toFile(roi);
    const withRoi = await fit(train, { backbone, imageSize: 128, channels: 30, calibrationSplit: 0.25, roi, contaminationCheck: false });
    try {
      await pixelThresholdBelowPeaks(withRoi, [defect]);
      const rs = await withRoi.score([defect, path.join(BOTTLE, 'test', 'contamination', '000.png')]);
      expect(rs.some((r) => r.regions!.length > 0)).toBe(true);
      for (const r of rs) for (const g of r.regions!) expect(g.bbox.x + g.bbox.width).toBeLessThanOrEqual(256);
    } finally {
      await withRoi.dispose();
    }
  }, 180_000);

  it('a tiled model scores at native resolution: bbox = mapBbox, in the image pixels, for files and frames alike', async () => {
    const tiled = await fit(train.slice(0, 6), { backbone, tile: { size: 256, overlap: 32 }, imageSize: 64, channels: 20, calibrationSplit: 0.34, contaminationCheck: false });
    try {
      await pixelThresholdBelowPeaks(tiled, [defect]);
      const [r, fromFrame] = await Promise.all([tiled.score(defect), tiled.score(await pixels(defect))]);
      expect([r.mapWidth, r.mapHeight]).toEqual([512, 512]);
      expect(r.regions!.length).toBeGreaterThan(0);
      for (const g of r.regions!) {
        expect(g.bbox).toEqual(g.mapBbox);
        expect(g.areaPx).toBe(g.mapAreaPx);
      }
      expect(maxDiff(r.anomalyMap, fromFrame.anomalyMap)).toBeLessThan(1e-4);
      expect(fromFrame.regions).toEqual(r.regions);
    } finally {
      await tiled.dispose();
    }
  }, 180_000);
});
