/**
 * Special files wherever partscan reads a path: a FIFO would block the open until a writer came, a
 * device such as /dev/zero never ends, a symlink loop cannot be opened. Each is refused with the
 * reader's typed error before anything is read — an image as that image's failure (the rest of the run
 * is scored, exit 3), a list, weights or .onnx file as the command's error (exit 2) — and quickly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit } from '../src/model/fit.js';
import { listImages } from '../src/data/loaders.js';
import { runCli } from '../src/cli/cli.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

let tmp: string;
let modelFile: string;
let fifo: string;
let train: string[];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-special-'));
  train = await listImages(path.join(BOTTLE, 'train', 'good'));
  const m = await fit(train.slice(0, 6), { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 8, imageSize: 64, calibration: train.slice(6, 9), contaminationCheck: false });
  modelFile = path.join(tmp, 'm.partscan');
  await m.save(modelFile);
  await m.dispose();
  fifo = path.join(tmp, 'fifo');
  execFileSync('mkfifo', [fifo]);
}, 180_000);

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  const out: string[] = [];
  const err: string[] = [];
  const t0 = performance.now();
  const code = await runCli(['node', 'partscan', ...args], { out: (t) => void out.push(t), err: (t) => void err.push(t) });
  return { code, out: out.join(''), err: err.join(''), ms: performance.now() - t0 };
}

describe('special files are refused before they are read', () => {
  it('score: a FIFO, /dev/zero and a symlink loop among the images are failures of their own; the good image is scored (exit 3)', async () => {
    const loop = path.join(tmp, 'loop.png');
    await fs.symlink(loop, loop);
    const good = path.join(BOTTLE, 'test', 'good', '000.png');
    const r = await run(['score', modelFile, fifo, '/dev/zero', loop, good, '--out', path.join(tmp, 'run'), '--json']);
    expect(r.code, r.err).toBe(3);
    const summary = JSON.parse(r.out);
    expect(summary.failures.map((f: { file: string; code: string }) => [path.basename(f.file), f.code])).toEqual([
      ['fifo', 'IMAGE_DECODE'],
      ['zero', 'IMAGE_DECODE'],
      ['loop.png', 'IMAGE_DECODE'],
    ]);
    expect(summary.failures[0].message).toMatch(/FIFO/);
    expect(summary.failures[1].message).toMatch(/character device/);
    expect(summary.failures[2].message).toMatch(/loop of symbolic links/);
    expect(summary.results.map((x: { file: string }) => x.file)).toEqual([good]);
    expect(r.ms).toBeLessThan(30_000);
  }, 60_000);

  it.each([
    ['a FIFO as the training list', () => ['fit', fifo, '--out', path.join(tmp, 'a.partscan'), '--weights', REF_WEIGHTS], /Dataset .* is a FIFO \(named pipe\), not a folder/],
    ['a FIFO as the calibration list', () => ['fit', path.join(BOTTLE, 'train', 'good'), '--calibration', fifo, '--out', path.join(tmp, 'b.partscan'), '--weights', REF_WEIGHTS], /Dataset .* is a FIFO \(named pipe\), not a folder/],
    ['a FIFO as --weights', () => ['fit', path.join(BOTTLE, 'train', 'good'), '--out', path.join(tmp, 'c.partscan'), '--weights', fifo], /Weights file .* is a FIFO/],
    ['a FIFO as --backbone x.onnx', () => ['fit', path.join(BOTTLE, 'train', 'good'), '--out', path.join(tmp, 'd.partscan'), '--backbone', `${fifo}.onnx`, '--layers', 'x'], /ONNX backbone .* is a FIFO/],
    ['a FIFO as the model', () => ['info', fifo], /is a FIFO \(named pipe\), not a model file/],
    ['/dev/zero as the model', () => ['score', '/dev/zero', path.join(BOTTLE, 'test', 'good', '000.png'), '--out', path.join(tmp, 'e')], /character device/],
  ])('%s: exit 2 with a typed one-line error, at once', async (_name, args, message) => {
    if (_name.includes('.onnx')) execFileSync('mkfifo', [`${fifo}.onnx`]);
    const r = await run((args as () => string[])());
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/^partscan: /);
    expect(r.err).toMatch(message as RegExp);
    expect(r.ms).toBeLessThan(20_000);
  }, 60_000);
});
