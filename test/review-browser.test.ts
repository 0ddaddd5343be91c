/**
 * The QA review loop end to end (issue 25), as a plant runs it: `partscan score` a run, `partscan report`
 * it, label parts in the report in headless Chromium (buttons and keys, the visible state, the unreviewed
 * filter, the progress count, a reload), export `review.json` with the page's button, then feed it to
 * `partscan calibrate --review` and `partscan fit --resume --review`. The CLI's models equal what the API
 * path (`buildReview` → `calibrate` / `fit`) makes of the same labels.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReview, calibrate, fit, Model, type ReviewFile, type RunManifest } from '../src/index.js';
import { readRunManifest } from '../src/export/results.js';
import { listImages } from '../src/data/loaders.js';
import { modelScoringSha256 } from '../src/model/model-identity.js';
import { readReviewFile } from '../src/review/review-file.js';
import { runIdOf } from '../src/report/review-controls.js';
import { CHROMIUM, HAS_CHROMIUM, externalRequests, launchChromium, openReport } from './helpers/browser.js';
import { cli } from './helpers/cli.js';
import { expectContract } from './helpers/json-contract.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

let tmp: string;
let modelFile: string;
let runDir: string;
let run: RunManifest;
let browser: Browser;
let exported: string;
const fromDir = (dir: string, names: string[]): string[] => names.map((n) => path.join(BOTTLE, 'test', dir, `${n}.png`));
const GOOD = fromDir('good', ['003', '004', '005']);
const DEFECTS = [...fromDir('broken_large', ['003']), ...fromDir('contamination', ['004', '005'])];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-review-browser-'));
  const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 30);
  const model = await fit(train, { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 20, imageSize: 96, seed: 3 });
  modelFile = path.join(tmp, 'line3.partscan');
  await model.save(modelFile);
  await model.dispose();
  runDir = path.join(tmp, 'run');
  const scored = await cli(['score', modelFile, ...GOOD, ...DEFECTS, '--out', runDir, '--json']);
  expect(scored.code, scored.stderr).toBe(0);
  const report = await cli(['report', runDir]);
  expect(report.code, report.stderr).toBe(0);
  run = await readRunManifest(runDir);
  if (HAS_CHROMIUM) browser = await launchChromium();
}, 600_000);

afterAll(async () => {
  await browser?.close();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** The labels the test gives: every good part good, every defect defective, but one good part left unreviewed. */
const LABELS = new Map<string, 'good' | 'defect'>([...GOOD.slice(0, 2).map((f) => [f, 'good'] as [string, 'good']), ...DEFECTS.map((f) => [f, 'defect'] as [string, 'defect'])]);

