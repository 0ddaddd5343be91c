import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRunResults, type ImageResult, type RunManifest } from '../src/export/results.js';
import { auroc } from '../src/metrics/auroc.js';
import { rocCurve } from '../src/metrics/roc.js';
import { verdict } from '../src/postprocess/thresholds.js';
import { operatingCurveTable, renderCharts, scoreHistogram } from '../src/report/charts.js';
import { renderReportHtml, writeReport } from '../src/report/html.js';
import { renderControlChart } from '../src/report/control-chart.js';
import { dot, legend, linearScale, niceTicks, polyline, type Frame } from '../src/report/svg.js';
import { CHROMIUM, HAS_CHROMIUM, externalRequests, launchChromium, openReport } from './helpers/browser.js';
import { runManifest, type TestModel } from './helpers/report-run.js';
import { BOTTLE } from './helpers/shared.js';

const BAND = { low: 0.45, high: 0.55 };

/** A known run: normalised scores chosen by hand, with the bins they must land in (width 0.05 from 0). */
const PARTS: [label: string, normalized: number, raw: number][] = [
  ['good', 0.12, 7.1], // bin 2
  ['good', 0.13, 7.3], // bin 2
  ['good', 0.48, 11.9], // bin 9, UNCERTAIN
  ['good', 0.5, 12.0], // bin 10 (an edge belongs to the bin on its right), UNCERTAIN
  ['broken_large', 0.97, 30.2], // bin 19
  ['broken_large', 1, 35.0], // bin 19 (the top edge closes the last bin)
  ['broken_large', 1, 33.3], // bin 19
  ['contamination', 0.61, 16.4], // bin 12, NG
  ['contamination', 0.3, 9.5], // bin 6, an escape (OK)
];
const EXPECTED_BINS: Record<string, Record<number, number>> = {
  good: { 2: 2, 9: 1, 10: 1 },
  broken_large: { 19: 3 },
  contamination: { 6: 1, 12: 1 },
};

function result(label: string | undefined, normalizedScore: number, imageScore: number, i: number): ImageResult {
  const r: ImageResult = {
    file: path.join(BOTTLE, 'test', label ?? 'unknown', `${String(i).padStart(3, '0')}.png`),
    imageScore,
    normalizedScore,
    verdict: verdict(normalizedScore, BAND),
    regions: [],
    width: 512,
    height: 512,
  };
  if (label !== undefined) r.label = label;
  return r;
}

/** The operating point of the ROC test depends on the raw image threshold 12. */
const MODEL: TestModel = { path: 'bottle.partscan', backbone: 'mobilenetv2-int8', method: 'good-quantile', image: 12, pixel: 11, imageSpan: [5, 35], pixelSpan: [0.5, 40], band: BAND };

function manifestOf(results: ImageResult[]): RunManifest {
  return runManifest(results, MODEL);
}

const labelledRun = () => PARTS.map(([l, n, r], i) => result(l, n, r, i));

function binsOf(h: ReturnType<typeof scoreHistogram>): Record<string, Record<number, number>> {
  const out: Record<string, Record<number, number>> = {};
  for (const s of h.series) {
    out[s.name] = {};
    s.counts.forEach((c, b) => {
      if (c) out[s.name]![b] = c;
    });
  }
  return out;
}

describe('score histogram', () => {
  it('puts a known run in the hand-computed bins, good first then defect types', () => {
    const h = scoreHistogram(labelledRun());
    expect(h.lo).toBe(0);
    expect(h.width).toBe(0.05);
    expect(h.bins).toBe(20);
    expect(h.series.map((s) => s.name)).toEqual(['good', 'broken_large', 'contamination']);
    expect(binsOf(h)).toEqual(EXPECTED_BINS);
  });

  it('uses one series without labels, and wider bins for scores far above 1', () => {
    const h = scoreHistogram([result(undefined, 0.2, 1, 0), result(undefined, 3.2, 9, 1), result(undefined, -0.3, 0.5, 2)]);
    expect(h.series.map((s) => s.name)).toEqual(['all']);
    expect(h.width).toBe(0.1);
    expect(h.lo).toBeCloseTo(-0.3, 12);
    expect(binsOf(h)).toEqual({ all: { 0: 1, 5: 1, 34: 1 } });
  });

  it('counts every finite score exactly once (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -2, max: 60, noNaN: true }), { minLength: 1, maxLength: 50 }), (scores) => {
        const h = scoreHistogram(scores.map((s, i) => result(i % 3 ? 'good' : 'dent', s, s, i)));
        const total = h.series.reduce((a, s) => a + s.counts.reduce((x, y) => x + y, 0), 0);
        expect(total).toBe(scores.length);
        expect(h.bins).toBeLessThanOrEqual(41);
        // Every score lies inside its bin's edges (up to float rounding).
        expect(h.lo).toBeLessThanOrEqual(Math.min(...scores) + 1e-9);
        expect(h.lo + h.bins * h.width).toBeGreaterThanOrEqual(Math.max(...scores) - 1e-9);
      }),
    );
  });
});

