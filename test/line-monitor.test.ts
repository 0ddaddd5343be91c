/**
 * Line monitoring on real data (issues 18 and 23): the magnetic-tile capture-setup split, fitted once
 * with the bundled MobileNetV2-int8 backbone at its defaults. Every image is scored once; production
 * orders (setup blocks, seeded permutations) are replays of those results.
 */

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fit } from '../src/model/fit.js';
import { Model, type ScoreResult } from '../src/model/model.js';
import type { MonitorInput } from '../src/monitor/line-monitor.js';
import { BatchingScorer } from '../src/model/batching-scorer.js';
import { MODEL_FORMAT_MINOR } from '../src/model/model-file.js';
import { parseMonitorReference } from '../src/model/monitor-reference.js';
import { LineMonitor } from '../src/monitor/line-monitor.js';
import { scoreToRunDir } from '../src/export/score-run.js';
import { readRunManifest } from '../src/export/results.js';
import { writeReport } from '../src/report/html.js';
import { renderControlChart } from '../src/report/control-chart.js';
import { HAS_CHROMIUM, externalRequests, launchChromium, openReport } from './helpers/browser.js';
import { magneticTileSetups, monitorFitOptions, seededShuffle, setupBlocks } from './helpers/magnetic-tile-setups.js';
import { changeDelays, replay } from './helpers/monitor-streams.js';

/** Seeded production orders per stream, as in the issue. */
const ORDERS = 100;

let model: Model;
let tmp: string;
const scored = new Map<string, ScoreResult>();
const split = magneticTileSetups();
/** Defects scored once: enough to draw ~5 % for every seed. */
const defectPool = seededShuffle(split.sameDefects, 99).slice(0, 40);

async function scoreAll(files: string[]): Promise<void> {
  for (let i = 0; i < files.length; i += 16) {
    for (const r of await model.score(files.slice(i, i + 16))) scored.set(r.source, r);
  }
}

function monitorOf(files: string[], m: Model = model): LineMonitor {
  const mon = new LineMonitor(m);
  files.forEach((f, i) => mon.push(scored.get(f)!, i));
  return mon;
}

// The 672-image fit and ~320 scores take about 40 s on an idle 2-core machine; the limit allows for contention.
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-monitor-'));
  model = await fit(split.fit, monitorFitOptions());
  await scoreAll([...split.sameGood, ...split.newGood, ...defectPool]);
}, 900_000);

