import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import { writeHeatmap16Png, writeImagePng, writeMaskPng, writeOverlayPng } from '../src/export/images.js';
import { writeRunResults, type ImageResult, type RunManifest } from '../src/export/results.js';
import { gaussianBlur } from '../src/postprocess/blur.js';
import { binaryMask, connectedRegions } from '../src/postprocess/regions.js';
import { resizeBilinear } from '../src/postprocess/resize.js';
import { verdict } from '../src/postprocess/thresholds.js';
import { escapeHtml, renderReportHtml, writeReport } from '../src/report/html.js';
import { CHROMIUM, HAS_CHROMIUM, externalRequests, launchChromium, openReport } from './helpers/browser.js';
import { runManifest } from './helpers/report-run.js';
import { BOTTLE } from './helpers/shared.js';

const SIZE = 256;
const BAND = { low: 0.45, high: 0.55 };
/** A file name built to break naive HTML generation. */
const EVIL_NAME = '/data/line 3/<img src=x onerror="alert(1)">&amp;.png';

let runDir: string;
let manifest: RunManifest;

async function loadRgb(file: string): Promise<Uint8Array> {
  const { data } = await sharp(file).resize(SIZE, SIZE).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

/** Stand-in anomaly map from a ground-truth mask: 512² 0/1 → 256² bilinear → blurred → 0.15..0.95. */
async function mapFromMask(maskFile: string): Promise<Float32Array> {
  const { data, info } = await sharp(maskFile).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  const binary = Float32Array.from(data, (v) => (v >= 128 ? 1 : 0));
  const small = resizeBilinear(binary, info.width, info.height, SIZE, SIZE);
  const blurred = gaussianBlur(small, SIZE, SIZE);
  let peak = 0;
  for (const v of blurred) peak = Math.max(peak, v);
  return blurred.map((v) => 0.15 + (0.8 * v) / peak);
}

/** A good part's map: low everywhere with one soft bump of height `bump` above 0.1. */
function goodMap(bump: number): Float32Array {
  const map = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const d2 = (x - 90) ** 2 + (y - 150) ** 2;
      map[y * SIZE + x] = 0.1 + bump * Math.exp(-d2 / (2 * 12 ** 2));
    }
  return map;
}

async function addPart(
  name: string,
  imageFile: string,
  map01: Float32Array,
  file: string,
  label: string,
  rawScore: number,
): Promise<ImageResult> {
  const rgb = { data: await loadRgb(imageFile), width: SIZE, height: SIZE };
  const mask = binaryMask(map01, 0.5);
  const regions = connectedRegions(mask, SIZE, SIZE, map01, { minArea: 10 });
  let peak = 0;
  for (const v of map01) peak = Math.max(peak, v);
  const outputs = {
    original: `originals/${name}.png`,
    overlay: `overlays/${name}.png`,
    mask: `masks/${name}.png`,
    heatmap: `heatmaps/${name}.png`,
  };
  await writeImagePng(path.join(runDir, outputs.original), rgb);
  await writeOverlayPng(path.join(runDir, outputs.overlay), rgb, map01, mask);
  await writeMaskPng(path.join(runDir, outputs.mask), mask, SIZE, SIZE);
  await writeHeatmap16Png(path.join(runDir, outputs.heatmap), map01, SIZE, SIZE);
  return {
    file,
    imageScore: rawScore,
    normalizedScore: peak,
    verdict: verdict(peak, BAND),
    regions,
    width: SIZE,
    height: SIZE,
    outputs,
    label,
  };
}

beforeAll(async () => {
  runDir = await mkdtemp(path.join(os.tmpdir(), 'partscan-report-'));
  const test = path.join(BOTTLE, 'test');
  const gt = path.join(BOTTLE, 'ground_truth', 'broken_large');
  const results = [
    await addPart('good-000', path.join(test, 'good', '000.png'), goodMap(0.15), path.join(test, 'good', '000.png'), 'good', 8.1),
    // A good part that lands in the uncertainty band (peak 0.5), under a hostile file name.
    await addPart('good-001', path.join(test, 'good', '001.png'), goodMap(0.4), EVIL_NAME, 'good', 12.4),
    await addPart('broken-000', path.join(test, 'broken_large', '000.png'), await mapFromMask(path.join(gt, '000_mask.png')), path.join(test, 'broken_large', '000.png'), 'broken_large', 31.7),
    await addPart('broken-001', path.join(test, 'broken_large', '001.png'), await mapFromMask(path.join(gt, '001_mask.png')), path.join(test, 'broken_large', '001.png'), 'broken_large', 29.2),
  ];
  results[0]!.drift = { flag: false, score: 0.2 };
  results[3]!.drift = { flag: true, score: 4.2 };
  results[3]!.warnings = ['Image looks unlike the training set (brightness).'];
  manifest = runManifest(
    results,
    { path: 'models/bottle.psm', backbone: 'resnet18', method: 'f1-adaptive', image: 14.2, pixel: 13.1, imageSpan: [6.3, 35.2], pixelSpan: [0.4, 37.9], band: BAND },
    { createdAt: '2025-06-01T12:00:00Z', warnings: ['Only 4 images: demo run.'] },
  );
  await writeRunResults(runDir, manifest);
});