describe('ROC curve', () => {
  it('matches a hand-computed case (ties move diagonally)', () => {
    // Scores desc: 0.9 (pos), 0.7 (neg, pos tie), 0.2 (neg).
    expect(rocCurve([0.2, 0.7, 0.9, 0.7], [0, 0, 1, 1])).toEqual({ fpr: [0, 0, 0.5, 1], tpr: [0, 0.5, 1, 1] });
  });

  it('has the area auroc() computes (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.boolean()), { minLength: 2, maxLength: 60 }).filter((a) => a.some((x) => x[1]) && a.some((x) => !x[1])),
        (pairs) => {
          const scores = pairs.map((p) => p[0]);
          const labels = pairs.map((p) => p[1]);
          const { fpr, tpr } = rocCurve(scores, labels);
          let area = 0;
          for (let i = 1; i < fpr.length; i++) area += ((fpr[i]! - fpr[i - 1]!) * (tpr[i]! + tpr[i - 1]!)) / 2;
          expect(area).toBeCloseTo(auroc(scores, labels), 10);
        },
      ),
    );
  });
});

describe('operating curve table', () => {
  it('lists the measured curve with the shipped threshold (12) in place between its neighbours', () => {
    const html = operatingCurveTable(labelledRun(), 12);
    const rows = [...html.matchAll(/<tr( class="shipped")? data-threshold="([^"]+)"><th>([^<]+)<\/th><td>([^<]+)<\/td><td>([^<]+)<\/td>/g)].map((m) => ({ shipped: !!m[1], t: Number(m[2]), name: m[3], fr: m[4], esc: m[5] }));
    // 4 good parts: below a rate of 25 % none may score above the threshold, so every curve row sits at the
    // highest good score (12), and the shipped threshold 12 goes first (rows with thresholds ≤ its own follow).
    expect(rows.map((r) => r.name)).toEqual(['shipped', 'at 0.0%', 'at 0.5%', 'at 1.0%', 'at 2.0%', 'at 5.0%', 'at 10.0%']);
    for (const r of rows) expect(r.t).toBe(12);
    const shipped = rows[0]!;
    expect(shipped.shipped).toBe(true);
    expect(shipped.fr).toBe('0.0%'); // no good part scores above 12
    expect(shipped.esc).toBe('20.0%'); // contamination at 9.5: 1 of the 5 defects
    // Thresholds never rise down the table.
    rows.forEach((r, i) => i && expect(r.t).toBeLessThanOrEqual(rows[i - 1]!.t));
    expect(renderCharts(manifestOf(labelledRun()))).toContain('operating-curve');
  });
});

describe('SVG primitives', () => {
  it('maps scales linearly and picks round ticks', () => {
    const y = linearScale([0, 10], [200, 20]);
    expect(y.at(0)).toBe(200);
    expect(y.at(5)).toBe(110);
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 23, 4)).toEqual([0, 10, 20]);
    expect(niceTicks(0, 23, 5)).toEqual([0, 5, 10, 15, 20]);
  });

  it('strokes polylines as asked, draws dots, and puts line samples in legends', () => {
    const x = linearScale([0, 10], [0, 100]);
    const y = linearScale([0, 1], [50, 0]);
    expect(polyline(x, y, [0, 5], [0, 1], '#111', { dashed: '6 4', width: 1.6, class: 'c' })).toBe(
      '<polyline points="0,50 50,0" fill="none" stroke="#111" stroke-width="1.6" stroke-dasharray="6 4" stroke-linejoin="round" class="c"/>',
    );
    expect(polyline(x, y, [0], [0], '#111', { dashed: 1 })).toContain('stroke-width="2" stroke-dasharray="4 3"');
    expect(polyline(x, y, [], [], '#111')).toBe('');
    expect(dot(x, y, 2.5, 0.5, 2, '#f00', { 'fill-opacity': 0.5 })).toBe('<circle cx="25" cy="25" r="2" fill="#f00" fill-opacity="0.5"/>');
    const f: Frame = { width: 200, height: 100, margin: { top: 10, right: 50, bottom: 10, left: 10 } };
    const g = legend(f, [{ label: 'limits', color: '#d00', line: { dashed: '4 3' } }, { label: 'area', color: '#0d0' }], 'right');
    expect(g).toContain('<line x1="160" x2="180" y1="21" y2="21" stroke="#d00" stroke-width="2" stroke-dasharray="4 3"/><text x="184"');
    expect(g).toContain('<rect x="160" y="31" width="10" height="10" fill="#0d0"/><text x="184"');
  });
});

