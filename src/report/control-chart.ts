/**
 * The line-monitoring section of the HTML report: the run's status (alarm, reasons, NG rate against
 * the expected rate) and two inline SVG control charts over the images in input order — the image
 * scores with the threshold, the window median and the alarm point; and the EWMA statistics (image
 * score ranks and each drift descriptor's robust z) between their control limits. Self-contained SVG
 * (no scripts, no external resources), so the page stays one offline file. The run manifest is
 * untrusted input: the monitor object is validated and every text escaped.
 */

import { z } from 'zod';
import type { RunManifest } from '../export/results.js';
import { escapeHtml as esc } from './escape.js';

const finite = z.number().finite();
const monitorSchema = z.object({
  alarm: z.boolean(),
  firstAlarmAt: z.number().int().nonnegative().nullable(),
  reasons: z.array(z.string()),
  images: z.number().int().nonnegative(),
  ngRate: z.object({ run: finite, window: finite, expected: finite.nullable() }),
  reference: z.boolean(),
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

const W = 920;
const H = 230;
const PAD = { left: 56, right: 150, top: 14, bottom: 34 };
const SERIES_COLOURS = ['#1f6feb', '#b35900', '#7a3fbf', '#0f7b6c', '#c2185b', '#5d6d7e', '#8d6e00', '#2e7d32', '#6d4c41', '#00838f', '#ad1457'];

function num(x: number): string {
  return String(Number(x.toFixed(1)));
}

function label(x: number): string {
  return String(Number(x.toPrecision(3)));
}

/** Linear scale from [d0, d1] to [r0, r1]. */
function scale(d0: number, d1: number, r0: number, r1: number): (x: number) => number {
  const span = d1 - d0 || 1;
  return (x) => r0 + ((x - d0) / span) * (r1 - r0);
}

/** Axes frame with y ticks and an x axis of image indices. */
function frame(xMax: number, yMin: number, yMax: number, yTitle: string): { x: (i: number) => number; y: (v: number) => number; svg: string } {
  const x = scale(0, Math.max(1, xMax), PAD.left, W - PAD.right);
  const y = scale(yMin, yMax, H - PAD.bottom, PAD.top);
  const parts: string[] = [];
  for (let k = 0; k <= 4; k++) {
    const v = yMin + ((yMax - yMin) * k) / 4;
    parts.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${num(y(v))}" y2="${num(y(v))}" stroke="#e3e6ea"/>`);
    parts.push(`<text x="${PAD.left - 6}" y="${num(y(v) + 4)}" text-anchor="end" font-size="11" fill="#555">${label(v)}</text>`);
  }
  for (let k = 0; k <= 5; k++) {
    const i = Math.round((xMax * k) / 5);
    parts.push(`<text x="${num(x(i))}" y="${H - PAD.bottom + 16}" text-anchor="middle" font-size="11" fill="#555">${i}</text>`);
  }
  parts.push(`<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 4}" text-anchor="middle" font-size="11" fill="#333">image index (input order)</text>`);
  parts.push(`<text transform="translate(13 ${(H - PAD.bottom + PAD.top) / 2}) rotate(-90)" text-anchor="middle" font-size="11" fill="#333">${esc(yTitle)}</text>`);
  parts.push(`<rect x="${PAD.left}" y="${PAD.top}" width="${W - PAD.left - PAD.right}" height="${H - PAD.top - PAD.bottom}" fill="none" stroke="#9aa3ad"/>`);
  return { x, y, svg: parts.join('') };
}

function polyline(points: [number, number][], colour: string, extra = ''): string {
  if (points.length === 0) return '';
  return `<polyline fill="none" stroke="${colour}" stroke-width="1.6" ${extra} points="${points.map(([a, b]) => `${num(a)},${num(b)}`).join(' ')}"/>`;
}

function legend(items: [string, string, string?][]): string {
  return items
    .map(([text, colour, dash], k) => {
      const y = PAD.top + 10 + k * 17;
      const x0 = W - PAD.right + 12;
      return `<line x1="${x0}" x2="${x0 + 20}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="2" ${dash ? `stroke-dasharray="${dash}"` : ''}/><text x="${x0 + 26}" y="${y + 4}" font-size="11" fill="#333">${esc(text)}</text>`;
    })
    .join('');
}

function alarmMarker(m: Monitor, x: (i: number) => number): string {
  if (m.firstAlarmAt === null) return '';
  const ax = num(x(m.firstAlarmAt));
  return `<line x1="${ax}" x2="${ax}" y1="${PAD.top}" y2="${H - PAD.bottom}" stroke="#d1242f" stroke-width="2"/><text x="${ax}" y="${PAD.top + 11}" dx="4" font-size="11" font-weight="bold" fill="#d1242f">alarm @ ${m.firstAlarmAt}</text>`;
}

/** Chart of the raw image scores: dots (NG in red), threshold, rolling window median, alarm point. */
function scoreChart(m: Monitor): string {
  const pts = m.points;
  const xMax = pts.length ? pts[pts.length - 1]!.index : 1;
  const values = pts.map((p) => p.score).concat(m.threshold !== undefined ? [m.threshold] : []);
  const lo = values.reduce((a, b) => Math.min(a, b), Infinity);
  const hi = values.reduce((a, b) => Math.max(a, b), -Infinity);
  const pad = (hi - lo) * 0.05 || 1;
  const f = frame(xMax, lo - pad, hi + pad, 'image score');
  const dots = pts
    .map((p) => `<circle cx="${num(f.x(p.index))}" cy="${num(f.y(p.score))}" r="2.2" fill="${p.verdict === 'NG' ? '#d1242f' : '#57606a'}" fill-opacity="0.75"/>`)
    .join('');
  const w = Math.max(1, Math.round(m.settings.window));
  const medians: [number, number][] = pts.map((p, k) => {
    const win = pts.slice(Math.max(0, k - w + 1), k + 1).map((q) => q.score).sort((a, b) => a - b);
    const mid = win.length >> 1;
    return [f.x(p.index), f.y(win.length % 2 ? win[mid]! : (win[mid - 1]! + win[mid]!) / 2)];
  });
  const thr =
    m.threshold !== undefined
      ? `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${num(f.y(m.threshold))}" y2="${num(f.y(m.threshold))}" stroke="#d1242f" stroke-dasharray="6 4"/>`
      : '';
  const items: [string, string, string?][] = [[`median of last ${w}`, '#1f6feb']];
  if (m.threshold !== undefined) items.push(['NG threshold', '#d1242f', '6 4']);
  items.push(['score (NG red)', '#57606a']);
  return svg('Image scores in input order', f.svg + thr + dots + polyline(medians, '#1f6feb') + alarmMarker(m, f.x) + legend(items));
}

/** Chart of the EWMA statistics (score ranks, drift descriptors) with their ± control limits. */
function ewmaChart(m: Monitor): string {
  const pts = m.points;
  const xMax = pts.length ? pts[pts.length - 1]!.index : 1;
  let bound = 0;
  for (const p of pts) {
    bound = Math.max(bound, p.ewmaLimit, Math.abs(p.scoreEwma ?? 0), ...p.driftEwma.map(Math.abs));
  }
  bound = (bound || 1) * 1.1;
  const f = frame(xMax, -bound, bound, 'EWMA (standardised)');
  const upper = polyline(pts.map((p) => [f.x(p.index), f.y(p.ewmaLimit)]), '#d1242f', 'stroke-dasharray="4 3"');
  const lower = polyline(pts.map((p) => [f.x(p.index), f.y(-p.ewmaLimit)]), '#d1242f', 'stroke-dasharray="4 3"');
  const series: string[] = [];
  const items: [string, string, string?][] = [['control limits', '#d1242f', '4 3']];
  if (pts.some((p) => p.scoreEwma !== undefined)) {
    series.push(polyline(pts.filter((p) => p.scoreEwma !== undefined).map((p) => [f.x(p.index), f.y(p.scoreEwma!)]), '#111', 'stroke-width="2.2"'));
    items.push(['image score ranks', '#111']);
  }
  // Features whose series are identical (grayscale: brightness = mean_r = mean_g = mean_b) are drawn once.
  const shown: number[] = [];
  m.features.forEach((name, j) => {
    const twin = shown.find((k) => pts.every((p) => p.driftEwma[k] === p.driftEwma[j]));
    if (twin !== undefined) return;
    shown.push(j);
    const colour = SERIES_COLOURS[shown.length % SERIES_COLOURS.length]!;
    series.push(polyline(pts.filter((p) => p.driftEwma.length > j).map((p) => [f.x(p.index), f.y(p.driftEwma[j]!)]), colour));
    items.push([`${name} robust z`, colour]);
  });
  return svg('EWMA control chart: image score ranks and drift descriptors', f.svg + upper + lower + series.join('') + alarmMarker(m, f.x) + legend(items.slice(0, 12)));
}

function svg(title: string, body: string): string {
  return `<svg class="control-chart" role="img" aria-label="${esc(title)}" viewBox="0 0 ${W} ${H}" width="100%" style="max-width:${W}px" xmlns="http://www.w3.org/2000/svg"><title>${esc(title)}</title><rect width="${W}" height="${H}" fill="#fff"/>${body}</svg>`;
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
  const how = `EWMA λ = ${s.lambda}, limits ±${s.limit}σ (exact, start-up included), observations clipped at ±${s.clip}; Mann–Whitney window test of the last ${s.window} scores, α = ${s.alpha}.`;
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
