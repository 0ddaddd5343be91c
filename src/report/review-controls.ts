/**
 * The QA review controls of the HTML report (docs/REVIEW.md): on every part card two buttons,
 * `data-review="good"` and `data-review="defect"` (keys G and D on the focused card; U clears, J / K move
 * to the next / previous part), a visible state, a filter for unreviewed parts, a progress count
 * ("34 of 120 reviewed") and an export button (`data-review-export`) that downloads `review.json`
 * (format `partscan-review/1`, review/review-file.ts; its parts in results.json's order, as `buildReview`
 * lists them) for `partscan calibrate --review` and `partscan fit --resume --review`.
 *
 * Decisions are kept in the browser's localStorage under the run's id (a digest of the run's results), so
 * they survive a reload and never mix between runs. Nothing leaves the page but the downloaded file: the
 * report stays self-contained and offline.
 */

import { createHash } from 'node:crypto';
import type { ImageResult, RunManifest } from '../export/results.js';
import { REVIEW_FORMAT } from '../review/review-file.js';
import { escapeHtml } from './escape.js';

/** The run's id: a digest of when it was scored, by which model, and every part's file and score. */
export function runIdOf(manifest: RunManifest): string {
  const described = [manifest.createdAt ?? null, manifest.model.sha256 ?? manifest.model.path, manifest.results.map((r) => [r.file, r.imageScore])];
  return createHash('sha256').update(JSON.stringify(described)).digest('hex').slice(0, 32);
}

/** A number as the page reads it back exactly (shortest round-trip text). */
function num(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '' : String(x);
}

/**
 * The attributes a card carries for the review: the part's index in results.json (the export lists parts
 * in that order, as {@link buildReview} does), the scores the run recorded, and focusability.
 */
export function reviewCardAttributes(r: ImageResult, index: number): string {
  const attrs = [`data-index="${index}"`, `data-image-score="${num(r.imageScore)}"`, 'tabindex="0"'];
  if (r.mapMax !== undefined) attrs.push(`data-map-max="${num(r.mapMax)}"`);
  if (r.mapMin !== undefined) attrs.push(`data-map-min="${num(r.mapMin)}"`);
  return ' ' + attrs.join(' ');
}

/** The review buttons of one card (`name`: the part's file name, for screen readers). */
export function renderReviewControls(name: string): string {
  return `<div class="review" role="group" aria-label="${escapeHtml(`QA review of ${name}`)}">
<button type="button" data-review="good" aria-pressed="false" title="Label this part good (key G)">Good <kbd>G</kbd></button>
<button type="button" data-review="defect" aria-pressed="false" title="Label this part defective (key D)">Defect <kbd>D</kbd></button>
<span class="review-state muted" aria-live="polite">not reviewed</span>
</div>`;
}

/** The review part of the toolbar: progress, the unreviewed filter, the export button. */
export function renderReviewToolbar(total: number): string {
  return `<span class="review-tools">
<span data-review-progress aria-live="polite">0 of ${total} reviewed</span>
<button type="button" data-review-filter aria-pressed="false" title="Show only the parts not reviewed yet">Unreviewed only</button>
<button type="button" data-review-export title="Download the labels as review.json, for partscan calibrate --review">Export review.json</button>
<span class="review-note muted small" data-review-note></span>
</span>`;
}

/**
 * What the page's review script needs about the run, as JSON in a non-executed script element
 * (`<` escaped, so no text in it can close the element).
 */
export function renderReviewData(manifest: RunManifest): string {
  const data = {
    format: REVIEW_FORMAT,
    model: { sha256: manifest.model.sha256 ?? null, path: manifest.model.path },
    run: { id: runIdOf(manifest), ...(manifest.createdAt ? { createdAt: manifest.createdAt } : {}), parts: manifest.results.length },
  };
  return `<script type="application/json" id="partscan-review">${JSON.stringify(data).replace(/</g, '\\u003c')}</script>`;
}

export const REVIEW_CSS = `
.review { display:flex; gap:8px; align-items:center; }
.review button, .review-tools button { font:inherit; padding:4px 12px; border:1px solid var(--line); border-radius:6px; background:var(--card); cursor:pointer; }
.review kbd { font:11px ui-monospace,monospace; padding:0 4px; border:1px solid var(--line); border-radius:3px; background:var(--bg); color:var(--muted); }
.review button[data-review="good"][aria-pressed="true"] { background:var(--ok); border-color:var(--ok); color:#fff; }
.review button[data-review="defect"][aria-pressed="true"] { background:var(--ng); border-color:var(--ng); color:#fff; }
.review button[aria-pressed="true"] kbd { background:transparent; color:#fff; border-color:rgba(255,255,255,.6); }
.card[data-review-label="good"] { box-shadow: inset 5px 0 0 var(--ok); }
.card[data-review-label="defect"] { box-shadow: inset 5px 0 0 var(--ng); }
.card[data-review-label] .review-state { color:var(--ink); font-weight:600; }
.card:focus { outline:3px solid #0969da; outline-offset:2px; }
.review-tools { display:flex; gap:8px; align-items:center; }
.review-tools button[aria-pressed="true"] { background:var(--ink); color:#fff; border-color:var(--ink); }
.review-tools button[data-review-export] { border-color:var(--ink); font-weight:600; }
`;

/**
 * The review script: state in localStorage (`partscan-review/<run id>`: [file, label, reviewedAt]
 * triples, so no file name can collide with an object's own properties), buttons and keys, the count,
 * the filter (the page's filter script re-applies on the 'partscan:review' event) and the export.
 */
