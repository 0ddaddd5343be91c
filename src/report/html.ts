/**
 * The HTML QA report: one self-contained page per run for the people who check the parts — every
 * image with its photo, heatmap overlay and defect mask side by side, its verdict and its regions,
 * sorted worst first, filterable by verdict. No external resources and no network: the page works
 * from a USB stick on an offline shop-floor PC (a Content-Security-Policy forbids anything else).
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseOptions } from '../options/parse.js';
import { reportOptionsSchema } from '../options/schemas.js';
import { readRunManifest, type ImageResult, type RunManifest } from '../export/results.js';
import type { Thresholds, Verdict } from '../postprocess/thresholds.js';
import { ensureOutputDir, writeFileAtomic } from '../util/atomic-write.js';
import { readRegularFile } from '../util/regular-file.js';
import { CHART_CSS, renderCharts } from './charts.js';
import { renderControlChart } from './control-chart.js';
import { escapeHtml } from './escape.js';
import { renderReviewControls, renderReviewData, renderReviewToolbar, reviewCardAttributes, REVIEW_CSS, REVIEW_SCRIPT } from './review-controls.js';

/** Options for {@link writeReport}. */
export interface ReportOptions {
  /** Page title (default "partscan QA report — <run folder name>"). */
  title?: string;
  /** Output file (default `<runDir>/report.html`). */
  out?: string;
  /**
   * Images are inlined as data: URIs while their files total at most this many bytes (default
   * {@link DEFAULT_INLINE_BUDGET}); above it they are linked relatively instead.
   */
  inlineBudgetBytes?: number;
}

/**
 * Default inline budget: 32 MiB of image files (≈ 43 MB of base64 in the page). Up to there a single
 * file that can be mailed or archived is worth it; beyond it browsers get sluggish parsing the page,
 * so large runs link their images relatively (the report then has to stay next to its run folder).
 */
export const DEFAULT_INLINE_BUDGET = 32 * 1024 * 1024;

/** The image slots of a part card. */
export type ImageKind = 'original' | 'overlay' | 'mask';

/** The image kinds shown per part, in display order, with their captions. */
const IMAGE_KINDS: readonly (readonly [ImageKind, string])[] = [
  ['original', 'Original'],
  ['overlay', 'Overlay'],
  ['mask', 'Mask'],
];


const MIME: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
};

export { escapeHtml };

/** An image slot with something to show. */
export interface LoadableImage {
  /** URL (data: URI or relative path). */
  src: string;
}

/** An image slot without an image. */
export interface MissingImage {
  /** Why there is no image, shown as a placeholder. */
  missing: string;
}

/** What the page shows for one image slot: a URL to load, or why there is none. */
export type ImageSource = LoadableImage | MissingImage;

/** Image sources per result (same order as the manifest's results) and kind. */
export type ReportImages = ReadonlyArray<Partial<Record<ImageKind, ImageSource>>>;

/** Short, readable number: 4 significant digits, exponent form only for very large/small values. */
function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}

const VERDICTS: readonly Verdict[] = ['NG', 'UNCERTAIN', 'OK'];

function verdictBadge(v: Verdict): string {
  return `<span class="badge badge-${v.toLowerCase()}">${v}</span>`;
}

function describeDecision(t: Thresholds): string {
  return t.band
    ? `OK below ${fmt(t.band.low)} · UNCERTAIN ${fmt(t.band.low)}–${fmt(t.band.high)} · NG above ${fmt(t.band.high)}`
    : 'binary: NG above 0.5, else OK';
}

