/**
 * Leave-one-out contamination check from the embeddings the fit kept (no second backbone pass) against
 * the second-pass path, on a real bottle subset with a broken part planted among the good images: the
 * same suspects, the same scores within float tolerance, in the streaming and the low-rank fit.
 */
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli } from './helpers/cli.js';
import { fit } from '../src/model/fit.js';
import { leaveOneOutScores, leaveOneOutScoresFromEmbeddings } from '../src/model/out-of-sample.js';
import { keptEmbeddingBudget } from '../src/model/kept-embeddings.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const backbone = { backbone: 'resnet50', weights: REF_WEIGHTS };

async function trainingSet(good: number): Promise<{ files: string[]; calibration: string[] }> {
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  const files = [...all.slice(0, good), path.join(BOTTLE, 'test', 'broken_large', '000.png')];
  return { files, calibration: all.slice(good, good + 4) };
}

const relClose = (a: number, b: number, tol: number): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

describe('leave-one-out without a second backbone pass', () => {
  it('streaming fit: kept embeddings give the same suspects and scores as the second pass', async () => {
    const { files, calibration } = await trainingSet(60);
    // 61 samples > d/2 = 50: the streaming fit, which keeps a copy of the embeddings within the budget.
    const opts = { backbone, channels: 100, imageSize: 128, seed: 0, calibration, guards: false } as const;
    const kept = await fit(files, opts);
    const second = await fit(files, { ...opts, contaminationMemory: 0 });
    try {
      expect(kept.samples).toBeUndefined(); // really the streaming fit
      expect(kept.fitWarnings!.some((w) => w.code === 'LOO_SECOND_PASS')).toBe(false);
      expect(second.fitWarnings!.some((w) => w.code === 'LOO_SECOND_PASS')).toBe(true);
      const a = kept.fitReport!.suspects;
      const b = second.fitReport!.suspects;
      expect(a.map((s) => s.file)).toEqual(b.map((s) => s.file));
      expect(a.length).toBeGreaterThan(0); // a non-trivial comparison (this subset at 128 px flags one image)
      a.forEach((s, i) => {
        expect(relClose(s.score, b[i]!.score, 1e-4)).toBe(true);
        expect(Math.abs(s.z - b[i]!.z)).toBeLessThan(1e-3);
      });
      // The calibration outlier pooling saw the same leave-one-out scores: same thresholds.
      expect(relClose(kept.header.thresholds!.image, second.header.thresholds!.image, 1e-4)).toBe(true);

      // The same with a statistics buffer too small for every image (1 MiB: 2 of 61 images at 400 KB):
      // the check cannot read the buffer, so it keeps its own copy of the embeddings.
      const before = process.env.PARTSCAN_STATS_BUFFER_MB;
      process.env.PARTSCAN_STATS_BUFFER_MB = '1';
      try {
        // With a 1 KiB budget not even a copy fits: a second pass, which proves the buffer did not hold them...
        const tooSmall = await fit(files, { ...opts, contaminationMemory: 1024 });
        expect(tooSmall.fitWarnings!.some((w) => w.code === 'LOO_SECOND_PASS')).toBe(true);
        await tooSmall.dispose();
        // ...so the default budget's fit used the kept copy: no second pass, the second pass's outcome.
        const copy = await fit(files, opts);
        expect(copy.fitWarnings!.some((w) => w.code === 'LOO_SECOND_PASS')).toBe(false);
        const c = copy.fitReport!.suspects;
        expect(c.map((s) => s.file)).toEqual(b.map((s) => s.file));
        c.forEach((s, i) => expect(relClose(s.score, b[i]!.score, 1e-4)).toBe(true));
        expect(relClose(copy.header.thresholds!.image, second.header.thresholds!.image, 1e-4)).toBe(true);
        await copy.dispose();
      } finally {
        if (before === undefined) delete process.env.PARTSCAN_STATS_BUFFER_MB;
        else process.env.PARTSCAN_STATS_BUFFER_MB = before;
      }
    } finally {
      await kept.dispose();
      await second.dispose();
    }
  }, 600_000);

  it('low-rank fit: scores from its kept samples equal the second-pass scores for every image', async () => {
    const { files, calibration } = await trainingSet(30);
    // d=100 ≥ 2·31 samples: the low-rank fit, which keeps every sample anyway.
    const model = await fit(files, { backbone, channels: 100, imageSize: 128, seed: 0, calibration, guards: false });
    try {
      const samples = model.samples!;
      expect(samples).toBeDefined();
      const fromKept = await leaveOneOutScoresFromEmbeddings(model, samples, files.length);
      const secondPass = await leaveOneOutScores(model, files);
      expect(fromKept).toHaveLength(files.length);
      fromKept.forEach((s, i) => expect(relClose(s, secondPass[i]!, 1e-4)).toBe(true));
      // The fit's own check (run on the float32 inverse, before the fit rounds it to float16 as the file
      // stores it) finds the planted broken part. (Recomputed on the rounded model, the low-rank
      // downdate's 1/(1 − c·m) amplifies float16's 2^-12 too much to rank suspects: docs/MODEL-FILE.md.)
      expect(model.fitReport!.suspects[0]!.file).toBe(files[files.length - 1]);
      await expect(leaveOneOutScoresFromEmbeddings(model, samples.subarray(1), files.length)).rejects.toMatchObject({ code: 'INVALID_TENSOR' });
    } finally {
      await model.dispose();
    }
  }, 300_000);

  it('the CLI: --loo-memory 0 reports LOO_SECOND_PASS; the default budget keeps a copy instead', async () => {
    const { files, calibration } = await trainingSet(20);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-loo-cli-'));
    try {
      const calib = path.join(dir, 'calib');
      await fs.mkdir(calib);
      for (const f of calibration) await fs.symlink(f, path.join(calib, path.basename(f)));
      const args = (out: string, extra: string[]) => ['fit', ...files, '--out', path.join(dir, out), '--calibration', calib, '--weights', REF_WEIGHTS, '--image-size', '64', '--channels', '30', '--json', ...extra];
      const env = { PARTSCAN_STATS_BUFFER_MB: '0.1' };
      const [second, kept] = [await cli(args('a.partscan', ['--loo-memory', '0']), 120_000, env), await cli(args('b.partscan', []), 120_000, env)];
      expect(second.code, second.stderr).toBe(0);
      expect(kept.code, kept.stderr).toBe(0);
      const codes = (r: { stdout: string }) => (JSON.parse(r.stdout).warnings as { code: string }[]).map((w) => w.code);
      expect(codes(second)).toContain('LOO_SECOND_PASS');
      expect(codes(kept)).not.toContain('LOO_SECOND_PASS');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it('budget: default share of RAM, explicit bytes, invalid values are OPTIONS errors', () => {
    expect(keptEmbeddingBudget(undefined)).toBeGreaterThan(0);
    expect(keptEmbeddingBudget(0)).toBe(0);
    expect(keptEmbeddingBudget(2e9)).toBe(2e9);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => keptEmbeddingBudget(bad)).toThrow(expect.objectContaining({ code: 'OPTIONS' }));
    }
  });
});
