import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPartscanError, type PartscanError } from '../src/errors.js';
import { applyColormap, colormapRgb } from '../src/export/colormap.js';
import {
  DEFAULT_CONTOUR_COLOR,
  decodeHeatmapFloat,
  encodeHeatmapFloat,
  readHeatmapFloat,
  renderOverlay,
  writeHeatmap16Png,
  writeHeatmapFloat,
  writeImagePng,
  writeMaskPng,
  writeOverlayPng,
  type RgbImage,
} from '../src/export/images.js';
import {
  csvField,
  readRunManifest,
  resultsToCsv,
  writeRunResults,
  type ImageResult,
  type RunManifest,
} from '../src/export/results.js';
import { innerBoundary } from '../src/postprocess/morphology.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'partscan-export-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** All files under `root`, relative, recursively. */
async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)).map((f) => path.join(e.name, f)));
    else out.push(e.name);
  }
  return out.sort();
}

async function rejection(p: Promise<unknown>): Promise<PartscanError> {
  try {
    await p;
  } catch (e) {
    return e as PartscanError;
  }
  throw new Error('expected a rejection');
}

/** Minimal RFC 4180 parser (quoted fields, doubled quotes, CRLF). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  return rows;
}

function gradientImage(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) data.set([(i * 7) % 256, (i * 13) % 256, 128], i * 3);
  return { data, width: w, height: h };
}

describe('colormaps', () => {
  it('turbo runs dark blue → green → red, near the reference LUT ends', () => {
    const [r0, g0, b0] = colormapRgb(0, 'turbo');
    // Reference LUT: turbo(0) = (0.18995, 0.07176, 0.23217), turbo(1) = (0.4796, 0.01583, 0.01055).
    expect(Math.abs(r0 - 48)).toBeLessThan(0.14 * 255);
    expect(Math.abs(g0 - 18)).toBeLessThan(0.14 * 255);
    expect(Math.abs(b0 - 59)).toBeLessThan(0.14 * 255);
    const [r1, g1, b1] = colormapRgb(1, 'turbo');
    expect(Math.abs(r1 - 122)).toBeLessThan(0.1 * 255);
    expect(g1).toBeLessThan(20);
    expect(b1).toBeLessThan(10);
    const [rm, gm, bm] = colormapRgb(0.5, 'turbo');
    expect(gm).toBeGreaterThan(rm);
    expect(gm).toBeGreaterThan(bm);
    expect(colormapRgb(0.15, 'turbo')[2]).toBeGreaterThan(200); // blue part
  });

  it('inferno matches matplotlib at the ends and the middle, with rising lightness', () => {
    // matplotlib inferno: 0 → (0.0015, 0.0005, 0.0139), 0.5 → (0.7357, 0.2159, 0.3302), 1 → (0.9884, 0.9984, 0.6449)
    const close = (a: number[], b: number[]) => a.forEach((v, i) => expect(Math.abs(v - b[i]! * 255)).toBeLessThan(5));
    close(colormapRgb(0, 'inferno'), [0.0015, 0.0005, 0.0139]);
    close(colormapRgb(0.5, 'inferno'), [0.7357, 0.2159, 0.3302]);
    close(colormapRgb(1, 'inferno'), [0.9884, 0.9984, 0.6449]);
    let prev = -1;
    for (let i = 0; i <= 200; i++) {
      const [r, g, b] = colormapRgb(i / 200, 'inferno');
      const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
      expect(lum).toBeGreaterThanOrEqual(prev - 0.5);
      prev = lum;
    }
  });

  it('applyColormap clamps, maps NaN to the low end and agrees with colormapRgb', () => {
    const rgb = applyColormap(Float32Array.from([-1, 0, 0.3, 1, 2, Number.NaN]), 'turbo');
    expect(rgb.length).toBe(18);
    expect(Array.from(rgb.subarray(0, 3))).toEqual(colormapRgb(0));
    expect(Array.from(rgb.subarray(9, 12))).toEqual(colormapRgb(1));
    expect(Array.from(rgb.subarray(12, 15))).toEqual(colormapRgb(1));
    expect(Array.from(rgb.subarray(15, 18))).toEqual(colormapRgb(0));
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom('turbo' as const, 'inferno' as const), (t, name) => {
        const lutColour = applyColormap([t], name);
        const exact = colormapRgb(t, name);
        for (let c = 0; c < 3; c++) expect(Math.abs(lutColour[c]! - exact[c]!)).toBeLessThanOrEqual(2);
      }),
    );
    expect(() => applyColormap([0], 'jet' as never)).toThrow(/Unknown colormap 'jet'/);
  });
});

describe('image exports', () => {
  const w = 40;
  const h = 30;
  const img = gradientImage(w, h);
  const norm = new Float32Array(w * h).map((_, i) => (i % w) / (w - 1));
  const mask = new Uint8Array(w * h);
  for (let y = 10; y < 20; y++) for (let x = 20; x < 32; x++) mask[y * w + x] = 1;

  it('renderOverlay blends heat over the photo with alpha and outlines the mask', () => {
    const heat = applyColormap(norm);
    const photoOnly = renderOverlay(img, norm, undefined, { alpha: 0 });
    expect(Array.from(photoOnly)).toEqual(Array.from(img.data));
    const heatOnly = renderOverlay(img, norm, undefined, { alpha: 1 });
    expect(Array.from(heatOnly)).toEqual(Array.from(heat));
    const half = renderOverlay(img, norm, mask, { alpha: 0.5, contourWidth: 1 });
    const edge = innerBoundary(mask, w, h, 1);
    for (let i = 0; i < w * h; i++) {
      const px = Array.from(half.subarray(i * 3, i * 3 + 3));
      if (edge[i]) expect(px).toEqual(DEFAULT_CONTOUR_COLOR);
      else for (let c = 0; c < 3; c++) expect(px[c]).toBe(Math.round(0.5 * img.data[i * 3 + c]! + 0.5 * heat[i * 3 + c]!));
    }
    // Grey input is replicated into RGB.
    const grey = renderOverlay({ data: new Uint8Array(w * h).fill(90), width: w, height: h, channels: 1 }, norm, undefined, { alpha: 0 });
    expect(grey[0]).toBe(90);
    expect(grey[2]).toBe(90);
  });

  it('refuses maps and masks of the wrong size, and bad alpha', () => {
    expect(() => renderOverlay(img, new Float32Array(10))).toThrow(/holds 10 values/);
    const e = (() => {
      try {
        renderOverlay(img, norm, new Uint8Array(5));
      } catch (err) {
        return err as PartscanError;
      }
    })();
    expect(isPartscanError(e, 'MASK')).toBe(true);
    expect(e!.message).toMatch(/5 pixels but the image is 40×30/);
    expect(() => renderOverlay(img, norm, undefined, { alpha: 1.5 })).toThrow(/alpha/);
  });

  it('writes an overlay PNG that decodes to exactly the rendered pixels', async () => {
    const file = path.join(dir, 'img', 'overlay.png');
    await writeOverlayPng(file, img, norm, mask, { colormap: 'inferno' });
    const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([w, h, 3]);
    expect(Buffer.compare(data, Buffer.from(renderOverlay(img, norm, mask, { colormap: 'inferno' })))).toBe(0);
  });

  it('writes a 16-bit grey heatmap PNG with the full value range', async () => {
    const file = path.join(dir, 'img', 'heat16.png');
    const map = Float32Array.from([0, 0.5, 1, -0.2, 1.3, Number.NaN, 1 / 65535, 0.123456]);
    await writeHeatmap16Png(file, map, 4, 2);
    const meta = await sharp(file).metadata();
    expect(meta.depth).toBe('ushort');
    expect(meta.channels).toBe(1);
    const { data } = await sharp(file).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const u16 = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    expect(Array.from(u16)).toEqual([0, 32768, 65535, 0, 65535, 0, 1, Math.round(Math.fround(0.123456) * 65535)]);
  });

  it('writes a 0/255 grey mask PNG', async () => {
    const file = path.join(dir, 'img', 'mask.png');
    await writeMaskPng(file, mask, w, h);
    const meta = await sharp(file).metadata();
    expect([meta.channels, meta.depth, meta.space]).toEqual([1, 'uchar', 'b-w']);
    const { data, info } = await sharp(file).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect(info.channels).toBe(1);
    expect(Array.from(data)).toEqual(Array.from(mask, (m) => m * 255));
  });

  it('writes images (RGB and grey) losslessly', async () => {
    const file = path.join(dir, 'img', 'orig.png');
    await writeImagePng(file, img);
    const { data } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    expect(Buffer.compare(data, Buffer.from(img.data))).toBe(0);
  });

  it('float heatmaps are safetensors files that round-trip exactly', async () => {
    const map = Float32Array.from([0.25, -3.5, 1e6, 42, Number.NaN, 7]);
    const bytes = encodeHeatmapFloat(map, 3, 2, { threshold: '0.5' });
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLength) % 8).toBe(0);
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLength)).toString());
    expect(header).toEqual({ heatmap: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, __metadata__: { threshold: '0.5' } });
    expect(bytes.length).toBe(8 + headerLength + 24);
    const file = path.join(dir, 'img', 'heat.safetensors');
    await writeHeatmapFloat(file, map, 3, 2, { threshold: '0.5' });
    const back = await readHeatmapFloat(file);
    expect([back.width, back.height]).toEqual([3, 2]);
    expect(Array.from(back.data)).toEqual(Array.from(map));
    expect(back.metadata).toEqual({ threshold: '0.5' });
    expect(() => decodeHeatmapFloat(new Uint8Array(4))).toThrow(/not a partscan float heatmap/);
  });
});

const thresholds = {
  image: 12.5,
  pixel: 11,
  method: { image: 'f1-adaptive' as const, pixel: 'good-sigma' as const },
  imageStats: { min: 5, max: 30 },
  pixelStats: { min: 0, max: 31 },
  band: { low: 0.45, high: 0.55 },
};

function result(file: string, over: Partial<ImageResult> = {}): ImageResult {
  return {
    file,
    imageScore: 20,
    normalizedScore: 0.8,
    verdict: 'NG',
    regions: [
      { id: 1, areaPx: 12, areaPercent: 1.2, bbox: { x: 3, y: 4, width: 5, height: 6 }, centroid: { x: 5, y: 6 }, peakScore: 0.9, meanScore: 0.7 },
      { id: 2, areaPx: 2, areaPercent: 0.2, bbox: { x: 9, y: 9, width: 1, height: 2 }, centroid: { x: 9, y: 9.5 }, peakScore: 0.6, meanScore: 0.55 },
    ],
    width: 100,
    height: 10,
    ...over,
  };
}

function manifest(results: ImageResult[]): RunManifest {
  return { createdBy: 'partscan', version: '0.1.0', createdAt: '2025-01-01T00:00:00Z', model: { path: 'model.psm', thresholds }, results };
}

describe('results.json / results.csv', () => {
  it('quotes CSV fields per RFC 4180 and defuses spreadsheet formulas', () => {
    expect(csvField('plain.png')).toBe('plain.png');
    expect(csvField('a,b.png')).toBe('"a,b.png"');
    expect(csvField('say "hi".png')).toBe('"say ""hi"".png"');
    expect(csvField('line\nbreak')).toBe('"line\nbreak"');
    expect(csvField('=cmd|calc')).toBe("'=cmd|calc");
    expect(csvField('-1,2', false)).toBe('"-1,2"');
  });

  it('writes a CSV that parses back to the results, one row per image', () => {
    const tricky = 'dir/we,ird "name"\n.png';
    const csv = resultsToCsv([
      result(tricky, { drift: { flag: true, score: 3.5 }, label: 'broken_large' }),
      result('ok.png', { verdict: 'OK', normalizedScore: 0.1, imageScore: 7, mapMax: 12.5, regions: [] }),
    ]);
    expect(csv.endsWith('\r\n')).toBe(true);
    const rows = parseCsv(csv);
    expect(rows[0]).toEqual(['file', 'score', 'normalized_score', 'verdict', 'n_regions', 'regions', 'drift', 'drift_score', 'label', 'map_max']);
    expect(rows[1]).toEqual([tricky, '20', '0.8', 'NG', '2', '3,4,5,6;9,9,1,2', 'true', '3.5', 'broken_large', '']);
    expect(rows[2]).toEqual(['ok.png', '7', '0.1', 'OK', '0', '', '', '', '', '12.5']);
    expect(rows).toHaveLength(3);
  });

  it('writes both files (JSON validated) and reads the manifest back', async () => {
    const runDir = path.join(dir, 'run-ok');
    const m = manifest([result('a.png'), result('b.png', { verdict: 'UNCERTAIN', normalizedScore: 0.5 })]);
    const { json, csv } = await writeRunResults(runDir, m);
    expect(path.basename(json)).toBe('results.json');
    expect(parseCsv(await readFile(csv, 'utf8'))).toHaveLength(3);
    expect(await readRunManifest(runDir)).toEqual(m);
    expect(await listFiles(runDir)).toEqual(['results.csv', 'results.json']);
  });

  it('refuses to write NaN scores (JSON would silently turn them into null)', async () => {
    const runDir = path.join(dir, 'run-nan');
    const err = await rejection(writeRunResults(runDir, manifest([result('a.png', { imageScore: Number.NaN })])));
    expect(isPartscanError(err, 'OUTPUT')).toBe(true);
    expect(err.message).toMatch(/results\.0\.imageScore/);
    expect(existsSync(runDir)).toBe(false);
  });

  it('reports a missing or foreign manifest as OPTIONS', async () => {
    expect((await rejection(readRunManifest(path.join(dir, 'nowhere')))).code).toBe('OPTIONS');
    const foreign = path.join(dir, 'foreign');
    await mkdir(foreign);
    await writeFile(path.join(foreign, 'results.json'), JSON.stringify({ hello: 1 }));
    const err = await rejection(readRunManifest(foreign));
    expect(err.code).toBe('OPTIONS');
    expect(err.message).toMatch(/not a partscan run manifest/);
  });
});

describe('bad output locations', () => {
  it('an output "directory" that is a file → OUTPUT', async () => {
    const file = path.join(dir, 'i-am-a-file');
    await writeFile(file, 'x');
    const err = await rejection(writeRunResults(file, manifest([result('a.png')])));
    expect(isPartscanError(err, 'OUTPUT')).toBe(true);
    expect(err.message).toMatch(/is a file/);
    const nested = await rejection(writeMaskPng(path.join(file, 'sub', 'mask.png'), new Uint8Array(4), 2, 2));
    expect(isPartscanError(nested, 'OUTPUT')).toBe(true);
    expect(nested.message).toMatch(/a path component is a file/);
  });

  // Root ignores permission bits, so for root use sysfs, which refuses new files even to root.
  const isRoot = process.getuid?.() === 0;
  const canTestReadOnly = !isRoot || existsSync('/sys/kernel');
  it.skipIf(!canTestReadOnly)('a read-only location → OUTPUT (chmod 0555, or sysfs when running as root)', async () => {
    let target: string;
    if (isRoot) {
      target = '/sys';
    } else {
      target = path.join(dir, 'read-only');
      await mkdir(target);
      const { chmod } = await import('node:fs/promises');
      await chmod(target, 0o555);
    }
    const err = await rejection(writeMaskPng(path.join(target, 'partscan-mask.png'), new Uint8Array(4), 2, 2));
    expect(isPartscanError(err, 'OUTPUT')).toBe(true);
    expect(err.message).toMatch(/not writable/);
    expect(existsSync(path.join(target, 'partscan-mask.png'))).toBe(false);
    const sub = await rejection(writeRunResults(path.join(target, 'partscan-run'), manifest([result('a.png')])));
    expect(isPartscanError(sub, 'OUTPUT')).toBe(true);
  });
});

describe('interrupted runs leave complete files only', () => {
  it('a write failing mid-run leaves earlier files complete and no temp files', async () => {
    const runDir = path.join(dir, 'run-interrupted');
    const w = 64;
    const h = 48;
    const img = gradientImage(w, h);
    const norm = new Float32Array(w * h).map((_, i) => (i % 97) / 96);
    // Sabotage the third output: a directory where its file should go makes the final rename fail
    // after the temp file has been completely written.
    await mkdir(path.join(runDir, 'overlays', 'c.png'), { recursive: true });
    const written: string[] = [];
    const err = await rejection(
      (async () => {
        for (const name of ['a', 'b', 'c', 'd']) {
          await writeOverlayPng(path.join(runDir, 'overlays', `${name}.png`), img, norm);
          written.push(name);
        }
      })(),
    );
    expect(isPartscanError(err, 'OUTPUT')).toBe(true);
    expect(written).toEqual(['a', 'b']);
    const files = await listFiles(runDir);
    expect(files).toEqual(['overlays/a.png', 'overlays/b.png']);
    expect(files.some((f) => f.endsWith('.tmp'))).toBe(false);
    for (const f of files) {
      const { info } = await sharp(path.join(runDir, f)).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([w, h]);
    }
    expect((await stat(path.join(runDir, 'overlays', 'c.png'))).isDirectory()).toBe(true);
  });

  it('results.json is not written when results.csv fails, and nothing partial remains', async () => {
    const runDir = path.join(dir, 'run-csv-fails');
    await mkdir(path.join(runDir, 'results.csv'), { recursive: true });
    const err = await rejection(writeRunResults(runDir, manifest([result('a.png')])));
    expect(isPartscanError(err, 'OUTPUT')).toBe(true);
    expect(err.file).toBe(path.join(runDir, 'results.csv'));
    expect(await readdir(runDir)).toEqual(['results.csv']); // only the sabotaging directory
    expect(existsSync(path.join(runDir, 'results.json'))).toBe(false);
  });
});
