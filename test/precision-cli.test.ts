/**
 * `partscan fit --precision int8` end to end as a child process on a tiny bottle subset (10 images,
 * 128 px, d 30, fixture weights): the model records its precision, embeds the quantized graph, and
 * `score` runs with that graph; invalid uses are refused with an actionable message.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeModel } from '../src/onnx/graph.js';
import { readModelFile } from '../src/model/model-file.js';
import { Model } from '../src/model/model.js';
import { BOTTLE, REF_WEIGHTS, REPO } from './helpers/shared.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], timeoutMs = 180_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts'), ...args],
      { cwd: REPO, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, PARTSCAN_NO_PROGRESS: '1', PARTSCAN_DEBUG: '' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let tmp: string;
let train: string;
const images = [path.join(BOTTLE, 'test', 'good', '000.png'), path.join(BOTTLE, 'test', 'broken_large', '000.png')];
const fitArgs = (out: string, ...extra: string[]): string[] => [
  'fit', train, '--out', out, '--backbone', 'resnet50', '--weights', REF_WEIGHTS,
  '--image-size', '128', '--channels', '30', '--calibration-split', '0.2', '--json', ...extra,
];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-precision-'));
  train = path.join(tmp, 'train');
  await fs.mkdir(train);
  const names = (await fs.readdir(path.join(BOTTLE, 'train', 'good'))).filter((n) => n.endsWith('.png')).sort().slice(0, 10);
  for (const n of names) await fs.symlink(path.join(BOTTLE, 'train', 'good', n), path.join(train, n));
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function scores(model: string, out: string): Promise<number[]> {
  const r = await cli(['score', model, ...images, '--out', out, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).results.map((x: { imageScore: number }) => x.imageScore);
}

describe('fit --precision', () => {
  it('int8: recorded in the header, quantized graph embedded and used by score', async () => {
    const int8 = path.join(tmp, 'int8.partscan');
    const fp32 = path.join(tmp, 'fp32.partscan');
    const [a, b] = await Promise.all([cli(fitArgs(int8, '--precision', 'int8')), cli(fitArgs(fp32))]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(a.stdout).precision).toBe('int8');
    expect(JSON.parse(b.stdout).precision).toBe('fp32');

    const file = await readModelFile(int8);
    const backbone = file.header.backbone as { precision?: string; name: string };
    expect(backbone).toMatchObject({ name: 'resnet50', precision: 'int8' });
    const ops = decodeModel(file.sections.get('backbone.onnx') as Uint8Array).graph!.node!.map((n) => n.opType);
    expect(ops).toContain('QuantizeLinear');
    expect(ops.filter((o) => o === 'Conv').length).toBe(43);
    expect((await cli(['info', int8])).stdout).toMatch(/resnet50 \(int8, layers/);
    // A float model's header is unchanged: no precision field.
    const plain = await readModelFile(fp32, { sections: () => false });
    expect((plain.header.backbone as Record<string, unknown>).precision).toBeUndefined();

    const [s8, s32] = await Promise.all([scores(int8, path.join(tmp, 'run8')), scores(fp32, path.join(tmp, 'run32'))]);
    // Scored with the int8 graph: finite scores, other than the float model's.
    for (let i = 0; i < 2; i++) {
      expect(Number.isFinite(s8[i]) && s8[i]! > 0).toBe(true);
      expect(s8[i]).not.toBe(s32[i]);
    }
    // A loaded int8 model runs the embedded quantized graph.
    const loaded = await Model.load(int8);
    try {
      const bb = await loaded.getBackbone();
      expect(bb.identity.precision).toBe('int8');
      expect(decodeModel(bb.onnx).graph!.node!.some((n) => n.opType === 'QuantizeLinear')).toBe(true);
    } finally {
      await loaded.dispose();
    }
  }, 300_000);

  it('fit --resume keeps an int8 model int8, and refuses a different --precision', async () => {
    const base = path.join(tmp, 'int8.partscan');
    const more = path.join(tmp, 'more');
    await fs.mkdir(more, { recursive: true });
    const names = (await fs.readdir(path.join(BOTTLE, 'train', 'good'))).filter((n) => n.endsWith('.png')).sort().slice(20, 23);
    for (const n of names) await fs.symlink(path.join(BOTTLE, 'train', 'good', n), path.join(more, n));
    const resumed = path.join(tmp, 'resumed.partscan');
    const ok = await cli(['fit', more, '--resume', base, '--out', resumed, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ precision: 'int8', images: 11 });
    const bad = await cli(['fit', more, '--resume', base, '--out', path.join(tmp, 'r2.partscan'), '--precision', 'fp32']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/differs from the resumed model's \(int8\)/);
  }, 300_000);

  it('refuses an unknown precision and an int8 model without its embedded backbone', async () => {
    const bad = await cli(fitArgs(path.join(tmp, 'bad.partscan'), '--precision', 'fp16'));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/precision/);
    const noEmbed = await cli(fitArgs(path.join(tmp, 'noembed.partscan'), '--precision', 'int8', '--no-embed-backbone'));
    expect(noEmbed.code).not.toBe(0);
    expect(noEmbed.stderr).toMatch(/int8 model must embed its backbone/);
  }, 300_000);
});