describe.skipIf(!HAS_CHROMIUM)(`review in the report, headless Chromium (skipped when ${CHROMIUM} is absent)`, () => {
  it('labels parts with buttons and keys, filters, counts, survives a reload, and exports review.json', async () => {
    const { page, requests, errors, dialogs } = await openReport(browser, path.join(runDir, 'report.html'));
    const card = (file: string) => page.locator(`.card[data-file="${file}"]`);
    // Cards carry the source path as it is (not lower-cased), every one with both buttons.
    expect((await page.locator('.card').evaluateAll((cs) => cs.map((c) => c.getAttribute('data-file')))).sort()).toEqual(run.results.map((r) => r.file).sort());
    expect(await page.locator('.card [data-review="good"]').count()).toBe(6);
    expect(await page.locator('.card [data-review="defect"]').count()).toBe(6);
    const progress = page.locator('[data-review-progress]');
    expect(await progress.textContent()).toBe('0 of 6 reviewed');

    // Buttons: two parts.
    await card(GOOD[0]!).locator('[data-review="good"]').click();
    await card(DEFECTS[0]!).locator('[data-review="defect"]').click();
    expect(await card(GOOD[0]!).getAttribute('data-review-label')).toBe('good');
    expect(await card(GOOD[0]!).locator('[data-review="good"]').getAttribute('aria-pressed')).toBe('true');
    expect(await card(GOOD[0]!).locator('.review-state').textContent()).toBe('reviewed: good');
    // A second click on the pressed button takes the label back.
    await card(DEFECTS[0]!).locator('[data-review="defect"]').click();
    expect(await card(DEFECTS[0]!).getAttribute('data-review-label')).toBeNull();
    await card(DEFECTS[0]!).locator('[data-review="defect"]').click();
    expect(await progress.textContent()).toBe('2 of 6 reviewed');

    // Keys: D on a focused card labels it and moves the focus on; G, then U to clear and G again.
    await card(DEFECTS[1]!).focus();
    await page.keyboard.press('d');
    expect(await card(DEFECTS[1]!).getAttribute('data-review-label')).toBe('defect');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-file'))).not.toBe(DEFECTS[1]);
    await card(DEFECTS[2]!).focus();
    await page.keyboard.press('d');
    await card(GOOD[1]!).focus();
    await page.keyboard.press('g');
    await card(GOOD[1]!).focus();
    await page.keyboard.press('u');
    expect(await card(GOOD[1]!).getAttribute('data-review-label')).toBeNull();
    await page.keyboard.press('g');
    expect(await progress.textContent()).toBe('5 of 6 reviewed');
    // Typing in the search box is not a shortcut.
    await page.locator('#search').focus();
    await page.keyboard.type('gd');
    await page.locator('#search').fill('');
    expect(await progress.textContent()).toBe('5 of 6 reviewed');

    // The unreviewed filter leaves the one part not reviewed; J moves between the shown parts.
    await page.locator('[data-review-filter]').click();
    expect(await page.locator('.card:not([hidden])').evaluateAll((cs) => cs.map((c) => c.getAttribute('data-file')))).toEqual([GOOD[2]]);
    expect(await page.locator('#shown').textContent()).toBe('1');
    await page.locator('h1').click();
    await page.keyboard.press('j');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-file'))).toBe(GOOD[2]);
    await page.locator('[data-review-filter]').click();
    expect(await page.locator('.card:not([hidden])').count()).toBe(6);

    // Decisions survive a reload (localStorage, keyed by the run).
    await page.reload({ waitUntil: 'load' });
    expect(await progress.textContent()).toBe('5 of 6 reviewed');
    expect(await card(DEFECTS[2]!).getAttribute('data-review-label')).toBe('defect');

    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-review-export]').click()]);
    expect(download.suggestedFilename()).toBe('review.json');
    exported = path.join(tmp, 'review.json');
    await download.saveAs(exported);
    expect(externalRequests(requests)).toEqual([]);
    expect(errors).toEqual([]);
    expect(dialogs).toEqual([]);
    await page.close();

    // The file is the API's review of the same labels, scores exactly as the run recorded them.
    const review = await readReviewFile(exported);
    const api = buildReview(run.model, { id: runIdOf(run), createdAt: run.createdAt!, parts: 6 }, run.results, LABELS);
    const strip = (r: ReviewFile) => ({ ...r, exportedAt: undefined, items: r.items.map((i) => ({ ...i, reviewedAt: undefined })) });
    expect(strip(review)).toEqual(strip(api));
    expect(review.model.sha256).toBe(run.model.sha256);
    expect(review.items.every((i) => i.reviewedAt && !Number.isNaN(Date.parse(i.reviewedAt)))).toBe(true);
  }, 180_000);

  it('partscan calibrate --review and fit --resume --review make the models the API path makes', async () => {
    expect(exported).toBeDefined();
    const roots = ['--image-root', BOTTLE];
    const calOut = path.join(tmp, 'line3-calibrated.partscan');
    const c = await cli(['calibrate', modelFile, '--review', exported, ...roots, '--false-reject', '0.05', '--out', calOut, '--json']);
    expect(c.code, c.stderr).toBe(0);
    expect(JSON.parse(c.stdout).review).toEqual({ good: 2, defect: 3, inPool: 0, recorded: 5, scored: 0, fitted: 0 });
    expectContract('calibrate', JSON.parse(c.stdout));
    const fitOut = path.join(tmp, 'line3-resumed.partscan');
    const f = await cli(['fit', '--resume', modelFile, '--review', exported, ...roots, '--out', fitOut, '--json']);
    expect(f.code, f.stderr).toBe(0);
    expect(JSON.parse(f.stdout)).toMatchObject({ images: 32, review: { good: 2, defect: 3, fitted: 2, scored: 3 } });
    expectContract('fit', JSON.parse(f.stdout));

    const review = buildReview(run.model, { id: runIdOf(run) }, run.results, LABELS);
    const imageRoots = [BOTTLE];
    const apiCal = await Model.load(modelFile);
    await calibrate(apiCal, { review, imageRoots, falseRejectTarget: 0.05 });
    const cliCal = await Model.load(calOut);
    expect(cliCal.header.thresholds).toEqual(apiCal.header.thresholds);
    expect(cliCal.header.calibration).toEqual(apiCal.header.calibration);
    expect((await cliCal.calibrationScores())!.scores()).toEqual((await apiCal.calibrationScores())!.scores());
    expect(modelScoringSha256(cliCal)).toBe(run.model.sha256);
    const apiFit = await fit([], { resume: modelFile, review, imageRoots });
    const cliFit = await Model.load(fitOut);
    expect(modelScoringSha256(cliFit)).toBe(modelScoringSha256(apiFit));
    expect(cliFit.header.thresholds).toEqual(apiFit.header.thresholds);
    expect(cliFit.header.calibration).toEqual(apiFit.header.calibration);
    for (const m of [apiCal, cliCal, apiFit, cliFit]) await m.dispose();

    // info shows the reviewed labels the model used.
    const info = await cli(['info', calOut]);
    expect(info.stdout).toMatch(/5 reviewed labels \(2 good, 3 defect\)/);
    // The review is of the model that scored the run: the resumed model is another one; images outside the roots are refused.
    const again = await cli(['calibrate', fitOut, '--review', exported, ...roots, '--out', path.join(tmp, 'x.partscan')]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/reviews a run scored by another model/);
    const outside = await cli(['calibrate', modelFile, '--review', exported, '--out', path.join(tmp, 'y.partscan')]);
    expect(outside.code).toBe(2);
    expect(outside.stderr).toMatch(/outside the allowed image folders .*--image-root/);
    await expect(fs.stat(path.join(tmp, 'y.partscan'))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 600_000);
});