export const REVIEW_SCRIPT = `
(function () {
  var dataEl = document.getElementById('partscan-review');
  if (!dataEl) return;
  var meta = JSON.parse(dataEl.textContent);
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card[data-file]'));
  var progress = document.querySelector('[data-review-progress]');
  var filterButton = document.querySelector('[data-review-filter]');
  var exportButton = document.querySelector('[data-review-export]');
  var note = document.querySelector('[data-review-note]');
  var storeKey = 'partscan-review/' + meta.run.id;
  var files = new Map();
  cards.forEach(function (c) { files.set(c.getAttribute('data-file'), c); });
  var state = new Map();
  try {
    var saved = JSON.parse(window.localStorage.getItem(storeKey) || 'null');
    if (saved && saved.v === 1 && Array.isArray(saved.items)) {
      saved.items.forEach(function (e) {
        if (Array.isArray(e) && files.has(e[0]) && (e[1] === 'good' || e[1] === 'defect') && typeof e[2] === 'string') state.set(e[0], { label: e[1], reviewedAt: e[2] });
      });
    }
  } catch (e) { /* no storage, or a damaged entry: start empty */ }
  function save() {
    var items = [];
    state.forEach(function (v, k) { items.push([k, v.label, v.reviewedAt]); });
    try { window.localStorage.setItem(storeKey, JSON.stringify({ v: 1, items: items })); note.textContent = ''; }
    catch (e) { note.textContent = 'decisions cannot be stored in this browser: export before closing'; }
  }
  function render(card) {
    var s = state.get(card.getAttribute('data-file'));
    if (s) card.setAttribute('data-review-label', s.label); else card.removeAttribute('data-review-label');
    card.querySelectorAll('[data-review]').forEach(function (b) { b.setAttribute('aria-pressed', String(!!s && b.getAttribute('data-review') === s.label)); });
    card.querySelector('.review-state').textContent = s ? 'reviewed: ' + s.label : 'not reviewed';
  }
  function update() {
    var n = 0;
    cards.forEach(function (c) { if (state.has(c.getAttribute('data-file'))) n++; });
    progress.textContent = n + ' of ' + cards.length + ' reviewed';
    document.dispatchEvent(new Event('partscan:review'));
  }
  function visible() { return cards.filter(function (c) { return !c.hidden; }); }
  function move(card, step) {
    var shown = visible();
    var i = card ? shown.indexOf(card) : -1;
    var next = shown[i < 0 ? (step > 0 ? 0 : shown.length - 1) : i + step];
    if (next) { next.focus(); next.scrollIntoView({ block: 'nearest' }); }
  }
  function label(card, value) {
    var file = card.getAttribute('data-file');
    var s = state.get(file);
    if (value === null || (s && s.label === value)) state.delete(file);
    else state.set(file, { label: value, reviewedAt: new Date().toISOString() });
    save();
    render(card);
    update();
  }
  cards.forEach(function (card) {
    render(card);
    card.querySelectorAll('[data-review]').forEach(function (b) {
      b.addEventListener('click', function () { label(card, b.getAttribute('data-review')); });
    });
  });
  filterButton.addEventListener('click', function () {
    var on = filterButton.getAttribute('aria-pressed') !== 'true';
    filterButton.setAttribute('aria-pressed', String(on));
    document.body.setAttribute('data-review-view', on ? 'unreviewed' : 'all');
    update();
  });
  document.addEventListener('keydown', function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT'))) return;
    var card = t && t.closest ? t.closest('.card[data-file]') : null;
    var key = e.key.toLowerCase();
    if (key === 'j' || key === 'k') { e.preventDefault(); move(card, key === 'j' ? 1 : -1); return; }
    if (!card || (key !== 'g' && key !== 'd' && key !== 'u')) return;
    e.preventDefault();
    var shown = visible();
    var after = shown[shown.indexOf(card) + 1];
    label(card, key === 'g' ? 'good' : key === 'd' ? 'defect' : null);
    if (key !== 'u' && after && !after.hidden) { after.focus(); after.scrollIntoView({ block: 'nearest' }); }
  });
  function numberOf(card, name) {
    var v = card.getAttribute(name);
    return v === null || v === '' ? undefined : Number(v);
  }
  exportButton.addEventListener('click', function () {
    var now = new Date().toISOString();
    var items = [];
    var inRunOrder = cards.slice().sort(function (a, b) { return Number(a.getAttribute('data-index')) - Number(b.getAttribute('data-index')); });
    inRunOrder.forEach(function (c) {
      var s = state.get(c.getAttribute('data-file'));
      if (!s) return;
      var item = { file: c.getAttribute('data-file'), label: s.label, verdict: c.getAttribute('data-verdict') };
      var scores = { imageScore: numberOf(c, 'data-image-score'), mapMax: numberOf(c, 'data-map-max'), mapMin: numberOf(c, 'data-map-min') };
      Object.keys(scores).forEach(function (k) { if (scores[k] !== undefined) item[k] = scores[k]; });
      item.reviewedAt = s.reviewedAt;
      items.push(item);
    });
    var review = { format: meta.format, model: meta.model, run: meta.run, exportedAt: now, items: items };
    var blob = new Blob([JSON.stringify(review, null, 2) + '\\n'], { type: 'application/json' });
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'review.json';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    note.textContent = 'review.json: ' + items.length + ' part' + (items.length === 1 ? '' : 's');
  });
  update();
})();
`;