/** Rows for what the thresholds promise (the operating point recorded at fit or calibrate). */
function renderOperatingPoint(t: Thresholds): string {
  const op = t.operatingPoint;
  if (!op) return '';
  const p = (r: number): string => `${(100 * r).toFixed(r > 0 && r < 0.00995 ? 2 : 1)}%`;
  return [
    `<tr class="operating-point" data-target="${op.falseRejectTarget}"><th>False-reject target</th><td>${p(op.falseRejectTarget)}: estimated ${p(op.image.rate)} <span class="muted">(95% bound ${p(op.image.upper95)}, from ${op.goodScores.used} out-of-sample good scores)</span></td></tr>`,
    `<tr><th>Good parts showing a region</th><td>estimated ${p(op.pixel.rate)} <span class="muted">(95% bound ${p(op.pixel.upper95)})</span></td></tr>`,
    ...(op.escape ? [`<tr><th>Escapes on labelled defects</th><td>${p(op.escape.rate)} <span class="muted">(95% interval ${p(op.escape.lower95)}–${p(op.escape.upper95)}, ${op.escape.defects} defects)</span></td></tr>`] : []),
    ...(op.reviewBand ? [`<tr><th>Review band</th><td>UNCERTAIN from ${fmt(op.reviewBand.threshold)} <span class="muted">(false-reject rate ${p(op.reviewBand.falseRejectRate)})</span> to the image threshold</td></tr>`] : []),
  ].join('\n');
}

function renderThresholds(t: Thresholds): string {
  return `<table class="kv">
<tr><th>Image threshold</th><td>${fmt(t.image)} <span class="muted">(${escapeHtml(t.method.image)})</span></td></tr>
${renderOperatingPoint(t)}
<tr><th>Pixel threshold</th><td>${fmt(t.pixel)} <span class="muted">(${escapeHtml(t.method.pixel)})</span></td></tr>
<tr><th>Image score span</th><td>${fmt(t.imageStats.min)} … ${fmt(t.imageStats.max)}</td></tr>
<tr><th>Pixel score span</th><td>${fmt(t.pixelStats.min)} … ${fmt(t.pixelStats.max)}</td></tr>
<tr><th>Decision (normalised)</th><td>${escapeHtml(describeDecision(t))}</td></tr>
</table>`;
}

/** Rows shown per region table; the rest are counted (results.json has them all). */
const MAX_REGION_ROWS = 10;

function renderRegions(r: ImageResult): string {
  if (r.regions.length === 0) return '<p class="muted small">No regions above the pixel threshold.</p>';
  const rows = r.regions
    .slice(0, MAX_REGION_ROWS)
    .map(
      (g) =>
        `<tr><td>${g.id}</td><td>${g.areaPx}</td><td>${fmt(g.areaPercent)}</td>` +
        `<td>${g.bbox.x}, ${g.bbox.y}, ${g.bbox.width}×${g.bbox.height}</td>` +
        `<td>${fmt(g.peakScore)}</td><td>${fmt(g.meanScore)}</td></tr>`,
    )
    .join('\n');
  const more =
    r.regions.length > MAX_REGION_ROWS
      ? `<p class="muted small">… and ${r.regions.length - MAX_REGION_ROWS} more (see results.json).</p>`
      : '';
  return `<table class="regions">
<thead><tr><th>#</th><th>Area px</th><th>Area %</th><th>Bbox x, y, w×h</th><th>Peak</th><th>Mean</th></tr></thead>
<tbody>
${rows}
</tbody></table>${more}`;
}

