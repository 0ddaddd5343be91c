/**
 * The SDK as inspection software embeds it (issue 24, items 4, 5 and 7): `renderResult` from the root
 * API at the source image's size for every input kind, `writeScoredRun` for results of every input kind,
 * cancellation by AbortSignal (CANCELLED within one batch, nothing half-written) with progress, and a
 * normalised score that stays informative above the threshold in the report's histogram.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { fit } from '../src/model/fit.js';
import type { Model } from '../src/model/model.js';
import type { ProgressEvent, ScoreResult } from '../src/model/types.js';
import { isPartscanError } from '../src/errors.js';
import { loadDataset } from '../src/data/loaders.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { renderResult } from '../src/index.js';
import { scoreToRunDir, writeScoredRun } from '../src/export/score-run.js';
import { evaluateModel } from '../src/model/evaluate.js';
import { BatchingScorer } from '../src/model/batching-scorer.js';
import { scoreHistogram } from '../src/report/charts.js';
import { expectContract } from './helpers/json-contract.js';
import { BOTTLE } from './helpers/shared.js';
import { thrown } from './helpers/errors.js';
import { FIXTURE_BACKBONE, smallBottleModel } from './helpers/small-bottle-model.js';

const defect = path.join(BOTTLE, 'test', 'broken_large', '000.png');
let tmp: string;
let train: string[];
let model: Model;
const backbone = FIXTURE_BACKBONE;

beforeAll(async () => {
  ({ tmp, train, model } = await smallBottleModel('render'));
}, 180_000);

afterAll(async () => {
  await model?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});


/** An encoded picture's pixels as stored (a grey PNG stays one channel). */
async function decode(png: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number; format: string }> {
  const meta = await sharp(png).metadata();
  const img = meta.channels === 1 ? sharp(png).extractChannel(0) : sharp(png);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: meta.channels ?? info.channels, format: meta.format ?? '' };
}

async function frameOf(file: string) {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: 3 as const };
}

