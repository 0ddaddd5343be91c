/**
 * Hostile model files (src/model/model-file-limits.ts, docs/GUARDS.md "Hostile model files"): each is
 * refused with a typed error, quickly and without reading what it describes, or — for sections partscan
 * does not know — loaded without reading them. Files are hand-made with valid checksums, the big ones
 * sparse (a few KB on disk). Model: bottle, ResNet50 (reference weights) layer1+layer2, 64 px, d 8,
 * backbone embedded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { isPartscanError } from '../src/errors.js';
import { readModelFile, writeModelFile, type SectionData } from '../src/model/model-file.js';
import { checkReadBudget, MODEL_FILE_LIMITS } from '../src/model/model-file-limits.js';
import { listImages } from '../src/data/loaders.js';
import { runCli } from '../src/cli/cli.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';
import { splitModelFile, writeRawModel, type PhantomSection } from './helpers/model-files.js';

const image = path.join(BOTTLE, 'test', 'broken_large', '000.png');
let tmp: string;
let header: Record<string, unknown>;
let sections: { name: string; data: SectionData; shape: number[] }[];
let reference: number;
let n = 0;
const GiB = 2 ** 30;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-limits-'));
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  const model = await fit(all.slice(0, 8), {
    backbone: { backbone: 'resnet50', weights: REF_WEIGHTS, layers: ['layer1', 'layer2'] },
    channels: 8,
    imageSize: 64,
    seed: 1,
    calibration: all.slice(8, 11),
    contaminationCheck: false,
  });
  const file = path.join(tmp, 'valid.partscan');
  await model.save(file);
  reference = (await model.score(image)).imageScore;
  await model.dispose();
  ({ header, sections } = await splitModelFile(file));
}, 180_000);

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

const clone = <T>(v: T): T => structuredClone(v);
const next = () => path.join(tmp, `m${n++}.partscan`);
const endOfData = () => sections.reduce((a, s) => a + s.data.byteLength + 64, 64 * 1024);

/** Loads and scores `file`: the score, or the error, and how long it took. */
async function attempt(file: string): Promise<{ error?: unknown; score?: number; ms: number }> {
  const t0 = performance.now();
  let model: Model | undefined;
  try {
    model = await Model.load(file);
    return { score: (await model.score(image)).imageScore, ms: performance.now() - t0 };
  } catch (error) {
    return { error, ms: performance.now() - t0 };
  } finally {
    await model?.dispose();
  }
}

function expectRefused(r: { error?: unknown; ms: number }, code: string, message: RegExp): void {
  expect(r.error, 'the file was accepted').toBeDefined();
  expect(isPartscanError(r.error, code as never), String((r.error as Error)?.stack ?? r.error)).toBe(true);
  expect((r.error as Error).message).toMatch(message);
  expect(r.ms, 'refused, but slowly').toBeLessThan(10_000);
}