function renderCard(r: ImageResult, rank: number, images: Partial<Record<ImageKind, ImageSource>>, index: number): string {
  const name = r.file.split(/[\\/]/).pop() || r.file;
  const figures = IMAGE_KINDS.map(([kind, caption]) => {
    const source = images[kind];
    const body =
      source && 'src' in source
        ? `<img src="${escapeHtml(source.src)}" alt="${escapeHtml(`${caption} of ${name}`)}" data-kind="${kind}">`
        : `<div class="placeholder">${escapeHtml(source?.missing ?? 'not exported')}</div>`;
    return `<figure style="aspect-ratio: ${r.width} / ${r.height}">${body}<figcaption>${caption}</figcaption></figure>`;
  }).join('\n');
  const extras = [
    r.label !== undefined ? `<span class="chip">label: ${escapeHtml(r.label)}</span>` : '',
    r.drift?.flag ? `<span class="chip chip-warn" title="drift score ${fmt(r.drift.score)}">input drift</span>` : '',
  ].join('');
  const warnings = r.warnings?.length
    ? `<ul class="warnings">${r.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul>`
    : '';
  return `<article class="card" data-verdict="${r.verdict}" data-file="${escapeHtml(r.file)}"${reviewCardAttributes(r, index)}>
<header class="card-head">
<span class="rank">#${rank}</span>
<div class="title"><h2 title="${escapeHtml(r.file)}">${escapeHtml(name)}</h2><div class="path muted small">${escapeHtml(r.file)}</div></div>
<div class="scores"><span>score <b>${fmt(r.imageScore)}</b></span><span>normalised <b>${fmt(r.normalizedScore)}</b></span><span class="muted">${r.width}×${r.height}</span></div>
${verdictBadge(r.verdict)}
</header>
${extras ? `<div class="chips">${extras}</div>` : ''}
<div class="images">
${figures}
</div>
<details class="region-details"${r.regions.length ? ' open' : ''}><summary>${r.regions.length} region${r.regions.length === 1 ? '' : 's'}</summary>
${renderRegions(r)}
</details>
${warnings}
${renderReviewControls(name)}
</article>`;
}

const CSS = `
:root { --ok:#1a7f37; --ng:#cf222e; --unc:#b7791f; --bg:#f6f7f9; --card:#fff; --ink:#1f2328; --muted:#656d76; --line:#d8dee4; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; color:var(--ink); background:var(--bg); }
header.page { padding:20px 28px 12px; background:var(--card); border-bottom:1px solid var(--line); }
h1 { margin:0 0 4px; font-size:20px; }
.meta { color:var(--muted); font-size:13px; }
.overview { display:grid; grid-template-columns: minmax(260px, 1fr) minmax(320px, 1.4fr); gap:16px; margin-top:14px; }
.stats { display:grid; grid-template-columns: repeat(auto-fit, minmax(88px, 1fr)); gap:8px; align-content:start; }
.stat { background:var(--bg); border:1px solid var(--line); border-radius:8px; padding:8px 10px; }
.stat b { display:block; font-size:22px; }
.stat.ng b { color:var(--ng); } .stat.ok b { color:var(--ok); } .stat.unc b { color:var(--unc); }
table.kv { border-collapse:collapse; font-size:13px; }
table.kv th { text-align:left; font-weight:600; padding:2px 12px 2px 0; color:var(--muted); }
table.kv td { padding:2px 0; }
.toolbar { position:sticky; top:0; z-index:5; display:flex; flex-wrap:wrap; gap:8px; align-items:center; padding:10px 28px; background:rgba(246,247,249,.95); border-bottom:1px solid var(--line); backdrop-filter: blur(4px); }
.toolbar button { font:inherit; padding:5px 12px; border:1px solid var(--line); border-radius:999px; background:var(--card); cursor:pointer; }
.toolbar button[aria-pressed="true"] { background:var(--ink); color:#fff; border-color:var(--ink); }
.toolbar input { font:inherit; padding:5px 10px; border:1px solid var(--line); border-radius:6px; min-width:220px; margin-left:auto; }
.toolbar .shown { color:var(--muted); }
main { padding:16px 28px 40px; display:grid; gap:16px; max-width:1500px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; display:grid; gap:10px; }
.card[hidden] { display:none !important; }
.card-head { display:grid; grid-template-columns:auto 1fr auto auto; gap:14px; align-items:center; }
.rank { color:var(--muted); font-variant-numeric:tabular-nums; }
.title { min-width:0; }
.title h2 { margin:0; font-size:15px; overflow-wrap:anywhere; }
.path { overflow-wrap:anywhere; }
.scores { display:flex; gap:14px; font-variant-numeric:tabular-nums; }
.badge { display:inline-block; min-width:92px; text-align:center; padding:4px 10px; border-radius:6px; font-weight:700; letter-spacing:.04em; color:#fff; }
.badge-ok { background:var(--ok); } .badge-ng { background:var(--ng); } .badge-uncertain { background:var(--unc); }
.chips { display:flex; gap:6px; }
.chip { font-size:12px; padding:1px 8px; border-radius:999px; background:var(--bg); border:1px solid var(--line); }
.chip-warn { background:#fff8c5; border-color:#d4a72c; }
.images { display:grid; grid-template-columns:repeat(3, minmax(0, 1fr)); gap:10px; }
figure { margin:0; position:relative; background:#e9ecef; border-radius:6px; overflow:hidden; max-height:420px; }
figure img { display:block; width:100%; height:100%; object-fit:contain; cursor:zoom-in; }
figcaption { position:absolute; left:6px; top:6px; font-size:11px; padding:1px 6px; border-radius:4px; background:rgba(0,0,0,.6); color:#fff; }
.placeholder { display:flex; align-items:center; justify-content:center; height:100%; color:var(--muted); font-size:12px; }
table.regions { border-collapse:collapse; font-size:12.5px; font-variant-numeric:tabular-nums; }
table.regions th, table.regions td { padding:3px 10px; border-bottom:1px solid var(--line); text-align:right; }
table.regions th:nth-child(4), table.regions td:nth-child(4) { text-align:left; }
summary { cursor:pointer; color:var(--muted); }
.muted { color:var(--muted); } .small { font-size:12px; }
.warnings { margin:0; padding-left:18px; color:#9a6700; font-size:12.5px; }
.empty { color:var(--muted); padding:40px; text-align:center; }
#lightbox { position:fixed; inset:0; background:rgba(0,0,0,.85); display:flex; align-items:center; justify-content:center; z-index:10; cursor:zoom-out; }
#lightbox[hidden] { display:none; }
#lightbox img { max-width:96vw; max-height:96vh; image-rendering:auto; }
@media (max-width: 900px) { .overview { grid-template-columns:1fr; } .card-head { grid-template-columns:auto 1fr; } .images { grid-template-columns:1fr; } }
`;