describe('renderResult', () => {
  it('draws overlay, heatmap and mask at the source size for paths, bytes, frames and tensors', async () => {
    const tensor = (await preprocessBatch([defect], model.header.preprocess)).tensor;
    const wide = await sharp(defect).resize(600, 400, { fit: 'fill' }).png().toBuffer();
    const cases: [string, Parameters<Model['score']>[0], number, number][] = [
      ['path', defect, 512, 512],
      ['buffer', await fs.readFile(defect), 512, 512],
      ['non-square bytes', new Uint8Array(wide), 600, 400],
      ['frame', await frameOf(defect), 512, 512],
      ['tensor', { data: tensor, dims: [1, 3, 128, 128] }, 128, 128],
    ];
    for (const [name, input, w, h] of cases) {
      const r = (await model.score(input as never)) as ScoreResult;
      for (const kind of ['overlay', 'heatmap', 'mask'] as const) {
        const img = await decode(await renderResult(r, kind));
        expect([img.format, img.width, img.height], `${name} ${kind}`).toEqual(['png', w, h]);
        expect(img.channels, `${name} ${kind}`).toBe(kind === 'mask' ? 1 : 3);
      }
    }
  });

  it('a frame renders the same overlay as its file; the mask matches the result regions; jpeg and maxSide work', async () => {
    const [fromFile, fromFrame] = await Promise.all([model.score(defect), model.score(await frameOf(defect))]);
    const a = await decode(await renderResult(fromFile, 'overlay'));
    const b = await decode(await renderResult(fromFrame, 'overlay'));
    expect(b.data.equals(a.data)).toBe(true);
    // The overlay is the photo where the heat is low and differs from it where a defect is.
    const photo = await sharp(defect).removeAlpha().raw().toBuffer();
    expect(a.data.equals(photo)).toBe(false);

    const mask = await decode(await renderResult(fromFile, 'mask'));
    const g = fromFile.regions![0]!;
    let inBox = 0;
    let all = 0;
    for (let y = 0; y < 512; y++) {
      for (let x = 0; x < 512; x++) {
        if (!mask.data[y * 512 + x]) continue;
        all++;
        if (x >= g.bbox.x && x < g.bbox.x + g.bbox.width && y >= g.bbox.y && y < g.bbox.y + g.bbox.height) inBox++;
      }
    }
    const areas = fromFile.regions!.reduce((s, x) => s + x.areaPx, 0);
    expect(all).toBe(areas); // integer scale 4: each map pixel is a 4×4 block
    expect(inBox).toBeGreaterThanOrEqual(g.areaPx);

    const jpeg = await decode(await renderResult(fromFile, 'heatmap', { format: 'jpeg', maxSide: 200 }));
    expect([jpeg.format, jpeg.width, jpeg.height]).toEqual(['jpeg', 200, 200]);
  });

  it('a result that no longer knows its pixels asks for them (image option), and renders with them', async () => {
    const r = await model.score(await fs.readFile(defect));
    const copy = { ...r }; // a copy (or a result rebuilt from JSON) has no link to its input
    const e = await thrown(() => renderResult(copy, 'overlay'));
    expect(isPartscanError(e, 'OPTIONS')).toBe(true);
    expect((e as Error).message).toMatch(/no longer knows the pixels/);
    const withImage = await decode(await renderResult(copy, 'overlay', { image: defect }));
    const direct = await decode(await renderResult(r, 'overlay'));
    expect(withImage.data.equals(direct.data)).toBe(true);
    // Heatmap and mask need no pixels.
    expect((await decode(await renderResult(copy, 'mask'))).width).toBe(512);
  });

  it('writeScoredRun takes results of every input kind and writes a valid run', async () => {
    const tensor = (await preprocessBatch([defect], model.header.preprocess)).tensor;
    const results = await model.score([await fs.readFile(defect), await frameOf(defect), { data: tensor, dims: [1, 3, 128, 128] }, defect]);
    const run = path.join(tmp, 'all-kinds');
    const manifest = await writeScoredRun(model, results, run);
    expect(manifest.failures).toEqual([]);
    expect(manifest.results.map((r) => [r.file, r.width, r.height])).toEqual([
      ['<buffer>', 512, 512],
      ['<frame>', 512, 512],
      ['<tensor>', 128, 128],
      [defect, 512, 512],
    ]);
    const files = await fs.readdir(run);
    for (const stem of ['buffer', 'frame', 'tensor', '000']) expect(files).toContain(`${stem}.overlay.png`);
    expectContract('results', JSON.parse(await fs.readFile(path.join(run, 'results.json'), 'utf8')));
  });
});

