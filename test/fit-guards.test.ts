import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { fit } from '../src/model/fit.js';
import type { Model } from '../src/model/model.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const backbone = { backbone: 'resnet50', weights: REF_WEIGHTS };
let tmp: string;
let model: Model;
let good: string[];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-guards-'));
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  good = all.slice(0, 24);
  const dir = path.join(tmp, 'train');
  await fs.mkdir(dir);
  for (const f of good) await fs.symlink(f, path.join(dir, path.basename(f)));
  // A byte-identical copy, a black frame (lens cap), and a defective part among the "good" images.
  await fs.copyFile(good[3]!, path.join(dir, 'copy-of-003.png'));
  await sharp({ create: { width: 512, height: 512, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toFile(path.join(dir, 'black.png'));
  await fs.symlink(path.join(BOTTLE, 'test', 'broken_large', '000.png'), path.join(dir, 'zz-broken.png'));
  model = await fit(dir, { backbone, channels: 10, imageSize: 128, calibration: all.slice(30, 36), seed: 0 });
}, 300_000);
afterAll(async () => {
  await model?.dispose();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('training-set guards at fit time', () => {
  it('leaves out exact duplicates and constant images, naming them', () => {
    const rejected = model.fitReport!.rejected.map((r) => path.basename(r.file));
    expect(rejected).toContain('black.png');
    expect(rejected.some((f) => f === 'copy-of-003.png' || f === '003.png')).toBe(true);
    expect(model.header.gaussian.images).toBe(24 + 3 - 2);
    expect(model.fitWarnings!.some((w) => w.message.includes('black.png'))).toBe(true);
  });

  it('reports a likely contaminated training image with its score', () => {
    const suspects = model.fitReport!.suspects;
    console.log(JSON.stringify(suspects.map((x) => ({ file: path.basename(x.file), score: x.score, z: x.z }))));
    expect(suspects.map((s) => path.basename(s.file))).toContain('zz-broken.png');
    expect(suspects[0]!.score).toBeGreaterThan(0);
    // A review list, not a purge: at most a couple of real good images may also stand out.
    expect(suspects.length).toBeLessThanOrEqual(3);
    expect(model.fitWarnings!.some((w) => w.code === 'CONTAMINATED_TRAINING_IMAGE' && w.file?.endsWith('zz-broken.png'))).toBe(true);
  });
});

describe('drift warning at score time', () => {
  it('flags lighting / colour / focus shifts of good images, not the untouched good images', async () => {
    const testGood = (await listImages(path.join(BOTTLE, 'test', 'good'))).slice(0, 8);
    const untouched = await model.score(testGood);
    const falseAlarms = untouched.filter((r) => r.drift?.flag).length;
    const shifted: Buffer[] = [];
    for (const f of testGood.slice(0, 4)) {
      shifted.push(await sharp(f).linear(0.6, 0).png().toBuffer()); // darker
      shifted.push(await sharp(f).linear(1.4, 0).png().toBuffer()); // brighter
      shifted.push(await sharp(f).recomb([[1.15, 0, 0], [0, 1, 0], [0, 0, 0.85]]).png().toBuffer()); // warmer light
      shifted.push(await sharp(f).blur(3).png().toBuffer()); // out of focus
    }
    const shiftedResults = await model.score(shifted);
    const detected = shiftedResults.filter((r) => r.drift?.flag).length;
    console.log(JSON.stringify({ falseAlarms, untouched: untouched.length, detected, shifted: shifted.length }));
    expect(falseAlarms).toBe(0);
    expect(detected).toBe(shifted.length);
    expect(shiftedResults[0]!.drift!.reasons.join(' ')).toMatch(/brightness/);
    expect(shiftedResults[0]!.warnings.some((w) => w.code === 'DRIFT')).toBe(true);
  });
});
