/**
 * Line monitoring on real data (issue 18): the magnetic-tile capture-setup split, fitted once with the
 * real MobileNetV2-int8 backbone. Production orders are seeded permutations of the held-out streams.
 */

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fit } from '../src/model/fit.js';
import { Model, type ScoreResult } from '../src/model/model.js';
import { BatchingScorer } from '../src/model/batching-scorer.js';
import { MODEL_FORMAT_MINOR } from '../src/model/model-file.js';
import { parseMonitorReference } from '../src/model/monitor-reference.js';
import { LineMonitor } from '../src/monitor/line-monitor.js';
import { scoreToRunDir } from '../src/export/score-run.js';
import { readRunManifest } from '../src/export/results.js';
import { writeReport } from '../src/report/html.js';
import { renderControlChart } from '../src/report/control-chart.js';
import { HAS_CHROMIUM, externalRequests, launchChromium, openReport } from './helpers/browser.js';
import { magneticTileSetups, monitorFitOptions, seededShuffle } from './helpers/magnetic-tile-setups.js';

const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];

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

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-monitor-'));
  model = await fit(split.fit, monitorFitOptions());
  await scoreAll([...split.sameGood, ...split.newGood, ...defectPool]);
});

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

describe('calibration reference in the model file (format 1.2)', () => {
  it('stores out-of-sample good scores and drift z spreads, and reads them back', async () => {
    const ref = model.header.monitor!;
    expect(ref).toBeDefined();
    // Every fitted image scored out of sample (leave-one-out); no calibration split by default.
    expect(ref.sources.leaveOneOut).toBeGreaterThan(600);
    expect(ref.sources.calibration).toBe(0);
    expect(ref.scores.length).toBe(ref.sources.leaveOneOut + ref.sources.calibration);
    // Grayscale tiles: the colour ratio never varies, so it gets no chart.
    expect(ref.driftZScale![model.header.drift!.features.indexOf('r_b_ratio')]).toBe(0);
    const file = path.join(tmp, 'tile.partscan');
    await model.save(file);
    const loaded = await Model.load(file);
    expect(loaded.header.formatVersion).toEqual([1, MODEL_FORMAT_MINOR]);
    expect(MODEL_FORMAT_MINOR).toBe(2);
    expect(parseMonitorReference(loaded.header.monitor)).toEqual(parseMonitorReference(ref));
    await loaded.dispose();
  });
});

describe('done when (issue 18)', () => {
  it('the exp1–5 held-out good stream alone never alarms', () => {
    for (const seed of SEEDS) {
      const r = monitorOf(seededShuffle(split.sameGood, seed)).result();
      expect(r.alarm, `seed ${seed}: ${r.reasons.join('; ')}`).toBe(false);
      expect(r.firstAlarmAt).toBeNull();
    }
  });

  it('the same stream with ~5 % real defects mixed in does not alarm, and its NG rate shows them', () => {
    for (const seed of SEEDS) {
      const defects = seededShuffle(defectPool, seed).slice(0, 6); // 6 of 127 = 4.7 %
      const stream = seededShuffle([...split.sameGood, ...defects], seed + 100);
      const r = monitorOf(stream).result();
      expect(r.alarm, `seed ${seed}: ${r.reasons.join('; ')}`).toBe(false);
      const ng = stream.filter((f) => scored.get(f)!.verdict === 'NG').length;
      expect(r.ngRate.run).toBeCloseTo(ng / stream.length, 12);
      expect(r.ngRate.run).toBeGreaterThan(r.ngRate.expected!);
    }
  });

  it('the same-setup stream followed by exp6 alarms within the first 50 exp6 images, not before', () => {
    const n = split.sameGood.length;
    for (const seed of SEEDS) {
      const r = monitorOf([...seededShuffle(split.sameGood, seed), ...seededShuffle(split.newGood, seed)]).result();
      expect(r.alarm).toBe(true);
      expect(r.firstAlarmAt!, `seed ${seed}`).toBeGreaterThanOrEqual(n);
      expect(r.firstAlarmAt!, `seed ${seed}`).toBeLessThan(n + 50);
      // The reasons say what moved, in words and numbers.
      expect(r.reasons.join('\n')).toMatch(/(brightness|contrast|sharpness) \+\d+ % over the last \d+ images vs training/);
      expect(r.reasons.join('\n')).toMatch(/NG rate \d+\.\d % over the last \d+ images \(expected \d+\.\d %\)/);
    }
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
    const { monitor: _m, ...header } = model.header;
    const old = Model.fromParts({ header: { ...header, formatVersion: [1, 1] }, channelIndices: model.channelIndices, mean: model.mean, inverse: model.inverse }, await model.getBackbone());
    await old.save(file, { resumable: false });
    const loaded = await Model.load(file);
    expect(loaded.header.monitor).toBeUndefined();
    const r = monitorOf(stream, loaded).result();
    expect(r.reference).toBe(false);
    expect(r.notes.join(' ')).toMatch(/no calibration reference/);
    expect(r.ngRate.expected).toBeNull();
    expect(r.points.every((p) => p.scoreEwma === undefined)).toBe(true);
    // Drift descriptors alone still catch the new setup, after it begins.
    expect(r.firstAlarmAt!).toBeGreaterThanOrEqual(60);
    await loaded.dispose();
  });
});
