/**
 * The line-monitoring section of the HTML report: the run's status (alarm, reasons, NG rate against
 * the expected rate) and two inline SVG control charts over the images in input order — the image
 * scores with the threshold, the window median and the alarm point; and the EWMA statistics (image
 * score ranks and each drift descriptor's robust z) between their control limits. Drawn with the
 * report's SVG primitives (svg.ts): self-contained, no scripts, no external resources. The run manifest is
 * untrusted input: the monitor object is validated and every text escaped.
 */

import { z } from 'zod';
import type { RunManifest } from '../export/results.js';
import { escapeHtml as esc } from './escape.js';
import { axes, dot, hline, legend, linearScale, niceTicks, plotBox, polyline, svgRoot, vline, type Frame, type LegendEntry, type LinearScale } from './svg.js';

const finite = z.number().finite();
const monitorSchema = z.object({
  alarm: z.boolean(),
  firstAlarmAt: z.number().int().nonnegative().nullable(),
  reasons: z.array(z.string()),
  images: z.number().int().nonnegative(),
  ngRate: z.object({ run: finite, window: finite, expected: finite.nullable() }),
  reference: z.boolean(),
  // Absent in runs written before the envelope charts: their descriptor charts were two-sided.
  descriptorCharts: z.enum(['envelope', 'median', 'none']).optional(),
  notes: z.array(z.string()),
  settings: z.object({ window: finite, lambda: finite, limit: finite, clip: finite, alpha: finite }),
  features: z.array(z.string()),
  threshold: finite.optional(),
  points: z.array(
    z.object({
      index: z.number().int().nonnegative(),
      score: finite,
      verdict: z.string().optional(),
      scoreEwma: finite.optional(),
      driftEwma: z.array(finite),
      ewmaLimit: finite,
    }),
  ),
});

type Monitor = z.infer<typeof monitorSchema>;

const FRAME: Frame = { width: 920, height: 230, margin: { top: 14, right: 150, bottom: 34, left: 56 } };
const SERIES_COLOURS = ['#1f6feb', '#b35900', '#7a3fbf', '#0f7b6c', '#c2185b', '#5d6d7e', '#8d6e00', '#2e7d32', '#6d4c41', '#00838f', '#ad1457'];
const ALARM = '#d1242f';
const LIMIT_STROKE = { dashed: '4 3', width: 1.6 };

/** Scales and axes over image indices (input order) and a y interval. */
function plot(xMax: number, yMin: number, yMax: number, yLabel: string): { x: LinearScale; y: LinearScale; svg: string } {
  const b = plotBox(FRAME);
  const x = linearScale([0, Math.max(1, xMax)], [b.x0, b.x1]);
  const y = linearScale([yMin, yMax], [b.y1, b.y0]);
  const xTicks = niceTicks(0, Math.max(1, xMax), 6).filter((t) => Number.isInteger(t));
  const bg = `<rect width="${FRAME.width}" height="${FRAME.height}" fill="#fff"/>`;
  return { x, y, svg: bg + axes(FRAME, x, y, { xTicks, yTicks: niceTicks(yMin, yMax, 6), xLabel: 'image index (input order)', yLabel, grid: true, border: true }) };
}

function alarmMarker(m: Monitor, x: LinearScale): string {
  if (m.firstAlarmAt === null) return '';
  return vline(FRAME, x, m.firstAlarmAt, `alarm @ ${m.firstAlarmAt}`, ALARM, { class: 'alarm-line', 'font-weight': 'bold', width: 2 });
}

/** Median of the last `w` scores at each point (the window test's view of the run). */
function windowMedians(scores: readonly number[], w: number): number[] {
  return scores.map((_, k) => {
    const win = scores.slice(Math.max(0, k - w + 1), k + 1).sort((a, b) => a - b);
    const mid = win.length >> 1;
    return win.length % 2 ? win[mid]! : (win[mid - 1]! + win[mid]!) / 2;
  });
}

/** Chart of the raw image scores: dots (NG in red), threshold, rolling window median, alarm point. */
function scoreChart(m: Monitor): string {
  const pts = m.points;
  const xMax = pts.length ? pts[pts.length - 1]!.index : 1;
  const values = pts.map((p) => p.score).concat(m.threshold !== undefined ? [m.threshold] : []);
  const lo = values.reduce((a, b) => Math.min(a, b), Infinity);
  const hi = values.reduce((a, b) => Math.max(a, b), -Infinity);
  const pad = (hi - lo) * 0.05 || 1;
  const { x, y, svg } = plot(xMax, lo - pad, hi + pad, 'image score');
  const dots = pts.map((p) => dot(x, y, p.index, p.score, 2.2, p.verdict === 'NG' ? ALARM : '#57606a', { 'fill-opacity': 0.75 })).join('');
  const w = Math.max(1, Math.round(m.settings.window));
  const idx = pts.map((p) => p.index);
  const medians = polyline(x, y, idx, windowMedians(pts.map((p) => p.score), w), '#1f6feb', { width: 1.6, class: 'window-median' });
  const thr = m.threshold !== undefined ? hline(FRAME, y, m.threshold, '', ALARM, { class: 'threshold-line', dashed: '6 4', width: 1 }) : '';
  const items: LegendEntry[] = [{ label: `median of last ${w}`, color: '#1f6feb', line: {} }];
  if (m.threshold !== undefined) items.push({ label: 'NG threshold', color: ALARM, line: { dashed: '6 4' } });
  items.push({ label: 'score (NG red)', color: '#57606a', line: {} });
  return chartSvg('Image scores in input order', svg + thr + dots + medians + alarmMarker(m, x) + legend(FRAME, items, 'right'));
}

