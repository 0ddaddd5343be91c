/**
 * Headless Chromium for the report tests: one launch configuration (offline, no background
 * traffic) and one way to open a report page that records what the page did — requests, script
 * errors, console errors and dialogs — so each test can assert the page is self-contained and inert.
 */

import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

/** The system Chromium; browser tests are skipped where it is absent. */
export const CHROMIUM = '/usr/bin/chromium';
export const HAS_CHROMIUM = existsSync(CHROMIUM);

/** Launches headless Chromium with every background service that could reach the network turned off. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A report page and what it did while loading and afterwards. */
export interface ReportPage {
  page: Page;
  /** Every URL the page requested. */
  requests: string[];
  /** Uncaught script errors and console errors. */
  errors: string[];
  /** Messages of dialogs (alert, confirm) the page opened; each is dismissed. */
  dialogs: string[];
}

/** Opens a report file in a new 1366×900 page and waits until it and its images have loaded. */
export async function openReport(browser: Browser, file: string): Promise<ReportPage> {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const requests: string[] = [];
  const errors: string[] = [];
  const dialogs: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('dialog', async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  await page.waitForFunction(() => Array.from(document.images).every((i) => i.complete));
  return { page, requests, errors, dialogs };
}

/** The requested URLs that are neither the page's own files nor inline data. */
export function externalRequests(requests: readonly string[]): string[] {
  return requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:'));
}