describe('control chart (no browser)', () => {
  // Scores 0..10 in input order, threshold 7.5, alarm at image 4: positions are read back from the SVG.
  const points = Array.from({ length: 11 }, (_, i) => ({ index: i, score: i, verdict: i > 7.5 ? 'NG' : 'OK', scoreEwma: i / 4, driftEwma: [-i / 5], ewmaLimit: 2 }));
  const monitor = {
    alarm: true,
    firstAlarmAt: 4,
    reasons: [],
    images: 11,
    ngRate: { run: 3 / 11, window: 0.3, expected: 0.05 },
    reference: true,
    notes: [],
    settings: { window: 3, lambda: 0.2, limit: 3, clip: 4, alpha: 0.001 },
    features: ['brightness'],
    threshold: 7.5,
    points,
  };
  const html = renderControlChart({ ...manifestOf([]), monitor } as RunManifest);
  const [scores, ewma] = html.split('</svg>');
  const circles = [...scores!.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)" r="2.2" fill="(#\w+)"/g)].map((m) => ({ x: Number(m[1]), y: Number(m[2]), fill: m[3] }));

  it('draws one dot per image, NG in red, evenly spaced in input order', () => {
    expect(circles).toHaveLength(11);
    expect(circles.map((c) => c.fill === '#d1242f')).toEqual(points.map((p) => p.verdict === 'NG'));
    const dx = circles[1]!.x - circles[0]!.x;
    circles.forEach((c, i) => expect(c.x).toBeCloseTo(circles[0]!.x + i * dx, 0));
    expect(circles[10]!.y).toBeLessThan(circles[0]!.y);
  });

  it('puts the threshold, the alarm line and the window median where the data says', () => {
    const thr = Number(/class="threshold-line"><line x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)"/.exec(scores!)![1]);
    expect(thr).toBeCloseTo((circles[7]!.y + circles[8]!.y) / 2, 0);
    const alarm = Number(/class="alarm-line"[^>]*><line x1="([\d.]+)"/.exec(scores!)![1]);
    expect(alarm).toBeCloseTo(circles[4]!.x, 1);
    expect(scores).toContain('alarm @ 4');
    // Median of the last 3 scores: 0, 0.5, 1, 2, …, 9 (one behind the score from the third point on).
    const median = /<polyline points="([^"]+)"[^>]*class="window-median"/.exec(scores!)![1]!.split(' ');
    expect(median).toHaveLength(11);
    expect(Number(median[5]!.split(',')[1])).toBeCloseTo(circles[4]!.y, 1);
  });

  it('draws the ± control limits and one series per distinct statistic (a run written before the envelope charts)', () => {
    expect(ewma!.match(/class="control-limit"/g)).toHaveLength(2);
    expect(ewma!.match(/class="score-ewma"/g)).toHaveLength(1);
    expect(ewma!.match(/class="drift-ewma"/g)).toHaveLength(1);
    expect(ewma).toContain('brightness robust z');
  });

  it('draws only the upper limit when every chart is one-sided (envelope charts), and names them', () => {
    const [, one] = renderControlChart({ ...manifestOf([]), monitor: { ...monitor, descriptorCharts: 'envelope' } } as RunManifest).split('</svg>');
    expect(one!.match(/class="control-limit"/g)).toHaveLength(1);
    expect(one).toContain('brightness beyond envelope');
    const [, median] = renderControlChart({ ...manifestOf([]), monitor: { ...monitor, descriptorCharts: 'median' } } as RunManifest).split('</svg>');
    expect(median!.match(/class="control-limit"/g)).toHaveLength(2);
  });
});

