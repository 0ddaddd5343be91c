/**
 * Generic inline-SVG primitives for report charts: a plot frame with linear scales, axes with tick
 * labels, bars, polylines, reference lines and a legend. Strings only, no DOM and no external
 * resources, so a chart is a few kilobytes inside a self-contained page. Chart-specific code
 * (histograms, ROC, control charts) composes these; it lives elsewhere (charts.ts, control-chart.ts).
 */

import { escapeHtml } from './escape.js';

/** A linear map from data values to pixels. */
export interface LinearScale {
  /** Data interval [lo, hi]. */
  domain: readonly [number, number];
  /** Pixel interval the domain maps onto (may be reversed, as for a y axis). */
  range: readonly [number, number];
  /** Pixel position of a data value. */
  at(value: number): number;
}

/** A linear scale; a zero-width domain maps everything to the middle of the range. */
export function linearScale(domain: readonly [number, number], range: readonly [number, number]): LinearScale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0;
  return {
    domain,
    range,
    at: (v) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0)),
  };
}

/** The smallest round step (1, 2 or 5 × 10^k) of at least `raw` (> 0). */
export function niceStep(raw: number): number {
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
}

/**
 * About `count` round tick values (steps of 1, 2 or 5 × 10^k) covering [lo, hi], inside the interval.
 */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi)) || hi <= lo) return Number.isFinite(lo) ? [lo] : [];
  const step = niceStep((hi - lo) / Math.max(1, count));
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Short tick label: up to 3 significant digits, no trailing zeros. */
export function tickLabel(v: number): string {
  return String(Number(v.toPrecision(3)));
}

/** Size of a chart and the margins around its plot area, in pixels. */
export interface Frame {
  width: number;
  height: number;
  margin: { top: number; right: number; bottom: number; left: number };
}

/** The plot area of a frame: its pixel box. */
export function plotBox(f: Frame): { x0: number; x1: number; y0: number; y1: number } {
  return { x0: f.margin.left, x1: f.width - f.margin.right, y0: f.margin.top, y1: f.height - f.margin.bottom };
}

/** Formats a pixel coordinate compactly (one decimal). */
function px(v: number): string {
  return String(Math.round(v * 10) / 10);
}

/** Extra attributes for an element (`data-*` for tests and tooltips); values are escaped. */
export type Attrs = Record<string, string | number>;

/**
 * How a line is stroked: `dashed` is a dash pattern, or any other truthy value for the default
 * "4 3"; `width` overrides the primitive's default stroke width.
 */
export interface Stroke {
  dashed?: number | string;
  width?: number;
}

function strokeAttrs(s: Stroke, width: number): string {
  const dash = s.dashed ? ` stroke-dasharray="${escapeHtml(typeof s.dashed === 'string' ? s.dashed : '4 3')}"` : '';
  return ` stroke-width="${s.width ?? width}"${dash}`;
}

function attrs(a: Attrs | undefined): string {
  if (!a) return '';
  return Object.entries(a)
    .map(([k, v]) => ` ${k}="${escapeHtml(String(v))}"`)
    .join('');
}

/** The outer `<svg>` element, scalable to its container, with an accessible title. */
export function svgRoot(f: Frame, title: string, body: string, a?: Attrs): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" height="${f.height}" ` +
    `role="img" aria-label="${escapeHtml(title)}"${attrs(a)} style="max-width:100%;height:auto;font:11px system-ui,sans-serif">` +
    `<title>${escapeHtml(title)}</title>${body}</svg>`
  );
}

/** Axes along the bottom and left of the plot area, with tick marks, tick labels and axis titles. */
export function axes(
  f: Frame,
  x: LinearScale,
  y: LinearScale,
  opts: { xTicks?: number[]; yTicks?: number[]; xLabel?: string; yLabel?: string; grid?: boolean; border?: boolean } = {},
): string {
  const b = plotBox(f);
  const xt = opts.xTicks ?? niceTicks(x.domain[0], x.domain[1]);
  const yt = opts.yTicks ?? niceTicks(y.domain[0], y.domain[1]);
  const parts: string[] = [];
  if (opts.grid) {
    for (const t of yt) parts.push(`<line x1="${px(b.x0)}" x2="${px(b.x1)}" y1="${px(y.at(t))}" y2="${px(y.at(t))}" stroke="#eaeef2"/>`);
  }
  if (opts.border) {
    parts.push(`<rect x="${px(b.x0)}" y="${px(b.y0)}" width="${px(b.x1 - b.x0)}" height="${px(b.y1 - b.y0)}" fill="none" stroke="#9aa3ad"/>`);
  }
  parts.push(`<line class="axis" x1="${px(b.x0)}" x2="${px(b.x1)}" y1="${px(b.y1)}" y2="${px(b.y1)}" stroke="#57606a"/>`);
  parts.push(`<line class="axis" x1="${px(b.x0)}" x2="${px(b.x0)}" y1="${px(b.y0)}" y2="${px(b.y1)}" stroke="#57606a"/>`);
  for (const t of xt) {
    const xp = px(x.at(t));
    parts.push(`<line x1="${xp}" x2="${xp}" y1="${px(b.y1)}" y2="${px(b.y1 + 4)}" stroke="#57606a"/>`);
    parts.push(`<text class="tick-x" x="${xp}" y="${px(b.y1 + 15)}" text-anchor="middle" fill="#57606a">${tickLabel(t)}</text>`);
  }
  for (const t of yt) {
    const yp = px(y.at(t));
    parts.push(`<line x1="${px(b.x0 - 4)}" x2="${px(b.x0)}" y1="${yp}" y2="${yp}" stroke="#57606a"/>`);
    parts.push(`<text class="tick-y" x="${px(b.x0 - 6)}" y="${yp}" dy="0.32em" text-anchor="end" fill="#57606a">${tickLabel(t)}</text>`);
  }
  if (opts.xLabel) {
    parts.push(`<text x="${px((b.x0 + b.x1) / 2)}" y="${px(f.height - 4)}" text-anchor="middle" fill="#1f2328">${escapeHtml(opts.xLabel)}</text>`);
  }
  if (opts.yLabel) {
    const cy = (b.y0 + b.y1) / 2;
    parts.push(`<text x="12" y="${px(cy)}" transform="rotate(-90 12 ${px(cy)})" text-anchor="middle" fill="#1f2328">${escapeHtml(opts.yLabel)}</text>`);
  }
  return `<g class="axes">${parts.join('')}</g>`;
}

