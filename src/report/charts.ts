/**
 * The charts of the HTML QA report, as inline SVG (self-contained, no script, no network): a
 * histogram of normalised image scores with the threshold and band lines, the ROC curve when labels
 * are known, and a per-defect-type table of verdict counts and rates.
 */

import type { ImageResult, RunManifest } from '../export/results.js';
import { auroc } from '../metrics/auroc.js';
import { rocCurve } from '../metrics/roc.js';
import { verdictQuality, type VerdictCounts, type VerdictSetQuality } from '../metrics/verdicts.js';
import { operatingCurve, ratesAt, shippedRowIndex } from '../metrics/operating-curve.js';
import { escapeHtml } from './escape.js';
import { axes, bar, legend, linearScale, niceStep, niceTicks, plotBox, polyline, svgRoot, vline, type Frame } from './svg.js';

/** Label of good parts in evaluation runs (the loaders' convention). */
const GOOD = 'good';
/** Histogram series: good parts, then defect types; or all scores when the run has no labels. */
const GOOD_COLOR = '#1a7f37';
const ALL_COLOR = '#57606a';
const DEFECT_COLORS = ['#cf222e', '#8250df', '#bc4c00', '#0969da', '#bf3989', '#4d2d00', '#1b7c83', '#953800'];
const THRESHOLD_COLOR = '#1f2328';
const BAND_COLOR = '#b7791f';

/** Bin widths tried in order (normalised units); each divides 0.5, so the threshold is a bin edge. */
const BIN_WIDTHS = [0.05, 0.1, 0.25, 0.5];
/** At most this many bins; wider spans (outlier scores far above 1) get wider, whole-number bins. */
const MAX_BINS = 40;

/** A histogram of normalised scores per series, over shared bins. */
export interface ScoreHistogram {
  /** Left edge of the first bin. */
  lo: number;
  /** Bin width. */
  width: number;
  /** Number of bins. */
  bins: number;
  /** One series per group ('good', each defect type; or 'all'), in display order, with counts per bin. */
  series: { name: string; counts: number[] }[];
}

/** Whether a run's results carry ground-truth labels (all of them). */
function labelled(results: readonly ImageResult[]): boolean {
  return results.length > 0 && results.every((r) => r.label !== undefined);
}

/**
 * Bins normalised scores: bins of width 0.05 (wider when scores span more than 2 units) from
 * min(0, lowest score) to max(1, highest score), aligned so 0.5 — the threshold — is an edge. A score
 * on an edge belongs to the bin on its right, except the top edge, which closes the last bin (scores
 * written by older versions, whose normalisation clamped at the calibration maximum, sit exactly at 1).
 */
export function scoreHistogram(results: readonly ImageResult[]): ScoreHistogram {
  const scores = results.map((r) => r.normalizedScore).filter((v) => Number.isFinite(v));
  const min = Math.min(0, ...scores);
  const max = Math.max(1, ...scores);
  let width = BIN_WIDTHS.find((w) => Math.ceil(max / w) - Math.floor(min / w) < MAX_BINS);
  if (width === undefined) width = Math.max(1, niceStep((max - min) / (MAX_BINS - 2)));
  const first = Math.floor(min / width);
  const bins = Math.max(1, Math.ceil(Math.round((max / width) * 1e9) / 1e9) - first);
  const lo = first * width;
  const binOf = (v: number) => Math.min(bins - 1, Math.max(0, Math.floor(Math.round(((v - lo) / width) * 1e9) / 1e9)));
  const groups = labelled(results)
    ? [GOOD, ...[...new Set(results.map((r) => r.label!).filter((l) => l !== GOOD))].sort()].filter((g) =>
        results.some((r) => r.label === g),
      )
    : ['all'];
  const series = groups.map((name) => ({ name, counts: new Array<number>(bins).fill(0) }));
  for (const r of results) {
    if (!Number.isFinite(r.normalizedScore)) continue;
    const s = series[groups.indexOf(groups[0] === 'all' ? 'all' : r.label!)]!;
    s.counts[binOf(r.normalizedScore)]!++;
  }
  return { lo, width, bins, series };
}

function seriesColor(name: string, index: number): string {
  if (name === GOOD) return GOOD_COLOR;
  if (name === 'all') return ALL_COLOR;
  return DEFECT_COLORS[(index - 1 + DEFECT_COLORS.length) % DEFECT_COLORS.length]!;
}

const HIST_FRAME: Frame = { width: 600, height: 260, margin: { top: 20, right: 130, bottom: 38, left: 46 } };
const ROC_FRAME: Frame = { width: 300, height: 260, margin: { top: 20, right: 16, bottom: 38, left: 46 } };

