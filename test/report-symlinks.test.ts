/**
 * The report never follows a symlink out of the run folder: an `outputs` entry that is a symlink inside
 * the run folder leading outside is shown as a placeholder, neither inlined nor linked, whether images
 * are inlined or linked; a symlink that stays inside the run folder, and a run folder reached through a
 * symlink, work as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { writeRunResults, type ImageResult } from '../src/export/results.js';
import { writeReport } from '../src/report/html.js';
import { runManifest } from './helpers/report-run.js';

let tmp: string;
let run: string;
let secretB64: string;
let insideB64: string;

const result = (file: string, overlay: string): ImageResult => ({
  file,
  imageScore: 3,
  normalizedScore: 0.2,
  verdict: 'OK',
  regions: [],
  width: 8,
  height: 8,
  outputs: { overlay },
});

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-report-links-'));
  run = path.join(tmp, 'run');
  await fs.mkdir(run);
  const png = (r: number) => sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g: 0, b: 0 } } }).png().toBuffer();
  const secret = await png(200);
  const inside = await png(50);
  secretB64 = secret.toString('base64');
  insideB64 = inside.toString('base64');
  await fs.writeFile(path.join(tmp, 'secret.png'), secret);
  await fs.writeFile(path.join(run, 'real.overlay.png'), inside);
  await fs.symlink(path.join(tmp, 'secret.png'), path.join(run, 'a.overlay.png')); // leads out
  await fs.symlink('real.overlay.png', path.join(run, 'b.overlay.png')); // stays inside
  execFileSync('mkfifo', [path.join(run, 'c.overlay.png')]);
  const model = { path: 'm.partscan', backbone: 'resnet50', method: 'good-sigma' as const, image: 5, pixel: 5, imageSpan: [1, 9] as const, pixelSpan: [1, 9] as const, band: { low: 0.45, high: 0.55 } };
  await writeRunResults(run, runManifest([result('a.png', 'a.overlay.png'), result('b.png', 'b.overlay.png'), result('c.png', 'c.overlay.png')], model));
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('report and symlinks', () => {
  it.each([
    ['inlined', {}],
    ['linked', { inlineBudgetBytes: 0 }],
  ])('%s images: a symlink leading out of the run folder is a placeholder, one staying inside is shown', async (_mode, opts) => {
    const html = await fs.readFile(await writeReport(run, { ...opts, out: path.join(tmp, `report-${_mode}.html`) }), 'utf8');
    expect(html).not.toContain(secretB64);
    expect(html).not.toContain('secret.png');
    expect(html).toContain('path outside the run folder');
    if (_mode === 'inlined') expect(html).toContain(insideB64);
    else expect(html).toContain('run/real.overlay.png');
    // The FIFO is not read (the report would hang): a placeholder.
    expect(html).toContain('file missing');
  });

  it('a FIFO as results.json is refused (OPTIONS), not waited on', async () => {
    const dir = path.join(tmp, 'fifo-run');
    await fs.mkdir(dir);
    execFileSync('mkfifo', [path.join(dir, 'results.json')]);
    await expect(writeReport(dir)).rejects.toMatchObject({ code: 'OPTIONS', message: expect.stringMatching(/FIFO/) });
  });

  it('a run folder reached through a symlink reports as before', async () => {
    const link = path.join(tmp, 'run-link');
    await fs.symlink(run, link);
    const html = await fs.readFile(await writeReport(link, { out: path.join(tmp, 'via-link.html') }), 'utf8');
    expect(html).toContain(insideB64);
    expect(html).not.toContain(secretB64);
  });
});
