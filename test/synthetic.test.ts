import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SYNTHETIC_DEFECT_TYPES,
  SYNTHETIC_MANIFEST,
  generateSyntheticParts,
  loadDataset,
  renderSyntheticSample,
} from '../src/data/index.js';
import { isPartscanError } from '../src/errors.js';

const SMALL = { size: 128, nTrain: 3, nTestGood: 2, nPerDefect: 2 } as const;

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-synthetic-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** sha256 of every file under root, keyed by relative path. */
async function hashTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else out[path.relative(root, p)] = createHash('sha256').update(await fs.readFile(p)).digest('hex');
    }
  };
  await walk(root);
  return out;
}

describe('generateSyntheticParts', () => {
  it('writes an MVTec layout that the loader reads, with a mask for every defect', async () => {
    const { root, counts } = await generateSyntheticParts(path.join(tmp, 'a'), SMALL);
    expect(counts).toEqual({
      'train/good': 3,
      'test/good': 2,
      'test/scratch': 2,
      'test/dent': 2,
      'test/chip': 2,
      'test/contamination': 2,
    });
    const ds = await loadDataset(root);
    expect(ds.format).toBe('mvtec');
    expect(ds.train).toHaveLength(3);
    expect(ds.test).toHaveLength(2 + 4 * 2);
    for (const s of ds.test) expect(s.maskPath !== undefined).toBe(s.anomalous);
    const meta = await sharp(ds.train[0]!.path).metadata();
    expect(meta).toMatchObject({ width: 128, height: 128, channels: 3, format: 'png' });
    const maskMeta = await sharp(path.join(root, 'ground_truth', 'dent', '000_mask.png')).metadata();
    expect(maskMeta).toMatchObject({ width: 128, height: 128, channels: 1 });
  });

  it('same seed → byte-identical files in another folder; another seed → different images', async () => {
    const a = await hashTree((await generateSyntheticParts(path.join(tmp, 'a'), SMALL)).root);
    const b = await hashTree((await generateSyntheticParts(path.join(tmp, 'b'), SMALL)).root);
    expect(Object.keys(a)).toHaveLength(3 + 2 + 8 + 8 + 1);
    expect(b).toEqual(a);
    const c = await hashTree((await generateSyntheticParts(path.join(tmp, 'c'), { ...SMALL, seed: 7 })).root);
    expect(c['train/good/000.png']).not.toBe(a['train/good/000.png']);
  });

  it('is idempotent, regenerates on other options without stale files, refuses foreign folders', async () => {
    const dir = path.join(tmp, 'idem');
    await generateSyntheticParts(dir, SMALL);
    const file = path.join(dir, 'train', 'good', '000.png');
    const before = (await fs.stat(file)).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    await generateSyntheticParts(dir, SMALL);
    expect((await fs.stat(file)).mtimeMs).toBe(before);

    await generateSyntheticParts(dir, { ...SMALL, nTrain: 2, nPerDefect: 1 });
    expect(await fs.readdir(path.join(dir, 'train', 'good'))).toEqual(['000.png', '001.png']);
    expect(await fs.readdir(path.join(dir, 'ground_truth', 'chip'))).toEqual(['000_mask.png']);
    const manifest = JSON.parse(await fs.readFile(path.join(dir, SYNTHETIC_MANIFEST), 'utf8'));
    expect(manifest).toMatchObject({ complete: true, options: { nTrain: 2, nPerDefect: 1, size: 128, seed: 0 } });

    // A deleted image makes the set incomplete: it is regenerated.
    await fs.rm(path.join(dir, 'test', 'dent', '000.png'));
    await generateSyntheticParts(dir, { ...SMALL, nTrain: 2, nPerDefect: 1 });
    expect(await fs.readdir(path.join(dir, 'test', 'dent'))).toEqual(['000.png']);

    const foreign = path.join(tmp, 'foreign');
    await fs.mkdir(foreign);
    await fs.writeFile(path.join(foreign, 'keep-me.txt'), 'user data');
    const e = await generateSyntheticParts(foreign, SMALL).catch((err: unknown) => err);
    expect(isPartscanError(e, 'DATASET')).toBe(true);
    expect(await fs.readdir(foreign)).toEqual(['keep-me.txt']);
  });

  it('rejects bad options', async () => {
    for (const bad of [{ size: 16 }, { nTrain: 0 }, { seed: -1 }, { nPerDefect: 1.5 }]) {
      const e = await generateSyntheticParts(path.join(tmp, 'bad'), bad).catch((err: unknown) => err);
      expect(isPartscanError(e, 'OPTIONS'), JSON.stringify(bad)).toBe(true);
    }
  });
});