describe('hostile model files', () => {
  it('two unknown 4 GiB sections are skipped unread: the model loads and scores in seconds, RSS stays put', async () => {
    const file = next();
    const base = Math.ceil(endOfData() / 64) * 64;
    const phantoms: PhantomSection[] = [
      { name: 'future.a', dtype: 'uint8', shape: [4 * GiB], offset: base, byteLength: 4 * GiB },
      { name: 'future.b', dtype: 'uint8', shape: [4 * GiB], offset: base + 4 * GiB, byteLength: 4 * GiB },
    ];
    await writeRawModel(file, header, sections, { phantoms });
    const rss0 = process.memoryUsage().rss;
    const r = await attempt(file);
    expect(r.error, String(r.error)).toBeUndefined();
    expect(r.score).toBeCloseTo(reference, 5);
    expect(r.ms).toBeLessThan(10_000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(1 * GiB);
    // info lists them, without reading them.
    const out: string[] = [];
    expect(await runCli(['node', 'partscan', 'info', file, '--json'], { out: (t) => void out.push(t), err: () => undefined })).toBe(0);
    expect(JSON.parse(out.join('')).sections.map((s: { name: string }) => s.name)).toContain('future.b');
  }, 60_000);

  it('a header length of 4 GiB is refused before it is allocated', async () => {
    const file = next();
    await writeRawModel(file, header, sections, { headerLength: 2 ** 32 - 1, size: 2 ** 32 + 4096 });
    expectRefused(await attempt(file), 'MODEL_FORMAT', /header claims \d+ bytes/);
  });

  it('a header nested 300 000 deep is refused before JSON.parse (load and info --json)', async () => {
    const file = next();
    const deep = '['.repeat(300_000) + ']'.repeat(300_000);
    const text = JSON.stringify({ ...header, sections: [] }).replace(/^\{/, `{"deep":${deep},`);
    await writeRawModel(file, header, [], { headerText: text });
    expectRefused(await attempt(file), 'MODEL_FORMAT', new RegExp(`nests deeper than ${MODEL_FILE_LIMITS.jsonDepth}`));
    const err: string[] = [];
    expect(await runCli(['node', 'partscan', 'info', file, '--json'], { out: () => undefined, err: (t) => void err.push(t) })).toBe(2);
    expect(err.join('')).toMatch(/^partscan: .*nests deeper/);
  });

  it('sections whose header-given shapes need more memory than the machine has are refused before reading', async () => {
    // d = 4096 (the cap), one 4096-channel layer, a g×g grid just big enough: all shapes agree with the header.
    const d = 4096;
    const perPosition = ((d * (d + 1)) / 2) * 4;
    const g = Math.ceil(Math.sqrt((1.5 * os.totalmem()) / perPosition));
    expect(g * 4, 'this machine has too much memory for the test to forge a header').toBeLessThanOrEqual(2048);
    const h = clone(header) as Record<string, Record<string, unknown>>;
    Object.assign(h.backbone!, { layers: ['layer1'], strides: [4], channels: [d], embedded: false });
    Object.assign(h.embedding!, { channels: d, totalChannels: d, gridH: g, gridW: g });
    Object.assign(h.preprocess!, { imageSize: g * 4 });
    delete h.preprocess!.cropSize;
    delete h.roi;
    const P = g * g;
    let offset = 1 << 20;
    const phantom = (name: string, dtype: PhantomSection['dtype'], shape: number[], bytes: number): PhantomSection => {
      const p = { name, dtype, shape, offset, byteLength: bytes };
      offset = Math.ceil((offset + bytes) / 64) * 64;
      return p;
    };
    const phantoms = [phantom('channels', 'int32', [d], d * 4), phantom('mean', 'float64', [P, d], P * d * 8), phantom('invCov', 'float32', [P, (d * (d + 1)) / 2], P * perPosition)];
    const file = next();
    await writeRawModel(file, h, [], { phantoms });
    // The per-section element cap comes first on any machine; the memory budget where a section passes it.
    expectRefused(await attempt(file), 'MODEL_FORMAT', /GiB, more than this machine's|holds more than \d+ elements/);
  }, 60_000);

  it('the memory budget counts only the sections a load reads', () => {
    const table = [
      { name: 'mean', offset: 0, byteLength: 3 * GiB, shape: [3 * GiB] },
      { name: 'm2', offset: 0, byteLength: 3 * GiB, shape: [3 * GiB] },
    ];
    expect(() => checkReadBudget(table, () => true, 'f', 4 * GiB)).toThrow(/6\.0 GiB, more than this machine's 4\.0 GiB/);
    expect(() => checkReadBudget(table, (name) => name !== 'm2', 'f', 4 * GiB)).not.toThrow();
  });

  it('a section of more than 2^32 elements is refused before it is allocated', async () => {
    const file = next();
    const base = Math.ceil(endOfData() / 64) * 64;
    const secs = sections.filter((s) => s.name !== 'backbone.onnx');
    await writeRawModel(file, header, secs, { phantoms: [{ name: 'backbone.onnx', dtype: 'uint8', shape: [2 ** 32 + 64], offset: base, byteLength: 2 ** 32 + 64 }] });
    expectRefused(await attempt(file), 'MODEL_FORMAT', /more than 4294967296 elements/);
  });

  it('overlapping sections, a section inside the header and 65 sections are refused', async () => {
    const mean = () => sections.find((s) => s.name === 'mean')!;
    let file = next();
    await writeRawModel(file, header, sections);
    const real = (await readModelFile(file, { sections: () => false })).header.sections.find((s) => s.name === 'mean')!;
    file = next();
    // Into the middle of `mean`: the phantom's own table entry lengthens the header, which moves the
    // real sections by up to a few hundred bytes.
    const middle = real.offset + Math.floor(real.byteLength / 128) * 64;
    await writeRawModel(file, header, sections, { phantoms: [{ name: 'over', dtype: 'uint8', shape: [64], offset: middle, byteLength: 64 }] });
    expectRefused(await attempt(file), 'MODEL_FORMAT', /overlap/);
    file = next();
    await writeRawModel(file, header, sections, { phantoms: [{ name: 'inside', dtype: 'uint8', shape: [8], offset: 8, byteLength: 8 }] });
    expectRefused(await attempt(file), 'MODEL_FORMAT', /inside the header/);
    file = next();
    const many = Array.from({ length: 65 - sections.length }, (_, i) => ({ ...mean(), name: `extra${i}` }));
    await writeModelFile(file, header, [...sections, ...many]);
    expectRefused(await attempt(file), 'MODEL_FORMAT', /65 entries/);
  });

  it('a swapped embedded backbone graph (section checksum made to match) is refused', async () => {
    const secs = sections.map((s) => {
      if (s.name !== 'backbone.onnx') return s;
      const g = Uint8Array.from(s.data as Uint8Array);
      g[g.length - 100] ^= 0xff;
      return { ...s, data: g };
    });
    const file = next();
    await writeModelFile(file, header, secs);
    expectRefused(await attempt(file), 'MODEL_CHECKSUM', /embedded backbone graph has sha256/);
    // A file older than format 1.4 records no graph hash: it loads as before.
    const old = clone(header) as Record<string, Record<string, unknown>>;
    delete old.backbone!.graphSha256;
    const file2 = next();
    await writeModelFile(file2, old, sections);
    expect((await attempt(file2)).score).toBeCloseTo(reference, 5);
  });

  it('terminal escape codes in header strings are printed as escapes by info', async () => {
    const h = clone(header) as Record<string, Record<string, unknown>>;
    h.backbone!.name = 'resnet50\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e';
    h.backbone!.embedded = false;
    delete h.backbone!.graphSha256;
    const file = next();
    await writeModelFile(file, h, sections.filter((s) => s.name !== 'backbone.onnx'));
    for (const json of [false, true]) {
      const out: string[] = [];
      const err: string[] = [];
      await runCli(['node', 'partscan', 'info', file, ...(json ? ['--json'] : [])], { out: (t) => void out.push(t), err: (t) => void err.push(t) });
      const text = out.join('') + err.join('');
      expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/);
      expect(text).toContain('\\u001b]0;pwned');
      if (json) expect(JSON.parse(out.join('')).header.backbone.name).toBe(h.backbone!.name);
    }
  });

  it('tiling headers that would cut an image into too many tiles give a typed error, fast (64/60 and 16/15)', async () => {
    for (const tiling of [{ tile: 64, overlap: 60 }, { tile: 16, overlap: 15 }]) {
      const h = clone(header);
      h.tiling = tiling;
      delete h.drift;
      const file = next();
      await writeModelFile(file, h, sections);
      expectRefused(await attempt(file), 'IMAGE_TOO_LARGE', /tiles of \d+ px at overlap/);
    }
  });

  it('/dev/zero and a FIFO as the model file are refused without reading or blocking', async () => {
    expectRefused(await attempt('/dev/zero'), 'MODEL_FORMAT', /character device/);
    const fifo = path.join(tmp, 'fifo.partscan');
    execFileSync('mkfifo', [fifo]);
    expectRefused(await attempt(fifo), 'MODEL_FORMAT', /FIFO/);
  });
});