/** Chart of the EWMA statistics (score ranks, drift descriptors) with their control limits (+ only when every chart is one-sided). */
function ewmaChart(m: Monitor): string {
  const twoSided = (m.descriptorCharts ?? 'median') === 'median' && m.features.length > 0;
  const envelope = m.descriptorCharts === 'envelope';
  const pts = m.points;
  const xMax = pts.length ? pts[pts.length - 1]!.index : 1;
  let bound = 0;
  for (const p of pts) {
    bound = Math.max(bound, p.ewmaLimit, Math.abs(p.scoreEwma ?? 0), ...p.driftEwma.map(Math.abs));
  }
  bound = (bound || 1) * 1.1;
  const { x, y, svg } = plot(xMax, -bound, bound, 'EWMA (standardised)');
  const idx = pts.map((p) => p.index);
  const limits =
    polyline(x, y, idx, pts.map((p) => p.ewmaLimit), ALARM, { ...LIMIT_STROKE, class: 'control-limit' }) +
    (twoSided ? polyline(x, y, idx, pts.map((p) => -p.ewmaLimit), ALARM, { ...LIMIT_STROKE, class: 'control-limit' }) : '');
  const series: string[] = [];
  const items: LegendEntry[] = [{ label: twoSided ? 'control limits' : 'control limit', color: ALARM, line: { dashed: '4 3' } }];
  const ranked = pts.filter((p) => p.scoreEwma !== undefined);
  if (ranked.length) {
    series.push(polyline(x, y, ranked.map((p) => p.index), ranked.map((p) => p.scoreEwma!), '#111', { width: 2.2, class: 'score-ewma' }));
    items.push({ label: 'image score ranks', color: '#111', line: {} });
  }
  // Features whose series are identical (grayscale: brightness = mean_r = mean_g = mean_b) are drawn once.
  const shown: number[] = [];
  m.features.forEach((name, j) => {
    const twin = shown.find((k) => pts.every((p) => p.driftEwma[k] === p.driftEwma[j]));
    if (twin !== undefined) return;
    shown.push(j);
    const colour = SERIES_COLOURS[shown.length % SERIES_COLOURS.length]!;
    const has = pts.filter((p) => p.driftEwma.length > j);
    series.push(polyline(x, y, has.map((p) => p.index), has.map((p) => p.driftEwma[j]!), colour, { width: 1.6, class: 'drift-ewma' }));
    items.push({ label: envelope ? `${name} beyond envelope` : `${name} robust z`, color: colour, line: {} });
  });
  return chartSvg('EWMA control chart: image score ranks and drift descriptors', svg + limits + series.join('') + alarmMarker(m, x) + legend(FRAME, items.slice(0, 12), 'right'));
}

function chartSvg(title: string, body: string): string {
  return svgRoot(FRAME, title, body, { class: 'control-chart' });
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)} %`;
}

/**
 * The report's monitoring section for a run manifest, or '' when the run has no (valid) `monitor`
 * object (runs written before line monitoring, or with it turned off).
 */
export function renderControlChart(manifest: RunManifest): string {
  const parsed = monitorSchema.safeParse((manifest as RunManifest & { monitor?: unknown }).monitor);
  if (!parsed.success) return '';
  const m = parsed.data;
  const s = m.settings;
  const status = m.alarm
    ? `<p class="monitor-status alarm"><b>ALARM</b> at image ${m.firstAlarmAt}: the population of images has shifted.</p>`
    : `<p class="monitor-status ok"><b>No alarm</b> over ${m.images} images.</p>`;
  const reasons = m.reasons.length ? `<ul class="warnings">${m.reasons.map((r) => `<li>${esc(r)}</li>`).join('')}</ul>` : '';
  const notes = m.notes.length ? `<ul class="muted small">${m.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : '';
  const ng = `NG rate ${pct(m.ngRate.run)} over the run, ${pct(m.ngRate.window)} over the last ${Math.min(m.images, s.window)} images${m.ngRate.expected !== null ? `; expected ${pct(m.ngRate.expected)} from calibration` : ''}.`;
  const sides = m.descriptorCharts === undefined ? `limits ±${s.limit}σ` : `limit +${s.limit}σ (score and envelope charts; ±${s.limit}σ for charts against the training median)`;
  const how = `EWMA λ = ${s.lambda}, ${sides}, exact with start-up; observations clipped at ±${s.clip}; Mann–Whitney window test of the last ${s.window} scores, α = ${s.alpha}. A chart alarms only when the change is also large enough to matter.`;
  const charts = m.points.length ? scoreChart(m) + ewmaChart(m) : '';
  return `<section class="monitor" aria-label="Line monitoring">
<h2>Line monitoring</h2>
${status}
${reasons}
<p class="small">${esc(ng)}</p>
${charts}
<p class="muted small">${esc(how)}</p>
${notes}
</section>`;
}