const SCRIPT = `
(function () {
  var buttons = Array.prototype.slice.call(document.querySelectorAll('[data-filter]'));
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  var search = document.getElementById('search');
  var shown = document.getElementById('shown');
  var current = 'all';
  function apply() {
    var q = search.value.trim().toLowerCase();
    var n = 0;
    var unreviewedOnly = document.body.getAttribute('data-review-view') === 'unreviewed';
    cards.forEach(function (c) {
      var show = (current === 'all' || c.getAttribute('data-verdict') === current) &&
        (q === '' || c.getAttribute('data-file').toLowerCase().indexOf(q) !== -1) &&
        !(unreviewedOnly && c.hasAttribute('data-review-label'));
      c.hidden = !show;
      if (show) n++;
    });
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-filter') === current)); });
    shown.textContent = String(n);
  }
  buttons.forEach(function (b) {
    b.addEventListener('click', function () { current = b.getAttribute('data-filter'); apply(); });
  });
  search.addEventListener('input', apply);
  document.addEventListener('partscan:review', apply);
  var box = document.getElementById('lightbox');
  var big = box.querySelector('img');
  document.addEventListener('click', function (e) {
    var t = e.target;
    if (t && t.tagName === 'IMG' && t.closest('figure')) { big.src = t.src; big.alt = t.alt; box.hidden = false; }
    else if (!box.hidden && box.contains(t)) { box.hidden = true; big.removeAttribute('src'); }
  });
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') { box.hidden = true; } });
  apply();
})();
`;