describe('charts in the report page (no browser)', () => {
  it('labelled run: histogram, ROC and per-defect table, all inline SVG', () => {
    const html = renderReportHtml(manifestOf(labelledRun()), [], { title: 't' });
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).toContain('chart-histogram');
    expect(html).toContain('chart-roc');
    expect(html).toContain('verdict-table');
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
  });

  it('unlabelled run: the histogram of all scores only', () => {
    const html = renderCharts(manifestOf(PARTS.map(([, n, r], i) => result(undefined, n, r, i))));
    expect(html).toContain('data-series="all"');
    expect(html).not.toContain('chart-roc');
    expect(html).not.toContain('verdict-table');
  });
});

describe.skipIf(!HAS_CHROMIUM)(`charts in headless Chromium (skipped when ${CHROMIUM} is absent)`, () => {
  let browser: Browser;
  let runDir: string;
  beforeAll(async () => {
    runDir = await mkdtemp(path.join(os.tmpdir(), 'partscan-charts-'));
    await writeRunResults(runDir, manifestOf(labelledRun()));
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    if (runDir) await rm(runDir, { recursive: true, force: true });
  });

  it('renders the charts with the known run’s bin counts, threshold line and per-defect counts', async () => {
    const report = await writeReport(runDir);
    const { page, errors, requests } = await openReport(browser, report);

    const bars = await page.locator('svg.chart-histogram rect.hist-bar').evaluateAll((rects) =>
      rects.map((r) => {
        const b = r.getBoundingClientRect();
        return { series: r.getAttribute('data-series')!, bin: Number(r.getAttribute('data-bin')), count: Number(r.getAttribute('data-count')), x: b.x, w: b.width, h: b.height };
      }),
    );
    const seen: Record<string, Record<number, number>> = {};
    for (const b of bars) (seen[b.series] ??= {})[b.bin] = b.count;
    expect(seen).toEqual(EXPECTED_BINS);
    // Drawn, and to scale: the 3-part bar is three times the height of a 1-part bar.
    for (const b of bars) expect(b.w).toBeGreaterThan(0);
    const one = bars.find((b) => b.count === 1)!.h;
    expect(one).toBeGreaterThan(2);
    expect(bars.find((b) => b.count === 3)!.h).toBeCloseTo(3 * one, 0);
    // The threshold line sits between bins 9 and 10.
    const line = await page.locator('svg.chart-histogram .threshold-line line').evaluate((l) => l.getBoundingClientRect().x);
    const bin9 = bars.find((b) => b.bin === 9)!;
    const bin10 = bars.find((b) => b.bin === 10)!;
    expect(line).toBeGreaterThanOrEqual(bin9.x + bin9.w - 1);
    expect(line).toBeLessThanOrEqual(bin10.x + 1);
    expect(await page.locator('svg.chart-histogram .band-line').count()).toBe(2);

    // ROC: one point per distinct raw score plus the origin; the operating point of the shipped threshold.
    const roc = page.locator('svg.chart-roc');
    expect((await roc.boundingBox())!.width).toBeGreaterThan(100);
    await expect(roc.locator('.roc-curve').getAttribute('data-points')).resolves.toBe(String(PARTS.length + 1));
    await expect(roc.locator('.operating-point').getAttribute('data-fpr')).resolves.toBe('0');
    await expect(roc.locator('.operating-point').getAttribute('data-tpr')).resolves.toBe(String(4 / 5));

    // Per-defect table: contamination has one escape of two; good has two UNCERTAIN of four.
    const cells = (type: string) => page.locator(`table.verdict-table tr[data-type="${type}"] td`).allInnerTexts();
    await expect(cells('contamination')).resolves.toEqual(['2', '1', '1', '0', '50.0%', '–', '0.0%']);
    await expect(cells('good')).resolves.toEqual(['4', '2', '0', '2', '–', '0.0%', '50.0%']);
    await expect(cells('all defects')).resolves.toEqual(['5', '1', '4', '0', '20.0%', '–', '0.0%']);

    expect(errors).toEqual([]);
    expect(externalRequests(requests)).toEqual([]);
    await page.close();
  });
});