afterAll(async () => {
  if (runDir) await rm(runDir, { recursive: true, force: true });
});

describe('report HTML (no browser)', () => {
  it('the stand-in run has the verdicts the browser test relies on', () => {
    expect(manifest.results.map((r) => r.verdict)).toEqual(['OK', 'UNCERTAIN', 'NG', 'NG']);
    expect(manifest.results[2]!.regions.length).toBeGreaterThan(0);
    expect(manifest.results[0]!.regions).toEqual([]);
  });

  it('escapes text, declares a no-network CSP and loads nothing external', async () => {
    const report = await writeReport(runDir, { title: 'Bottle line <3> & "QA"' });
    const html = await readFile(report, 'utf8');
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    expect(html).not.toContain('<img src=x');
    expect(html).toContain(escapeHtml(EVIL_NAME));
    expect(html).toContain('Bottle line &lt;3&gt; &amp; &quot;QA&quot;');
    expect(html).toContain(`Content-Security-Policy" content="default-src 'none'`);
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect(html.match(/data:image\/png;base64,/g)).toHaveLength(12);
  });

  it('shows placeholders for missing files and paths leaving the run folder', () => {
    const r: ImageResult = { ...manifest.results[0]!, outputs: {} };
    const html = renderReportHtml({ ...manifest, results: [r] }, [{ original: { missing: 'file missing' }, overlay: { missing: 'path outside the run folder' } }], {
      title: 't',
    });
    expect(html).toContain('file missing');
    expect(html).toContain('path outside the run folder');
    expect(html).toContain('not exported'); // mask slot
  });

  it('refuses a run folder without results.json', async () => {
    const err = await writeReport(path.join(runDir, 'originals')).catch((e: unknown) => e);
    expect(isPartscanError(err, 'OPTIONS')).toBe(true);
  });
});

describe.skipIf(!HAS_CHROMIUM)(`report in headless Chromium (skipped when ${CHROMIUM} is absent)`, () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  const visibleCards = (page: import('playwright-core').Page) =>
    page.locator('.card').evaluateAll((cards) => cards.filter((c) => (c as HTMLElement).offsetParent !== null).length);

  it('shows every part with loaded images, worst first, and filters by verdict', async () => {
    const report = await writeReport(runDir);
    const { page, requests, dialogs, errors } = await openReport(browser, report);

    expect(await page.locator('.card').count()).toBe(4);
    expect(await page.locator('main img').count()).toBe(12);
    const widths = await page.locator('main img').evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).naturalWidth));
    expect(widths).toEqual(new Array(12).fill(SIZE));

    // Worst first: the two broken bottles, then the uncertain one, then the good one.
    const verdicts = await page.locator('.card').evaluateAll((cards) => cards.map((c) => c.getAttribute('data-verdict')));
    expect(verdicts).toEqual(['NG', 'NG', 'UNCERTAIN', 'OK']);
    expect(await page.locator('.card').nth(0).locator('table.regions tbody tr').count()).toBeGreaterThan(0);
    await expect(page.locator('.badge-ng').first().evaluate((b) => getComputedStyle(b).backgroundColor)).resolves.toBe('rgb(207, 34, 46)');

    // The hostile file name is shown as text and ran nothing.
    await expect(page.locator('.card[data-verdict="UNCERTAIN"] .path').textContent()).resolves.toBe(EVIL_NAME);
    expect(dialogs).toEqual([]);
    expect(errors).toEqual([]);

    expect(await visibleCards(page)).toBe(4);
    await page.click('button[data-filter="NG"]');
    expect(await visibleCards(page)).toBe(2);
    await expect(page.locator('#shown').textContent()).resolves.toBe('2');
    await expect(page.locator('button[data-filter="NG"]').getAttribute('aria-pressed')).resolves.toBe('true');
    await page.click('button[data-filter="OK"]');
    expect(await visibleCards(page)).toBe(1);
    await page.click('button[data-filter="all"]');
    await page.fill('#search', 'broken_large/001');
    expect(await visibleCards(page)).toBe(1);
    await page.fill('#search', '');
    expect(await visibleCards(page)).toBe(4);

    // Thresholds and counts are on the page.
    const header = await page.locator('header.page').innerText();
    expect(header).toContain('14.2');
    expect(header).toContain('f1-adaptive');
    expect(header).toMatch(/UNCERTAIN 0\.45–0\.55/);

    // Nothing but the page itself and inline images was requested.
    expect(externalRequests(requests)).toEqual([]);

    await page.click('button[data-filter="all"]');
    const shot = path.join(os.tmpdir(), 'partscan-report-screenshot.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect((await stat(shot)).size).toBeGreaterThan(10_000);
    await page.close();
  });

  it('large runs link images relatively instead of inlining them, and they still load', async () => {
    const report = await writeReport(runDir, { out: path.join(runDir, 'report-linked.html'), inlineBudgetBytes: 0 });
    const html = await readFile(report, 'utf8');
    expect(html).not.toContain('data:image');
    expect(html).toContain('src="overlays/broken-000.png"');
    const { page } = await openReport(browser, report);
    const widths = await page.locator('main img').evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).naturalWidth));
    expect(widths).toEqual(new Array(12).fill(SIZE));
    await page.close();
  });
});