/** Orders results worst first: normalised score, then raw score (descending), then file name. */
export function sortResults(results: readonly ImageResult[]): number[] {
  return results
    .map((_, i) => i)
    .sort((a, b) => {
      const ra = results[a]!;
      const rb = results[b]!;
      return (
        rb.normalizedScore - ra.normalizedScore || rb.imageScore - ra.imageScore || ra.file.localeCompare(rb.file)
      );
    });
}

/**
 * Renders the report page for `manifest`, with image URLs already resolved (`images[i]` belongs to
 * `manifest.results[i]`). Pure: all text is escaped; the page loads nothing but the given images.
 */
export function renderReportHtml(manifest: RunManifest, images: ReportImages, opts: { title: string }): string {
  const order = sortResults(manifest.results);
  const counts: Record<Verdict, number> = { OK: 0, NG: 0, UNCERTAIN: 0 };
  for (const r of manifest.results) counts[r.verdict]++;
  const drifted = manifest.results.filter((r) => r.drift?.flag).length;
  const total = manifest.results.length;
  const cards = order.map((i, rank) => renderCard(manifest.results[i]!, rank + 1, images[i] ?? {}, i)).join('\n');
  const filterButtons = [
    `<button type="button" data-filter="all" aria-pressed="true">All <span class="muted">${total}</span></button>`,
    ...VERDICTS.map(
      (v) => `<button type="button" data-filter="${v}" aria-pressed="false">${v} <span class="muted">${counts[v]}</span></button>`,
    ),
  ].join('\n');
  const runWarnings = manifest.warnings?.length
    ? `<ul class="warnings">${manifest.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul>`
    : '';
  const meta = [
    `model ${escapeHtml(manifest.model.path)}`,
    manifest.model.backbone ? `backbone ${escapeHtml(manifest.model.backbone)}` : '',
    manifest.createdAt ? `run ${escapeHtml(manifest.createdAt)}` : '',
    `partscan ${escapeHtml(manifest.version)}`,
  ]
    .filter(Boolean)
    .join(' · ');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data: file: 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="generator" content="partscan ${escapeHtml(manifest.version)}">
<title>${escapeHtml(opts.title)}</title>
<style>${CSS}${CHART_CSS}${REVIEW_CSS}</style>
</head>
<body>
<header class="page">
<h1>${escapeHtml(opts.title)}</h1>
<div class="meta">${meta}</div>
<div class="overview">
<div class="stats">
<div class="stat"><span>Parts</span><b>${total}</b></div>
<div class="stat ng"><span>NG</span><b>${counts.NG}</b></div>
<div class="stat unc"><span>Uncertain</span><b>${counts.UNCERTAIN}</b></div>
<div class="stat ok"><span>OK</span><b>${counts.OK}</b></div>
${drifted ? `<div class="stat"><span>Input drift</span><b>${drifted}</b></div>` : ''}
</div>
${renderThresholds(manifest.model.thresholds)}
</div>
${renderCharts(manifest)}
${runWarnings}
${renderControlChart(manifest)}
</header>
<nav class="toolbar" aria-label="Filter parts">
${filterButtons}
<span class="shown">showing <b id="shown">${total}</b> of ${total}, worst first</span>
<input id="search" type="search" placeholder="Filter by file name" aria-label="Filter by file name">
${renderReviewToolbar(total)}
</nav>
<main>
${total ? cards : '<p class="empty">No images in this run.</p>'}
</main>
<div id="lightbox" hidden><img alt=""></div>
${renderReviewData(manifest)}
<script>${SCRIPT}</script>
<script>${REVIEW_SCRIPT}</script>
</body>
</html>
`;
}

/** Resolves a manifest-relative output path inside `runDir`; null when it would escape the run folder. */
function insideRun(runDir: string, rel: string): string | null {
  if (path.isAbsolute(rel)) return null;
  const abs = path.resolve(runDir, rel);
  const back = path.relative(runDir, abs);
  return back.startsWith('..') || path.isAbsolute(back) ? null : abs;
}

/**
 * Where an output really is, through symlinks: its real path when that lies inside the run folder's
 * own real path, 'outside' when a symlink leads out of it (never followed), undefined when missing.
 */
async function realInsideRun(realRunDir: string, abs: string): Promise<string | 'outside' | undefined> {
  const real = await fs.realpath(abs).catch(() => undefined);
  if (real === undefined) return undefined;
  return insideRun(realRunDir, path.relative(realRunDir, real)) === null ? 'outside' : real;
}

/** A relative URL from the report's folder to `abs`, each segment percent-encoded. */
function relativeUrl(fromDir: string, abs: string): string {
  return path.relative(fromDir, abs).split(path.sep).map(encodeURIComponent).join('/');
}

/**
 * Reads `runDir/results.json`, writes the QA report (default `runDir/report.html`) atomically and
 * returns its path. Images listed in each result's `outputs` are inlined as data: URIs while their
 * files total at most `inlineBudgetBytes`, else linked relatively; a missing file, a path leaving the
 * run folder (by name, or through a symlink: never followed out) or a format browsers cannot show is
 * displayed as a placeholder saying so.
 *
 * @example
 * await scoreToRunDir(model, files, 'runs/0042');
 * const html = await writeReport('runs/0042', { title: 'Line 3, night shift' });
 */
export async function writeReport(runDir: string, opts: ReportOptions = {}): Promise<string> {
  parseOptions(reportOptionsSchema, opts, 'writeReport');
  const manifest = await readRunManifest(runDir);
  const out = path.resolve(opts.out ?? path.join(runDir, 'report.html'));
  const budget = opts.inlineBudgetBytes ?? DEFAULT_INLINE_BUDGET;
  const realRunDir = await fs.realpath(runDir).catch(() => path.resolve(runDir));

  type Found = { abs: string; size: number; mime: string };
  const found: Partial<Record<ImageKind, Found | { missing: string }>>[] = [];
  let totalBytes = 0;
  for (const r of manifest.results) {
    const slots: Partial<Record<ImageKind, Found | { missing: string }>> = {};
    for (const [kind] of IMAGE_KINDS) {
      const rel = r.outputs?.[kind];
      if (rel === undefined) continue;
      const lexical = insideRun(runDir, rel);
      const real = lexical ? await realInsideRun(realRunDir, lexical) : 'outside';
      const mime = MIME[path.extname(rel).toLowerCase()];
      if (real === 'outside') {
        slots[kind] = { missing: 'path outside the run folder' };
      } else if (!mime) {
        slots[kind] = { missing: `${path.extname(rel) || 'this format'} cannot be shown in a browser` };
      } else {
        // The real path is what is read or linked: a symlink cannot be swapped in behind the check's back by name.
        const st = real ? await fs.stat(real).catch(() => undefined) : undefined;
        if (!st?.isFile()) {
          slots[kind] = { missing: 'file missing' };
        } else {
          slots[kind] = { abs: real!, size: st.size, mime };
          totalBytes += st.size;
        }
      }
    }
    found.push(slots);
  }

  const inline = totalBytes <= budget;
  const images: Partial<Record<ImageKind, ImageSource>>[] = [];
  for (const slots of found) {
    const resolved: Partial<Record<ImageKind, ImageSource>> = {};
    for (const [kind] of IMAGE_KINDS) {
      const slot = slots[kind];
      if (!slot) continue;
      if ('missing' in slot) resolved[kind] = slot;
      else if (inline) resolved[kind] = { src: `data:${slot.mime};base64,${(await readRegularFile(slot.abs, () => new Error('not a regular file'))).toString('base64')}` };
      else resolved[kind] = { src: relativeUrl(path.dirname(out), slot.abs) };
    }
    images.push(resolved);
  }

  const title = opts.title ?? `partscan QA report — ${path.basename(path.resolve(runDir))}`;
  const html = renderReportHtml(manifest, images, { title });
  await ensureOutputDir(path.dirname(out));
  await writeFileAtomic(out, html);
  return out;
}
