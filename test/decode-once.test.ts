/**
 * The fit's single decode (guards + backbone input from one decode) gives exactly what the two separate
 * decodes gave: the same fingerprints as `imageFingerprint` and the same tensors as `preprocessBatch`,
 * on real bottle (RGB PNG) and magnetic-tile (gray JPEG) images and on images that need the fallback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { fingerprintAndPreprocess } from '../src/guards/decode-once.js';
import { imageFingerprint } from '../src/guards/fingerprint.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { defaultPreprocessOptions } from '../src/preprocess/options.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, MAGNETIC_TILE } from './helpers/shared.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-decode-once-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function sameAsTwoDecodes(files: string[], imageSize: number, cropSize?: number): Promise<number> {
  const opts = defaultPreprocessOptions({ imageSize, ...(cropSize ? { cropSize } : {}) });
  const S = cropSize ?? imageSize;
  const tensor = new Float32Array(files.length * 3 * S * S);
  const once = await fingerprintAndPreprocess(files, opts, tensor);
  const twice = await preprocessBatch(files, opts);
  expect(tensor).toEqual(twice.tensor);
  for (let i = 0; i < files.length; i++) expect(once.fingerprints[i]).toEqual(await imageFingerprint(files[i]!, { maxPixels: opts.maxPixels }));
  return once.redecoded;
}

describe('single decode for guards and backbone input', () => {
  it('bottle (RGB PNG) and magnetic tile (gray JPEG, sizes vary): identical tensors and fingerprints, no second decode', async () => {
    const bottle = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 6);
    const tile = (await listImages(path.join(MAGNETIC_TILE, 'train', 'good'))).slice(0, 6);
    expect(await sameAsTwoDecodes([...bottle, ...tile], 224)).toBe(0);
    expect(await sameAsTwoDecodes(bottle.slice(0, 3), 256, 224)).toBe(0);
  }, 120_000);

  it('alpha, 16-bit and EXIF-rotated images fall back to a second decode with the same result', async () => {
    const src = path.join(BOTTLE, 'train', 'good', '000.png');
    const alpha = path.join(tmp, 'alpha.png');
    const deep = path.join(tmp, 'deep.png');
    const rotated = path.join(tmp, 'rotated.jpg');
    await sharp(src).ensureAlpha(0.5).png().toFile(alpha);
    await sharp(src).toColourspace('rgb16').png().toFile(deep);
    await sharp(src).jpeg().withMetadata({ orientation: 6 }).toFile(rotated);
    expect(await sameAsTwoDecodes([alpha, deep, rotated, src], 128)).toBe(3);
  }, 120_000);

  it('an 8-bit gray PNG (one channel) is preprocessed from its single decode, identically', async () => {
    const gray = path.join(tmp, 'gray.png');
    await sharp(path.join(BOTTLE, 'train', 'good', '001.png')).grayscale().png().toFile(gray);
    expect(await sameAsTwoDecodes([gray], 96)).toBe(0);
  }, 60_000);
});