/** Stacked histogram of normalised scores per series, with the threshold (0.5) and band lines. */
export function histogramSvg(h: ScoreHistogram, band: { low: number; high: number } | undefined): string {
  const hi = h.lo + h.bins * h.width;
  const x = linearScale([h.lo, hi], [plotBox(HIST_FRAME).x0, plotBox(HIST_FRAME).x1]);
  let peak = 1;
  for (let b = 0; b < h.bins; b++) peak = Math.max(peak, h.series.reduce((a, s) => a + s.counts[b]!, 0));
  const yTicks = niceTicks(0, peak, 4).filter((t) => Number.isInteger(t));
  const yMax = Math.max(peak, yTicks[yTicks.length - 1] ?? 1);
  const y = linearScale([0, yMax], [plotBox(HIST_FRAME).y1, plotBox(HIST_FRAME).y0]);
  const parts: string[] = [axes(HIST_FRAME, x, y, { yTicks, xLabel: 'normalised image score (0.5 = threshold)', yLabel: 'parts', grid: true })];
  for (let b = 0; b < h.bins; b++) {
    let base = 0;
    h.series.forEach((s, i) => {
      const c = s.counts[b]!;
      if (c === 0) return;
      const x0 = h.lo + b * h.width;
      parts.push(
        bar(x, y, { x0, x1: x0 + h.width, y0: base, y1: base + c }, seriesColor(s.name, i), {
          class: 'hist-bar',
          'data-series': s.name,
          'data-bin': b,
          'data-count': c,
        }),
      );
      base += c;
    });
  }
  parts.push(vline(HIST_FRAME, x, 0.5, 'threshold', THRESHOLD_COLOR, { class: 'threshold-line', 'data-value': 0.5 }));
  if (band) {
    parts.push(vline(HIST_FRAME, x, band.low, '', BAND_COLOR, { class: 'band-line', 'data-value': band.low, dashed: 1 }));
    parts.push(vline(HIST_FRAME, x, band.high, '', BAND_COLOR, { class: 'band-line', 'data-value': band.high, dashed: 1 }));
  }
  parts.push(legend(HIST_FRAME, h.series.map((s, i) => ({ label: s.name, color: seriesColor(s.name, i) })), 'right'));
  return svgRoot(HIST_FRAME, 'Histogram of normalised image scores', parts.join(''), {
    class: 'chart chart-histogram',
    'data-bin-width': h.width,
    'data-lo': h.lo,
  });
}

/** ROC curve of raw image scores, with the diagonal and the shipped threshold's operating point. */
export function rocSvg(results: readonly ImageResult[]): string {
  const scores = results.map((r) => r.imageScore);
  const labels = results.map((r) => r.label !== GOOD);
  const curve = rocCurve(scores, labels);
  const area = auroc(scores, labels);
  const b = plotBox(ROC_FRAME);
  const x = linearScale([0, 1], [b.x0, b.x1]);
  const y = linearScale([0, 1], [b.y1, b.y0]);
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  // Where the model operates: NG = normalised score above 0.5, as its verdicts do without a band.
  const good = results.filter((r) => r.label === GOOD);
  const bad = results.filter((r) => r.label !== GOOD);
  const fpr = good.filter((r) => r.normalizedScore > 0.5).length / good.length;
  const tpr = bad.filter((r) => r.normalizedScore > 0.5).length / bad.length;
  const body = [
    axes(ROC_FRAME, x, y, { xTicks: ticks, yTicks: ticks, xLabel: 'false-positive rate', yLabel: 'true-positive rate', grid: true }),
    `<line x1="${x.at(0)}" y1="${y.at(0)}" x2="${x.at(1)}" y2="${y.at(1)}" stroke="#d0d7de" stroke-dasharray="4 3"/>`,
    polyline(x, y, curve.fpr, curve.tpr, '#0969da', { class: 'roc-curve', 'data-points': curve.fpr.length }),
    `<circle class="operating-point" cx="${x.at(fpr)}" cy="${y.at(tpr)}" r="4" fill="${THRESHOLD_COLOR}" data-fpr="${fpr}" data-tpr="${tpr}"><title>threshold: FPR ${fpr.toFixed(3)}, TPR ${tpr.toFixed(3)}</title></circle>`,
    `<text x="${b.x1 - 4}" y="${b.y1 - 8}" text-anchor="end" fill="#0969da">AUROC ${area.toFixed(3)}</text>`,
  ].join('');
  return svgRoot(ROC_FRAME, `ROC curve (image AUROC ${area.toFixed(3)})`, body, { class: 'chart chart-roc', 'data-auroc': area });
}

function pct(v: number): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '–';
}

function countCells(c: VerdictCounts): string {
  return `<td>${c.OK}</td><td>${c.NG}</td><td>${c.UNCERTAIN}</td>`;
}