describe('cancellation and progress', () => {
  const inputs = () => [...Array(6)].map((_, i) => path.join(BOTTLE, 'test', 'good', `00${i}.png`));

  it('scoring many images reports progress per batch, ending at the total', async () => {
    const events: ProgressEvent[] = [];
    await model.score(inputs(), { batchSize: 2, onProgress: (e) => events.push(e) });
    expect(events).toEqual([2, 4, 6].map((done) => ({ stage: 'score', done, total: 6 })));
  });

  it('an abort stops scoring within one batch with a typed CANCELLED error', async () => {
    const ac = new AbortController();
    const events: ProgressEvent[] = [];
    const e = await thrown(() =>
      model.score(inputs(), {
        batchSize: 2,
        signal: ac.signal,
        onProgress: (p) => {
          events.push(p);
          if (p.done === 2) ac.abort();
        },
      }),
    );
    expect(isPartscanError(e, 'CANCELLED')).toBe(true);
    expect(events).toHaveLength(1);
    // Already aborted: nothing runs.
    expect(isPartscanError(await thrown(() => model.score(defect, { signal: ac.signal })), 'CANCELLED')).toBe(true);
  });

  it('fit stops within one backbone batch; evaluateModel stops too', async () => {
    const ac = new AbortController();
    const batches: number[] = [];
    const e = await thrown(() =>
      fit(train, {
        backbone,
        imageSize: 128,
        channels: 30,
        batchSize: 2,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.stage !== 'fit') return;
          batches.push(p.done);
          ac.abort(new Error('operator stop'));
        },
      }),
    );
    expect(isPartscanError(e, 'CANCELLED')).toBe(true);
    expect((e as Error).message).toContain('operator stop');
    expect(batches).toEqual([2]);

    const ds = await loadDataset(BOTTLE);
    const ev = new AbortController();
    let seen = 0;
    const e2 = await thrown(() =>
      evaluateModel(model, { ...ds, test: ds.test.slice(0, 40) }, {
        batchSize: 4,
        signal: ev.signal,
        onProgress: () => {
          seen++;
          ev.abort();
        },
      }),
    );
    expect(isPartscanError(e2, 'CANCELLED')).toBe(true);
    expect(seen).toBe(1);
  }, 180_000);

  it('scoreToRunDir cancelled mid-run leaves nothing half-written: no results.json, none of its exports', async () => {
    const run = path.join(tmp, 'cancelled-run');
    await fs.mkdir(run);
    await fs.writeFile(path.join(run, 'keep.txt'), 'mine');
    const ac = new AbortController();
    const e = await thrown(() =>
      scoreToRunDir(model, [...inputs(), ...inputs()], run, {
        batchSize: 2,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.done >= 4) ac.abort();
        },
      }),
    );
    expect(isPartscanError(e, 'CANCELLED')).toBe(true);
    expect(await fs.readdir(run)).toEqual(['keep.txt']);
    expect(existsSync(path.join(run, 'results.json'))).toBe(false);
  });

  it('a BatchingScorer request aborted while it waits leaves the queue; the others are scored', async () => {
    const scorer = new BatchingScorer(model, { maxBatch: 1 });
    const ac = new AbortController();
    const first = scorer.score(defect);
    const second = scorer.score(defect, { signal: ac.signal });
    const third = scorer.score(defect);
    ac.abort();
    const [a, b, c] = await Promise.allSettled([first, second, third]);
    expect(a.status).toBe('fulfilled');
    expect(c.status).toBe('fulfilled');
    expect(b.status === 'rejected' && isPartscanError(b.reason, 'CANCELLED')).toBe(true);
    expect(scorer.batches).toBe(2);
  });
});

describe('normalizedScore above the threshold', () => {
  it("spreads defects over the report histogram's bins where the clamp at the calibration maximum piled them into the last one", async () => {
    const ds = await loadDataset(BOTTLE);
    const m = await fit(ds.train.slice(0, 100).map((s) => s.path), { backbone, imageSize: 128, channels: 30, contaminationCheck: false });
    try {
      const results = await m.score(ds.test.map((s) => s.path));
      const labelled = results.map((r, i) => ({ normalizedScore: r.normalizedScore!, label: ds.test[i]!.label }));
      const defectsInLastBin = (items: { normalizedScore: number; label: string }[]) => {
        const h = scoreHistogram(items as never);
        const defects = h.series.filter((s) => s.name !== 'good');
        return {
          last: defects.reduce((a, s) => a + s.counts[h.bins - 1]!, 0),
          used: new Set(defects.flatMap((s) => s.counts.flatMap((c, i) => (c > 0 ? [i] : [])))).size,
        };
      };
      const now = defectsInLastBin(labelled);
      // The map partscan used before: clamp((x − t)/(max − min) + 0.5, 0, 1).
      const t = m.header.thresholds!;
      const clamp = results.map((r, i) => ({
        normalizedScore: Math.min(1, Math.max(0, (r.imageScore - t.image) / (t.imageStats.max - t.imageStats.min) + 0.5)),
        label: ds.test[i]!.label,
      }));
      const before = defectsInLastBin(clamp);
      expect(before.last).toBeGreaterThanOrEqual(8); // of 63 defective parts (11 when measured)
      expect(now.last).toBeLessThanOrEqual(Math.floor(before.last / 4));
      expect(now.used).toBeGreaterThanOrEqual(8);
      // Never exactly 1, and the verdicts are those of the raw threshold.
      expect(results.every((r) => r.normalizedScore! < 1)).toBe(true);
      for (const r of results) expect(r.normalizedScore! > 0.5).toBe(r.imageScore > t.image);
    } finally {
      await m.dispose();
    }
  }, 240_000);
});
