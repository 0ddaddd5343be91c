import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKBONES, bundledModelPath, isWeightsCached, resolveBackbone } from '../src/backbone/registry.js';
import { isPartscanError, type PartscanError } from '../src/errors.js';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { BOTTLE, MOBILENET_INT8, REPO } from './helpers/shared.js';

const NAME = 'mobilenetv2-int8';
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'partscan-bundled-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function caught(fn: () => Promise<unknown>): Promise<PartscanError> {
  try {
    await fn();
  } catch (e) {
    if (isPartscanError(e)) return e;
    throw e;
  }
  throw new Error('expected a PartscanError');
}

const train = (n: number) => Array.from({ length: n }, (_, i) => path.join(BOTTLE, 'train', 'good', `${String(i).padStart(3, '0')}.png`));

describe('bundled backbone mobilenetv2-int8', () => {
  it('ships the shared model file byte for byte, with the registry sha256 and its licence', () => {
    const file = bundledModelPath(BACKBONES[NAME]!.fileName!);
    expect(path.dirname(file)).toBe(path.join(REPO, 'models'));
    const bytes = readFileSync(file);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(BACKBONES[NAME]!.sha256);
    expect(bytes.equals(readFileSync(MOBILENET_INT8))).toBe(true);
    expect(readFileSync(path.join(REPO, 'models', 'NOTICE-mobilenetv2.md'), 'utf8')).toMatch(/Apache License[\s\S]*Version 2\.0/);
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('models/mobilenetv2-12-int8.onnx');
  });

  it('resolves without download or cache: three int8 tensors at strides 4/8/16, 152 channels', async () => {
    const cacheDir = path.join(tmp, 'empty-cache');
    expect(isWeightsCached(NAME, cacheDir)).toBe(true);
    const r = await resolveBackbone({ backbone: NAME, cacheDir, offline: true });
    expect(r.identity).toEqual({
      name: NAME,
      sha256: BACKBONES[NAME]!.sha256,
      layers: ['339_quantized', '365_quantized', '426_quantized'],
      strides: [4, 8, 16],
      channels: [24, 32, 96],
    });
    const sub = await resolveBackbone({ backbone: NAME, layers: ['426_quantized', '339_quantized'] });
    expect(sub.identity.layers).toEqual(['339_quantized', '426_quantized']);
    expectCodeOf(await caught(() => resolveBackbone({ backbone: NAME, layers: ['output'] })), 'OPTIONS');
    expectCodeOf(await caught(() => resolveBackbone({ backbone: NAME, weights: 'x.safetensors' })), 'OPTIONS');
  });

  it('refuses a bundled file whose sha256 differs from the registry', async () => {
    const entry = BACKBONES[NAME]!;
    const saved = entry.sha256;
    entry.sha256 = '0'.repeat(64);
    try {
      const e = await caught(() => resolveBackbone({ backbone: NAME }));
      expectCodeOf(e, 'WEIGHTS_CHECKSUM');
      expect(e.remedy).toMatch(/reinstall/);
    } finally {
      entry.sha256 = saved;
    }
  });

  it('fits at its defaults (all 152 channels, 224 px), saves without the graph and loads it back from the package', async () => {
    const model = await fit(train(12), { backbone: { backbone: NAME }, calibrationSplit: 0, contaminationCheck: false });
    const file = path.join(tmp, 'bottle.partscan');
    try {
      expect(model.header.backbone.name).toBe(NAME);
      expect(model.header.embedding.channels).toBe(152);
      expect(model.header.embedding.totalChannels).toBe(152);
      expect(model.header.preprocess.imageSize).toBe(224);
      expect([model.header.embedding.gridW, model.header.embedding.gridH]).toEqual([56, 56]);
      await model.save(file, { embedBackbone: false });
      const probe = [path.join(BOTTLE, 'test', 'good', '000.png'), path.join(BOTTLE, 'test', 'broken_large', '000.png')];
      const before = await model.score(probe);
      const loaded = await Model.load(file);
      try {
        expect(loaded.header.backbone.embedded).toBe(false);
        const after = await loaded.score(probe);
        expect(after.map((r) => r.imageScore)).toEqual(before.map((r) => r.imageScore));
        expect(after[1]!.imageScore).toBeGreaterThan(after[0]!.imageScore);
      } finally {
        await loaded.dispose();
      }
    } finally {
      await model.dispose();
    }
    // --channels below 152 draws the usual seeded subset.
    const small = await fit(train(6), { backbone: { backbone: NAME }, channels: 40, calibrationSplit: 0, contaminationCheck: false });
    try {
      expect(small.header.embedding.channels).toBe(40);
      expect(new Set(small.channelIndices).size).toBe(40);
    } finally {
      await small.dispose();
    }
  }, 120_000);
});

function expectCodeOf(e: PartscanError, code: string): void {
  expect(e.code, e.message).toBe(code);
}

describe('no silent fallback: resnet50 without weights', () => {
  it('offline: one error naming --weights, a run with network, and the bundled backbone', async () => {
    const e = await caught(() => resolveBackbone({ backbone: 'resnet50', cacheDir: path.join(tmp, 'none'), offline: true }));
    expectCodeOf(e, 'WEIGHTS_DOWNLOAD');
    expect(e.remedy).toMatch(/--weights <file\.safetensors>/);
    expect(e.remedy).toMatch(/network/);
    expect(e.remedy).toMatch(/--backbone mobilenetv2-int8/);
  });

  it('download impossible (nothing listening): the same ways out, and fit fails instead of changing backbone', async () => {
    const spec = { backbone: 'resnet50', cacheDir: path.join(tmp, 'none2'), weightsUrl: 'http://127.0.0.1:9/resnet50.safetensors' };
    const e = await caught(() => resolveBackbone(spec));
    expectCodeOf(e, 'WEIGHTS_DOWNLOAD');
    expect(e.message).toMatch(/could not be downloaded/);
    expect(e.remedy).toMatch(/--weights <file\.safetensors>.*network.*--backbone mobilenetv2-int8/);
    const f = await caught(() => fit(train(2), { backbone: spec, calibrationSplit: 0 }));
    expectCodeOf(f, 'WEIGHTS_DOWNLOAD');
  });
});