afterAll(async () => {
  await model?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('the magnetic-tile setup split', () => {
  it('has the issue counts: 121 same-setup good, 158 exp6 good', () => {
    expect(split.sameGood).toHaveLength(121);
    expect(split.newGood).toHaveLength(158);
    expect(split.fit).toHaveLength(672);
  });
});

describe('monitoring reference in the model file (format 1.4)', () => {
  it('stores out-of-sample good scores, drift z spreads and the envelope of the training images, and reads them back', async () => {
    const ref = model.header.monitor!;
    expect(ref).toBeDefined();
    // Every fitted image scored out of sample (leave-one-out); no calibration split by default.
    expect(ref.sources.leaveOneOut).toBeGreaterThan(600);
    expect(ref.sources.calibration).toBe(0);
    expect(ref.scores.length).toBe(ref.sources.leaveOneOut + ref.sources.calibration);
    // One row of drift z per training image the fit kept, one value per drift descriptor.
    expect(ref.envelope!.z).toHaveLength(model.header.gaussian.images);
    expect(ref.envelope!.z.every((row) => row.length === model.header.drift!.features.length)).toBe(true);
    // Grayscale tiles: the colour ratio never varies, so it gets no chart.
    expect(ref.driftZScale![model.header.drift!.features.indexOf('r_b_ratio')]).toBe(0);
    const file = path.join(tmp, 'tile.partscan');
    await model.save(file);
    const loaded = await Model.load(file);
    expect(loaded.header.formatVersion).toEqual([1, MODEL_FORMAT_MINOR]);
    expect(MODEL_FORMAT_MINOR).toBeGreaterThanOrEqual(4); // the envelope came with 1.4 (float16 inverse covariances: 1.5, pool row flags: 1.6)
    expect(parseMonitorReference(loaded.header.monitor)).toEqual(parseMonitorReference(ref));
    await loaded.dispose();
  });
});

describe('done when (issue 23): silent on streams the model was fitted on, in any order', () => {
  const same = (files: string[]): MonitorInput[] => files.map((f) => scored.get(f)!);

  it('the same-setup good stream never alarms: in setup blocks (file order), in reverse block order, in 100 seeded permutations', () => {
    for (const [order, files] of [['file order', setupBlocks(split.sameGood)], ['reverse blocks', setupBlocks(split.sameGood, true)]] as const) {
      const r = replay(model, same(files));
      expect(r.alarm, `${order}: ${r.reasons.join('; ')}`).toBe(false);
      expect(r.descriptorCharts).toBe('envelope');
    }
    for (let seed = 1; seed <= ORDERS; seed++) {
      const r = replay(model, same(seededShuffle(split.sameGood, seed)));
      expect(r.firstAlarmAt, `seed ${seed}: ${r.reasons.join('; ')}`).toBeNull();
    }
  });

  it('the same stream with ~5 % real defects mixed in does not alarm (100 orders), and its NG rate shows them', () => {
    for (let seed = 1; seed <= ORDERS; seed++) {
      const defects = seededShuffle(defectPool, seed).slice(0, 6); // 6 of 127 = 4.7 %
      const stream = seededShuffle([...split.sameGood, ...defects], seed + 100);
      const r = replay(model, same(stream));
      expect(r.alarm, `seed ${seed}: ${r.reasons.join('; ')}`).toBe(false);
      const ng = stream.filter((f) => scored.get(f)!.verdict === 'NG').length;
      expect(r.ngRate.run).toBeCloseTo(ng / stream.length, 12);
    }
  });
});

describe('done when (issue 23): an alarm within 50 images of a setup that was never fitted', () => {
  it('exp6 after the same-setup stream, in file order: alarm within its first 50 images, saying what changed and what to check', () => {
    const n = split.sameGood.length;
    const r = replay(model, [...split.sameGood, ...split.newGood].map((f) => scored.get(f)!));
    expect(r.firstAlarmAt!).toBeGreaterThanOrEqual(n);
    expect(r.firstAlarmAt!).toBeLessThan(n + 50);
    expect(r.reasons[0]).toMatch(/^brightness beyond the fitted range: \d+ of the last 50 images \(about 5 expected\), a median \+\d+ % from the nearest training images — check the lighting/);
  });

  it('exp6 after the same-setup stream, in 100 seeded permutations: never before exp6, always within its first 50 images', () => {
    const d = changeDelays(model, split.sameGood.map((f) => scored.get(f)!), split.newGood.map((f) => scored.get(f)!), ORDERS, 1);
    expect(d.early).toBe(0);
    expect(d.missed).toBe(0);
    expect(d.delays.at(-1)!).toBeLessThan(50);
  });
});

describe('runs and report', () => {
  // Shorter than the full streams: this run is scored a second time, through the run writer.
  const stream = [...seededShuffle(split.sameGood, 11).slice(0, 60), ...seededShuffle(split.newGood, 11).slice(0, 60)];

  it('scoreToRunDir writes the monitor of the run, in input order, into results.json', async () => {
    const out = path.join(tmp, 'run');
    const none = { overlay: false, heatmap: false, mask: false, original: false };
    const manifest = await scoreToRunDir(model, stream, out, { exports: none });
    const expected = monitorOf(stream).result();
    expect(manifest.monitor!.alarm).toBe(true);
    expect(manifest.monitor!.firstAlarmAt).toBe(expected.firstAlarmAt);
    expect(manifest.monitor!.reasons).toEqual(expected.reasons);
    const written = (await readRunManifest(out)) as typeof manifest;
    expect(written.monitor!.firstAlarmAt).toBe(expected.firstAlarmAt);
    expect(written.monitor!.points).toHaveLength(stream.length);
    const section = renderControlChart(written);
    expect(section.match(/<svg [^>]*class="control-chart"/g)).toHaveLength(2);
    expect(section).toContain(`alarm @ ${expected.firstAlarmAt}`);
  });

  it('track() monitors concurrent BatchingScorer requests in request order, whatever order they finish in', async () => {
    const part = [...stream.slice(50, 60), ...stream.slice(60, 90)];
    const scorer = new BatchingScorer(model);
    const mon = new LineMonitor(model);
    // Requests finish out of order: later ones are not delayed, earlier ones are.
    const results = await Promise.all(
      part.map((f, i) => mon.track(new Promise<ScoreResult>((resolve) => setTimeout(resolve, (part.length - i) * 3)).then(() => scorer.score(f)))),
    );
    expect(results.map((r) => r.source)).toEqual(part);
    const got = mon.result();
    const want = monitorOf(part).result();
    expect(got.points.map((p) => p.index)).toEqual(part.map((_, i) => i));
    got.points.forEach((p, i) => expect(p.score).toBeCloseTo(want.points[i]!.score, 3));
    expect(got.firstAlarmAt).toBe(want.firstAlarmAt);
    await expect(mon.track(Promise.reject(new Error('lost')))).rejects.toThrow('lost');
    expect(mon.result().images).toBe(part.length);
  });

  it.skipIf(!HAS_CHROMIUM)('the control charts render in headless Chromium', async () => {
    const report = await writeReport(path.join(tmp, 'run'));
    const browser = await launchChromium();
    try {
      const { page, errors, requests } = await openReport(browser, report);
      const charts = page.locator('section.monitor svg.control-chart');
      expect(await charts.count()).toBe(2);
      for (let k = 0; k < 2; k++) {
        const box = (await charts.nth(k).boundingBox())!;
        expect(box.width).toBeGreaterThan(600);
        expect(box.height).toBeGreaterThan(100);
      }
      expect(await page.locator('section.monitor').innerText()).toContain('ALARM');
      expect(errors).toEqual([]);
      expect(externalRequests(requests)).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it('a model without a calibration reference (format 1.1) still loads; the monitor says so and watches drift only', async () => {
    const file = path.join(tmp, 'old.partscan');
    // A format 1.1 header: no monitoring reference, nor the later image-score and calibration-pool fields.
    const { monitor: _m, imageScore: _i, calibration: _c, ...header } = model.header;
    const old = Model.fromParts({ header: { ...header, formatVersion: [1, 1] }, channelIndices: model.channelIndices, mean: model.mean, inverse: model.inverse }, await model.getBackbone());
    await old.save(file, { resumable: false });
    const loaded = await Model.load(file);
    expect(loaded.header.monitor).toBeUndefined();
    const r = monitorOf(stream, loaded).result();
    expect(r.reference).toBe(false);
    expect(r.descriptorCharts).toBe('median');
    expect(r.notes.join(' ')).toMatch(/no monitoring reference/);
    expect(r.ngRate.expected).toBeNull();
    expect(r.points.every((p) => p.scoreEwma === undefined)).toBe(true);
    // Drift descriptors alone still catch the new setup, after it begins.
    expect(r.firstAlarmAt!).toBeGreaterThanOrEqual(60);
    await loaded.dispose();
  });

  it('a format 1.2 model (score reference, no envelope) falls back to the charts against the training median, and says so', async () => {
    const { envelope: _e, ...reference } = model.header.monitor!;
    const old = { ...model.header, formatVersion: [1, 2] as [number, number], monitor: reference };
    const r = replay(old, stream.map((f) => scored.get(f)!));
    expect(r.reference).toBe(true);
    expect(r.descriptorCharts).toBe('median');
    expect(r.notes.join(' ')).toMatch(/no envelope of its training images .* re-fit with this partscan version/i);
    expect(r.points.every((p) => p.scoreEwma !== undefined)).toBe(true);
    // The old charts compare with the median of the mixture: the exp1 block alone reads as a shift.
    expect(replay(old, setupBlocks(split.sameGood).map((f) => scored.get(f)!)).alarm).toBe(true);
  });
});
