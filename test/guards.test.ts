import { readdirSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import {
  checkTrainingSet,
  driftScore,
  fitDriftModel,
  globalImageStats,
  GLOBAL_STATS_FEATURES,
  hammingDistance,
  hashFromHex,
  hashToHex,
  imageFingerprint,
  laplacianVariance,
  parseDriftModel,
  perceptualHash,
  resampleArea,
  statsToDescriptor,
  thumbnailDistance,
  type ImageFingerprint,
} from '../src/guards/index.js';
import { BOTTLE } from './helpers/shared.js';
import { driftDescriptorFromTensor } from '../src/guards/tensor-descriptor.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { defaultPreprocessOptions } from '../src/preprocess/options.js';

const TRAIN = path.join(BOTTLE, 'train', 'good');
const TEST_GOOD = path.join(BOTTLE, 'test', 'good');
const trainFiles = readdirSync(TRAIN).sort().map((f) => path.join(TRAIN, f));
const testGoodFiles = readdirSync(TEST_GOOD).sort().map((f) => path.join(TEST_GOOD, f));

async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    caught = e;
  }
  expect(isPartscanError(caught), `expected PartscanError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
}

/** A PNG whose content is shifted right and down by `dx`, `dy` pixels (edges repeated). */
async function shifted(file: string, dx: number, dy: number): Promise<Buffer> {
  const { width, height } = await sharp(file).metadata();
  return sharp(file)
    .extract({ left: 0, top: 0, width: width - dx, height: height - dy })
    .extend({ left: dx, top: dy, extendWith: 'copy' })
    .png()
    .toBuffer();
}

/** Fingerprint of in-memory bytes, named like a file for readable reports. */
async function fingerprintAs(name: string, bytes: Buffer): Promise<ImageFingerprint> {
  return { ...(await imageFingerprint(bytes)), file: name };
}

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const grayImage = (w: number, h: number) =>
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: w * h, maxLength: w * h }).map((xs) => Float64Array.from(xs));

describe('resampleArea', () => {
  it('averages blocks exactly for integer factors and preserves the mean for any factor', () => {
    const src = Float64Array.from([1, 3, 5, 7, 2, 4, 6, 8]); // 4×2
    expect([...resampleArea(src, 4, 2, 2, 1)]).toEqual([2.5, 6.5]);
    fc.assert(
      fc.property(
        fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 })),
        fc.infiniteStream(fc.double({ min: 0, max: 255, noNaN: true })),
        ([w, h, ow, oh], values) => {
          const src2 = Float64Array.from(values.take(w * h));
          const out = resampleArea(src2, w, h, ow, oh);
          const mean = (a: Float64Array) => a.reduce((s, v) => s + v, 0) / a.length;
          expect(mean(out)).toBeCloseTo(mean(src2), 9);
        },
      ),
      { numRuns: 200 },
    );
    expect(() => resampleArea(new Float64Array(5), 2, 2, 1, 1)).toThrow();
  });
});

describe('perceptualHash', () => {
  it('is invariant to gain and exact for nearest-upscaled copies', () => {
    fc.assert(
      fc.property(grayImage(32, 32), (img) => {
        const h = perceptualHash(img, 32, 32);
        // Doubling is exact in floating point, so every coefficient and the median double.
        expect(perceptualHash(img.map((v) => 2 * v), 32, 32)).toBe(h);
        const big = new Float64Array(64 * 64);
        for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) big[y * 64 + x] = img[(y >> 1) * 32 + (x >> 1)]!;
        expect(perceptualHash(big, 64, 64)).toBe(h);
        // Median threshold over 64 coefficients: 32 bits set unless coefficients tie at the median.
        expect(hammingDistance(h, 0n)).toBeLessThanOrEqual(32);
      }),
      { numRuns: 50 },
    );
  });

  it('separates different pictures and reports bit distances', () => {
    const ramp = Float64Array.from({ length: 32 * 32 }, (_, i) => i % 32);
    const vertical = Float64Array.from({ length: 32 * 32 }, (_, i) => Math.floor(i / 32));
    expect(hammingDistance(perceptualHash(ramp, 32, 32), perceptualHash(vertical, 32, 32))).toBeGreaterThan(0);
    expect(hammingDistance(0n, 0xffffffffffffffffn)).toBe(64);
    expect(hammingDistance(1n, 3n)).toBe(1);
    expect(hammingDistance(0x8000000000000001n, 1n)).toBe(1);
    fc.assert(
      fc.property(u64, u64, u64, (a, b, c) => {
        expect(hammingDistance(a, b)).toBe(hammingDistance(b, a));
        expect(hammingDistance(a, c)).toBeLessThanOrEqual(hammingDistance(a, b) + hammingDistance(b, c));
        expect(hashFromHex(hashToHex(a))).toBe(a);
        expect(hashToHex(a)).toHaveLength(16);
      }),
    );
  });
});

describe('globalImageStats', () => {
  it('computes hand-checkable values', () => {
    // 2×1 RGB: (10, 20, 30) and (30, 40, 50).
    const s = globalImageStats({ data: Uint8Array.from([10, 20, 30, 30, 40, 50]), width: 2, height: 1, channels: 3 });
    expect(s.mean_r).toBe(20);
    expect(s.mean_g).toBe(30);
    expect(s.mean_b).toBe(40);
    expect(s.std_r).toBe(10);
    expect(s.r_b_ratio).toBeCloseTo(21 / 41, 12);
    expect(s.brightness).toBeCloseTo(0.299 * 20 + 0.587 * 30 + 0.114 * 40, 4);
    expect(s.contrast).toBeCloseTo(10, 4);
    const flat = globalImageStats({ data: new Uint8Array(50 * 40).fill(77), width: 50, height: 40, channels: 1 });
    expect([flat.brightness, flat.contrast, flat.sharpness, flat.r_b_ratio]).toEqual([77, 0, 0, 1]);
    expect(statsToDescriptor(flat)).toHaveLength(GLOBAL_STATS_FEATURES.length);
  });

  it('the drift descriptor of a network input equals the stats of the 8-bit image it encodes', async () => {
    const pre = defaultPreprocessOptions({ imageSize: 64 });
    const { tensor } = await preprocessBatch([path.join(BOTTLE, 'test', 'contamination', '000.png')], pre);
    // Out-of-range values too: they clamp to 0 and 255.
    for (const t of [tensor, Float32Array.from(tensor, (v, i) => (i % 97 === 0 ? v * 40 : v))]) {
      const n = 64 * 64;
      const rgb = new Uint8Array(n * 3);
      for (let c = 0; c < 3; c++)
        for (let i = 0; i < n; i++) rgb[i * 3 + c] = Math.min(255, Math.max(0, Math.round((t[c * n + i]! * pre.std[c]! + pre.mean[c]!) * 255)));
      const expected = statsToDescriptor(globalImageStats({ data: rgb, width: 64, height: 64, channels: 3 }));
      expect(driftDescriptorFromTensor(t, 0, 64, pre)).toEqual(expected);
    }
  });

  it('measures sharpness as the Laplacian variance (checkerboard: 16)', () => {
    const board = Float64Array.from({ length: 64 }, (_, i) => ((i % 8) + Math.floor(i / 8)) % 2);
    expect(laplacianVariance(board, 8, 8)).toBeCloseTo(16, 12);
    expect(laplacianVariance(Float64Array.from({ length: 64 }, (_, i) => i % 8), 8, 8)).toBe(0); // linear ramp
  });
});

describe('drift model (synthetic)', () => {
  it('fits median/MAD on ln for positive features, linear otherwise, with floors', () => {
    const rows = [
      [100, -1],
      [110, 0],
      [90, 1],
      [100, 0],
      [105, 3],
    ];
    const m = fitDriftModel(rows, { names: ['brightness', 'offset'] });
    expect(m.transform).toEqual(['log', 'linear']);
    expect(m.center[0]).toBeCloseTo(Math.log(100), 12);
    expect(m.center[1]).toBe(0);
    // |ln(x/100)|: 0, 0.0953, 0.1054, 0, 0.0488 → MAD = 0.0488.
    expect(m.scale[0]).toBeCloseTo(1.482602218505602 * Math.log(1.05), 9);
    expect(m.scale[1]).toBeCloseTo(1.482602218505602 * 1, 9);
    const r = driftScore(m, [100, 5]);
    expect(r.z[0]).toBeCloseTo(0, 12);
    expect(r.z[1]).toBeCloseTo(5 / 1.482602218505602, 9);
    expect(r.flag).toBe(false);
    const bright = driftScore(m, [200, 0]);
    expect(bright.flag).toBe(true);
    expect(bright.reasons).toEqual([`brightness +100% vs training (z = +${(Math.log(2) / m.scale[0]!).toFixed(1)})`]);
    expect(driftScore(m, [100, -20]).reasons[0]).toMatch(/^offset -20\.000 vs training \(z = -13\.5\)$/);
    // A black frame: brightness 0 on a log feature gives a huge but finite z.
    const black = driftScore(m, [0, 0]);
    expect(black.flag).toBe(true);
    expect(Number.isFinite(black.score)).toBe(true);
  });

  it('does not alarm on small changes after a training set without variation', () => {
    const model = fitDriftModel([[50, 2], [50, 2], [50, 2]]);
    fc.assert(
      fc.property(fc.double({ min: -0.07, max: 0.07, noNaN: true }), (delta) => {
        expect(driftScore(model, [50 * (1 + delta), 2 * (1 - delta)]).flag).toBe(false);
      }),
    );
    expect(driftScore(model, [50 * 1.1, 2]).flag).toBe(true);
  });

  it('is invariant to the order of the training rows and round-trips through JSON', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.double({ min: 0.5, max: 100, noNaN: true }), { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.double({ min: 0.5, max: 100, noNaN: true }), { minLength: 3, maxLength: 3 }),
        (rows, probe) => {
          const m = fitDriftModel(rows);
          const reversed = fitDriftModel([...rows].reverse());
          expect(reversed.center).toEqual(m.center);
          expect(reversed.scale).toEqual(m.scale);
          const back = parseDriftModel(JSON.parse(JSON.stringify(m)));
          expect(back).toEqual(m);
          expect(driftScore(back, probe)).toEqual(driftScore(m, probe));
          // The per-feature median row scores 0 on every feature for odd row counts.
          if (rows.length % 2 === 1) {
            const medianRow = [0, 1, 2].map((j) => rows.map((r) => r[j]!).sort((a, b) => a - b)[rows.length >> 1]!);
            expect(driftScore(m, medianRow).score).toBeCloseTo(0, 9);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('rejects bad input with typed errors', async () => {
    await expectCode(() => fitDriftModel([]), 'TRAINING_SET');
    await expectCode(() => fitDriftModel([[1, 2], [1]]), 'INVALID_TENSOR');
    await expectCode(() => fitDriftModel([[1, NaN]]), 'INVALID_TENSOR');
    await expectCode(() => fitDriftModel([[1, 2]], { names: ['a'] }), 'OPTIONS');
    await expectCode(() => fitDriftModel([[1, 2]], { k: 0 }), 'OPTIONS');
    const m = fitDriftModel([[1, 2]]);
    await expectCode(() => driftScore(m, [1]), 'INVALID_TENSOR');
    await expectCode(() => driftScore(m, [1, Infinity]), 'INVALID_TENSOR');
    await expectCode(() => parseDriftModel({ ...m, scale: [1] }), 'MODEL_FORMAT');
    await expectCode(() => parseDriftModel({ ...m, kind: 'other' }), 'MODEL_FORMAT');
  });
});

describe('imageFingerprint', () => {
  it('describes a real image and tells file identity from pixel identity', async () => {
    const file = trainFiles[0]!;
    const fp = await imageFingerprint(file);
    expect(fp).toMatchObject({ file, width: 512, height: 512, channels: 3, space: 'srgb', format: 'png', hasAlpha: false });
    expect(fp.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(fp.std).toBeGreaterThan(20);
    expect(fp.entropy).toBeGreaterThan(4);
    expect(fp.entropy).toBeLessThanOrEqual(8);
    expect(fp.thumbnail).toHaveLength(128 * 128);
    expect(fp.stats.sharpness).toBeGreaterThan(0);
    const recompressed = await imageFingerprint(await sharp(file).png({ compressionLevel: 1 }).toBuffer());
    expect(recompressed.file).toBe('<buffer>');
    expect(recompressed.sha256).not.toBe(fp.sha256);
    expect(recompressed.pixelSha256).toBe(fp.pixelSha256);
    expect(recompressed.phash).toBe(fp.phash);
  });

  it('fails on empty or non-image input with typed errors', async () => {
    await expectCode(imageFingerprint(Buffer.alloc(0)), 'IMAGE_DECODE');
    await expectCode(imageFingerprint(Buffer.from('definitely not an image')), 'IMAGE_DECODE');
    await expectCode(imageFingerprint(path.join(TRAIN, 'missing.png')), 'IMAGE_DECODE');
  });
});

describe('checkTrainingSet on MVTec bottle', () => {
  let train: ImageFingerprint[];
  beforeAll(async () => {
    train = [];
    for (const f of trainFiles) train.push(await imageFingerprint(f));
  });

  it('accepts the 209 real good images; the only near-duplicate is one bottle shot twice (069/070)', () => {
    const report = checkTrainingSet(train);
    expect(report.rejected).toEqual([]);
    expect(report.nearDuplicates.map((p) => [path.basename(p.a), path.basename(p.b)])).toEqual([['069.png', '070.png']]);
    expect(report.warnings.map((w) => w.code)).toEqual(['NEAR_DUPLICATE_IMAGE']);
  });

  it('pHash alone cannot separate copies from distinct bottles here (why thumbnails are used)', async () => {
    let closestDistinct = 64;
    for (let i = 0; i < 60; i++) {
      for (let j = i + 1; j < 60; j++) closestDistinct = Math.min(closestDistinct, hammingDistance(train[i]!.phash, train[j]!.phash));
    }
    let farthestShift = 0;
    for (const i of [3, 6, 7]) {
      const copy = await imageFingerprint(await shifted(trainFiles[i]!, 1, 1));
      farthestShift = Math.max(farthestShift, hammingDistance(train[i]!.phash, copy.phash));
      expect(thumbnailDistance(train[i]!.thumbnail, copy.thumbnail)).toBeLessThan(1);
    }
    expect(closestDistinct).toBeLessThan(farthestShift);
  });

  it('rejects constant and duplicated images, reports copies and odd sizes or colour modes', async () => {
    const base = train.slice(100, 110);
    const src = (i: number) => trainFiles[100 + i]!;
    const extra = [
      { ...base[0]!, file: 'byte-copy.png' },
      await fingerprintAs('recompressed.png', await sharp(src(1)).png({ compressionLevel: 2 }).toBuffer()),
      await fingerprintAs('jpeg-q60.jpg', await sharp(src(2)).jpeg({ quality: 60 }).toBuffer()),
      await fingerprintAs('shift-1px.png', await shifted(src(3), 1, 1)),
      await fingerprintAs('shift-3px.png', await shifted(src(4), 3, 0)),
      await fingerprintAs('black.png', await sharp({ create: { width: 512, height: 512, channels: 3, background: '#000' } }).png().toBuffer()),
      await fingerprintAs(
        'nearly-flat.png',
        await sharp(Buffer.from(Uint8Array.from({ length: 64 * 64 }, (_, i) => 120 + (i % 3))), { raw: { width: 64, height: 64, channels: 1 } })
          .resize(512, 512, { kernel: 'nearest' })
          .toColourspace('srgb')
          .png()
          .toBuffer(),
      ),
      await fingerprintAs('gray.png', await sharp(trainFiles[150]!).toColourspace('b-w').png().toBuffer()),
      await fingerprintAs('small.png', await sharp(trainFiles[160]!).resize(256, 256).png().toBuffer()),
    ];
    const report = checkTrainingSet([...base, ...extra]);
    const byName = (f: string) => path.basename(f);
    expect(report.rejected.map((r) => [byName(r.file), r.code]).sort()).toEqual(
      [
        ['black.png', 'CONSTANT_IMAGE'],
        ['byte-copy.png', 'DUPLICATE_IMAGE'],
        ['nearly-flat.png', 'CONSTANT_IMAGE'],
        ['recompressed.png', 'DUPLICATE_IMAGE'],
      ].sort(),
    );
    expect(report.rejected.find((r) => r.file === 'recompressed.png')!.reason).toMatch(/pixel-identical copy of .*101\.png/);
    expect(report.nearDuplicates.map((p) => [byName(p.a), byName(p.b)]).sort()).toEqual(
      [
        ['102.png', 'jpeg-q60.jpg'],
        ['103.png', 'shift-1px.png'],
        ['104.png', 'shift-3px.png'],
      ].sort(),
    );
    const codes = report.warnings.map((w) => `${w.code} ${w.file ? byName(w.file) : ''}`).sort();
    expect(codes).toEqual(
      [
        'COLOUR_MODE_MISMATCH gray.png',
        'NEAR_DUPLICATE_IMAGE jpeg-q60.jpg',
        'NEAR_DUPLICATE_IMAGE shift-1px.png',
        'NEAR_DUPLICATE_IMAGE shift-3px.png',
        'SIZE_MISMATCH small.png',
      ].sort(),
    );
    // Kept duplicates become warnings when rejection is off; near-duplicate scan can be disabled.
    const lenient = checkTrainingSet([...base, ...extra], { rejectExactDuplicates: false, nearDuplicateDistance: 0 });
    expect(lenient.rejected.map((r) => r.code).sort()).toEqual(['CONSTANT_IMAGE', 'CONSTANT_IMAGE']);
    expect(lenient.warnings.filter((w) => w.code === 'DUPLICATE_IMAGE')).toHaveLength(2);
    expect(lenient.nearDuplicates).toEqual([]);
  });

  it('drift: no alarms on held-out good images, every shifted copy flagged', async () => {
    const fitRows = trainFiles
      .map((_, i) => i)
      .filter((i) => i % 5 === 0)
      .slice(0, 40)
      .map((i) => statsToDescriptor(train[i]!.stats));
    const model = fitDriftModel(fitRows, { names: GLOBAL_STATS_FEATURES });
    const describe = async (input: string | Buffer) => {
      const { data, info } = await sharp(input).raw().toBuffer({ resolveWithObject: true });
      return statsToDescriptor(globalImageStats({ data, width: info.width, height: info.height, channels: info.channels }));
    };
    const heldOut = train.filter((_, i) => i % 5 !== 0 || i >= 200).map((f) => driftScore(model, statsToDescriptor(f.stats)));
    const testGood = await Promise.all(testGoodFiles.map((f) => describe(f)));
    const rates: Record<string, number> = {
      'train/good held out': heldOut.filter((r) => r.flag).length / heldOut.length,
      'test/good': testGood.filter((d) => driftScore(model, d).flag).length / testGood.length,
    };
    expect(rates['train/good held out']).toBe(0);
    expect(rates['test/good']).toBe(0);
    const shifts: Record<string, (s: sharp.Sharp) => sharp.Sharp> = {
      'brightness x1.4': (s) => s.linear(1.4, 0),
      'brightness x0.6': (s) => s.linear(0.6, 0),
      'contrast x1.3': (s) => s.linear(1.3, -0.3 * 128),
      'contrast x0.7': (s) => s.linear(0.7, 0.3 * 128),
      'warmer (R x1.15, B x0.85)': (s) => s.linear([1.15, 1, 0.85], [0, 0, 0]),
      'blur sigma 3': (s) => s.blur(3),
    };
    const reasons: Record<string, string> = {};
    for (const [name, apply] of Object.entries(shifts)) {
      const results = await Promise.all(
        testGoodFiles.map(async (f) => driftScore(model, await describe(await apply(sharp(f)).png({ compressionLevel: 1 }).toBuffer()))),
      );
      rates[name] = results.filter((r) => r.flag).length / results.length;
      reasons[name] = results[0]!.reasons[0]!;
    }
    console.log('drift flag rates (bottle, fit on 40 train/good):', JSON.stringify(rates));
    for (const name of Object.keys(shifts)) expect(rates[name], name).toBe(1);
    expect(reasons['brightness x0.6']).toMatch(/-40% vs training/);
    expect(reasons['blur sigma 3']).toMatch(/^sharpness -9\d% vs training/);
    expect(reasons['warmer (R x1.15, B x0.85)']).toMatch(/^r_b_ratio \+2\d% vs training/);
  });
});