/** A bar from data (x0..x1, y0..y1) through the scales; zero-height bars are omitted. */
export function bar(x: LinearScale, y: LinearScale, v: { x0: number; x1: number; y0: number; y1: number }, fill: string, a?: Attrs): string {
  const left = Math.min(x.at(v.x0), x.at(v.x1));
  const right = Math.max(x.at(v.x0), x.at(v.x1));
  const top = Math.min(y.at(v.y0), y.at(v.y1));
  const bottom = Math.max(y.at(v.y0), y.at(v.y1));
  if (bottom - top <= 0) return '';
  return `<rect x="${px(left)}" y="${px(top)}" width="${px(Math.max(0.5, right - left - 1))}" height="${px(bottom - top)}" fill="${fill}"${attrs(a)}/>`;
}

/** A polyline through data points; nothing when there are none. */
export function polyline(x: LinearScale, y: LinearScale, xs: readonly number[], ys: readonly number[], stroke: string, a?: Attrs & Stroke): string {
  if (xs.length === 0) return '';
  const pts = xs.map((v, i) => `${px(x.at(v))},${px(y.at(ys[i]!))}`).join(' ');
  const { dashed, width, ...rest } = a ?? {};
  return `<polyline points="${pts}" fill="none" stroke="${stroke}"${strokeAttrs({ dashed, width }, 2)} stroke-linejoin="round"${attrs(rest)}/>`;
}

/** A dot (scatter point) at a data point. */
export function dot(x: LinearScale, y: LinearScale, vx: number, vy: number, radius: number, fill: string, a?: Attrs): string {
  return `<circle cx="${px(x.at(vx))}" cy="${px(y.at(vy))}" r="${radius}" fill="${fill}"${attrs(a)}/>`;
}

/** A labelled reference line: a group with the line (from, to) and its label text. */
function refLine(from: [string, string], to: [string, string], labelAt: string, label: string, stroke: string, a?: Attrs & Stroke): string {
  const { dashed, width, ...rest } = a ?? {};
  return (
    `<g${attrs(rest)}><line x1="${from[0]}" x2="${to[0]}" y1="${from[1]}" y2="${to[1]}" stroke="${stroke}"${strokeAttrs({ dashed, width }, 1.5)}/>` +
    `<text ${labelAt} fill="${stroke}">${escapeHtml(label)}</text></g>`
  );
}

/** A vertical reference line at data value `v` across the plot area, labelled at the top. */
export function vline(f: Frame, x: LinearScale, v: number, label: string, stroke: string, a?: Attrs & Stroke): string {
  const b = plotBox(f);
  const xp = px(x.at(v));
  return refLine([xp, px(b.y0)], [xp, px(b.y1)], `x="${xp}" y="${px(b.y0 - 3)}" text-anchor="middle"`, label, stroke, a);
}

/** A horizontal reference line at data value `v` across the plot area, labelled at the right. */
export function hline(f: Frame, y: LinearScale, v: number, label: string, stroke: string, a?: Attrs & Stroke): string {
  const b = plotBox(f);
  const yp = px(y.at(v));
  return refLine([px(b.x0), yp], [px(b.x1), yp], `x="${px(b.x1 + 3)}" y="${yp}" dy="0.32em"`, label, stroke, a);
}

/** One legend row: a coloured swatch (areas, dots) or a short line sample (series, limits). */
export interface LegendEntry {
  label: string;
  color: string;
  /** Draw a line sample instead of a swatch, stroked like the series it names. */
  line?: Stroke;
}

/**
 * A legend, one row per entry: inside the plot area at its top right, or in the right margin.
 */
export function legend(f: Frame, entries: readonly LegendEntry[], where: 'inside' | 'right' = 'inside'): string {
  const b = plotBox(f);
  const sample = entries.some((e) => e.line) ? 20 : 10;
  // Offset of the samples' left edge from the plot's right edge (negative: into the margin).
  const w = where === 'right' ? -10 : Math.max(...entries.map((e) => e.label.length), 4) * 6.2 + sample + 12;
  const rows = entries
    .map((e, i) => {
      const y = b.y0 + 6 + i * 15;
      const mark = e.line
        ? `<line x1="${px(b.x1 - w)}" x2="${px(b.x1 - w + sample)}" y1="${px(y + 5)}" y2="${px(y + 5)}" stroke="${e.color}"${strokeAttrs(e.line, 2)}/>`
        : `<rect x="${px(b.x1 - w)}" y="${px(y)}" width="10" height="10" fill="${e.color}"/>`;
      return `${mark}<text x="${px(b.x1 - w + sample + 4)}" y="${px(y + 5)}" dy="0.32em" fill="#1f2328">${escapeHtml(e.label)}</text>`;
    })
    .join('');
  return `<g class="legend">${rows}</g>`;
}