/** Per-defect-type table: counts of each verdict and the escape / false-reject rates and UNCERTAIN share. */
export function verdictTable(results: readonly ImageResult[]): string {
  const q = verdictQuality(results.map((r) => ({ label: r.label!, anomalous: r.label !== GOOD, verdict: r.verdict })));
  const defectRow = (name: string, s: VerdictSetQuality) =>
    `<tr data-type="${escapeHtml(name)}"><th>${escapeHtml(name)}</th><td>${s.nDefect}</td>${countCells(s.confusion.defect)}` +
    `<td>${pct(s.escapeRate)}</td><td>–</td><td>${pct(s.confusion.defect.UNCERTAIN / s.nDefect)}</td></tr>`;
  const rows = [
    `<tr data-type="good"><th>good</th><td>${q.nGood}</td>${countCells(q.confusion.good)}<td>–</td>` +
      `<td>${pct(q.falseRejectRate)}</td><td>${pct(q.confusion.good.UNCERTAIN / q.nGood)}</td></tr>`,
    ...Object.entries(q.perDefect).map(([name, s]) => defectRow(name, s)),
    ...(Object.keys(q.perDefect).length > 1 ? [defectRow('all defects', q)] : []),
  ];
  return `<table class="verdict-table">
<thead><tr><th>type</th><th>parts</th><th>OK</th><th>NG</th><th>UNCERTAIN</th><th>escape</th><th>false reject</th><th>uncertain</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>
<p class="muted small">Escape: defective parts judged OK. False reject: good parts judged NG. UNCERTAIN parts go to a person.</p>`;
}

/**
 * The operating curve measured on the labelled run — the escape rate at false-reject rates 0 … 10 % —
 * with the shipped threshold's own row placed where its threshold falls.
 */
export function operatingCurveTable(results: readonly ImageResult[], threshold: number): string {
  const good = results.filter((r) => r.label === GOOD).map((r) => r.imageScore);
  const bad = results.filter((r) => r.label !== GOOD).map((r) => r.imageScore);
  const row = (name: string, fr: number, esc: number, t: number, cls = ''): string =>
    `<tr${cls ? ` class="${cls}"` : ''} data-threshold="${t}"><th>${name}</th><td>${pct(fr)}</td><td>${pct(esc)}</td><td>${t.toPrecision(4)}</td></tr>`;
  const points = operatingCurve(good, bad);
  const html = points.map((p) => row(`at ${pct(p.falseRejectRate)}`, p.measuredFalseRejectRate, p.escapeRate, p.threshold));
  const rates = ratesAt(good, bad, threshold);
  const shipped = row('shipped', rates.falseRejectRate, rates.escapeRate, threshold, 'shipped');
  html.splice(shippedRowIndex(points, threshold), 0, shipped);
  return `<table class="verdict-table operating-curve">
<thead><tr><th>operating point</th><th>false reject</th><th>escape</th><th>threshold</th></tr></thead>
<tbody>
${html.join('\n')}
</tbody></table>
<p class="muted small">Measured on this run. <code>partscan calibrate --false-reject r</code> moves the threshold without refitting.</p>`;
}

/** CSS for the chart section (added to the report's stylesheet). */
export const CHART_CSS = `
.charts { display:flex; flex-wrap:wrap; gap:16px; margin-top:14px; align-items:flex-start; }
.charts figure.chart-box { margin:0; background:var(--card); border:1px solid var(--line); border-radius:8px; padding:8px; max-height:none; overflow:visible; }
.charts figure.chart-box figcaption { position:static; background:none; color:var(--muted); font-size:12px; padding:0 0 4px; }
table.verdict-table { border-collapse:collapse; font-size:12.5px; font-variant-numeric:tabular-nums; }
table.verdict-table th, table.verdict-table td { padding:3px 10px; border-bottom:1px solid var(--line); text-align:right; }
table.verdict-table th:first-child { text-align:left; }
table.operating-curve tr.shipped { font-weight:600; background:#fff8c5; }
`;

/**
 * The chart section of the report: histogram always (when there are results), ROC and the
 * per-defect table when every result is labelled and both good and defective parts are present.
 */
export function renderCharts(manifest: RunManifest): string {
  const results = manifest.results;
  if (results.length === 0) return '';
  const boxes = [
    `<figure class="chart-box"><figcaption>Normalised image scores</figcaption>${histogramSvg(scoreHistogram(results), manifest.model.thresholds.band)}</figure>`,
  ];
  const withLabels = labelled(results);
  const hasGood = results.some((r) => r.label === GOOD);
  const hasDefect = results.some((r) => r.label !== undefined && r.label !== GOOD);
  if (withLabels && hasGood && hasDefect) boxes.push(`<figure class="chart-box"><figcaption>ROC</figcaption>${rocSvg(results)}</figure>`);
  if (withLabels) boxes.push(`<figure class="chart-box"><figcaption>Verdicts per defect type</figcaption>${verdictTable(results)}</figure>`);
  if (withLabels && hasGood && hasDefect) {
    boxes.push(`<figure class="chart-box"><figcaption>Operating curve</figcaption>${operatingCurveTable(results, manifest.model.thresholds.image)}</figure>`);
  }
  return `<section class="charts" aria-label="Charts">\n${boxes.join('\n')}\n</section>`;
}