describe('renderSyntheticSample', () => {
  it('written files are exactly the rendered samples', async () => {
    const { root } = await generateSyntheticParts(path.join(tmp, 'a'), SMALL);
    const s = renderSyntheticSample('test', 'contamination', 1, SMALL);
    const img = await sharp(path.join(root, 'test', 'contamination', '001.png')).raw().toBuffer();
    expect(new Uint8Array(img)).toEqual(s.image);
    const mask = await sharp(path.join(root, 'ground_truth', 'contamination', '001_mask.png')).toColourspace('b-w').raw().toBuffer();
    expect(Array.from(mask)).toEqual(Array.from(s.mask!, (v) => v * 255));
  });

  it.each(SYNTHETIC_DEFECT_TYPES)('%s masks are exact: outside equals the clean part, inside is visibly changed', (type) => {
    for (let i = 0; i < 5; i++) {
      const s = renderSyntheticSample('test', type, i, { seed: 3 });
      const mask = s.mask!;
      let inMask = 0;
      let changedIn = 0;
      let changedOut = 0;
      let changeSum = 0;
      for (let p = 0; p < mask.length; p++) {
        let d = 0;
        for (let c = 0; c < 3; c++) d = Math.max(d, Math.abs(s.image[p * 3 + c]! - s.clean[p * 3 + c]!));
        if (mask[p]) {
          inMask++;
          changeSum += d;
          if (d > 0) changedIn++;
        } else if (d > 0) changedOut++;
      }
      expect(changedOut).toBe(0);
      expect(inMask).toBeGreaterThan(15);
      expect(inMask).toBeLessThan(0.03 * mask.length);
      expect(changedIn / inMask).toBeGreaterThan(0.97);
      expect(changeSum / inMask).toBeGreaterThan(15);
    }
  });

  it('the clean part under a defect is a plausible good part; good parts vary a little', () => {
    const size = 256;
    const good = [0, 1, 2].map((i) => renderSyntheticSample('train', 'good', i));
    const g = good[0]!;
    expect(g.clean).toBe(g.image);
    expect(g.mask).toBeUndefined();
    const grey = (img: Uint8Array, x: number, y: number) => {
      const i = (y * size + x) * 3;
      return (img[i]! + img[i + 1]! + img[i + 2]!) / 3;
    };
    // Dark bore at the centre, bright turned face around it, dark fixture in the corner.
    expect(grey(g.image, 128, 128)).toBeLessThan(40);
    expect(grey(g.image, 128 + 60, 128)).toBeGreaterThan(90);
    expect(grey(g.image, 5, 5)).toBeLessThan(45);
    const meanDiff = (a: Uint8Array, b: Uint8Array) => {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
      return s / a.length;
    };
    for (const other of good.slice(1)) {
      const d = meanDiff(g.image, other.image);
      expect(d).toBeGreaterThan(1);
      expect(d).toBeLessThan(30);
    }
    expect(meanDiff(renderSyntheticSample('test', 'chip', 0).clean, g.image)).toBeLessThan(30);
    // Rendering is a pure function of (seed, size, sample): repeated calls agree.
    expect(renderSyntheticSample('test', 'dent', 4).image).toEqual(renderSyntheticSample('test', 'dent', 4).image);
  });

  it('rejects defect labels in the train split and unknown labels', () => {
    expect(() => renderSyntheticSample('train', 'dent', 0)).toThrow(/good parts/);
    expect(() => renderSyntheticSample('test', 'rust' as 'dent', 0)).toThrow(/Unknown synthetic defect/);
  });
});
