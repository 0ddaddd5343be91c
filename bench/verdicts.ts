/**
 * Verdict bench (issues 22, 28): what the shipped threshold does on bottle, magnetic tile and the demo,
 * measured as a user runs partscan — `partscan fit <root> --backbone mobilenetv2-int8` then
 * `partscan eval --json` — for three operating points:
 * - `default`: leave-one-out calibration, standardised image score, 1 % false-reject target;
 * - `maxScore`: the same with `--image-score max` (the raw map maximum as the image score);
 * - `sigmaRule`: partscan 0.1's rule, max(mean + 3σ, worst good score), with its 10 % split and the map
 *   maximum (`--calibration-split 0.1 --threshold-rule sigma --image-score max`), applied to the same
 *   out-of-sample pool (partscan 0.1 itself used the 10 % split alone: docs/THRESHOLDS.md has its figures).
 * Prints one JSON object.
 *
 *   node --import tsx bench/verdicts.ts [--sets bottle,tile,demo] [--variants default,maxScore,sigmaRule]
 */

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { generateSyntheticParts } from '../src/data/synthetic.js';
import { cpuInfo } from './default-path.js';

const run = promisify(execFile);
const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const SHARED = process.env.PARTSCAN_SHARED ?? path.resolve(REPO, '..', 'shared');
const BIN = path.join(REPO, 'bin', 'partscan.js');

const VARIANTS: Record<string, string[]> = {
  default: [],
  maxScore: ['--image-score', 'max'],
  sigmaRule: ['--calibration-split', '0.1', '--threshold-rule', 'sigma', '--image-score', 'max'],
};

const { values } = parseArgs({ options: { sets: { type: 'string', default: 'bottle,tile,demo' }, variants: { type: 'string', default: Object.keys(VARIANTS).join(',') } } });
const tmp = mkdtempSync(path.join(os.tmpdir(), 'partscan-verdicts-'));

async function cli(args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [BIN, ...args, '--json'], { maxBuffer: 256 * 2 ** 20 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

async function dataRoot(set: string): Promise<string> {
  if (set === 'bottle') return path.join(SHARED, 'datasets', 'mvtec_bottle');
  if (set === 'tile') return path.join(SHARED, 'datasets', 'magnetic_tile');
  if (set === 'demo') return (await generateSyntheticParts(path.join(tmp, 'demo-data'))).root;
  throw new Error(`unknown set ${set}`);
}

interface Verdicts {
  false_reject_rate: number;
  escape_rate: number;
  uncertain_share: number;
  escape_rate_ci95: [number, number];
  false_reject_rate_ci95: [number, number];
}

async function measure(set: string, variant: string) {
  const root = await dataRoot(set);
  const model = path.join(tmp, `${set}-${variant}.partscan`);
  const t0 = performance.now();
  const fitted = await cli(['fit', root, '--backbone', 'mobilenetv2-int8', '--out', model, ...VARIANTS[variant]!]);
  const fitSeconds = (performance.now() - t0) / 1000;
  const e = await cli(['eval', model, root]);
  const v = e.verdicts as Verdicts;
  const thresholds = fitted.thresholds as { image: number; operatingPoint?: { image: { rate: number; upper95: number } } };
  rmSync(model, { force: true });
  return {
    imageAuroc: e.image_auroc,
    pixelAuroc: e.pixel_auroc,
    aupro: e.aupro,
    falseRejectRate: v.false_reject_rate,
    falseRejectCi95: v.false_reject_rate_ci95,
    escapeRate: v.escape_rate,
    escapeCi95: v.escape_rate_ci95,
    uncertainShare: v.uncertain_share,
    threshold: thresholds.image,
    estimatedFalseRejectRate: thresholds.operatingPoint?.image.rate ?? null,
    falseRejectUpper95: thresholds.operatingPoint?.image.upper95 ?? null,
    operatingPoints: e.operating_points,
    nGood: e.n_good,
    nDefect: e.n_defect,
    fitSeconds,
  };
}

const out: Record<string, unknown> = { cpu: cpuInfo(), backbone: 'mobilenetv2-int8 (defaults: d=152, 224 px)', results: {} };
try {
  for (const set of values.sets!.split(',')) {
    const r: Record<string, unknown> = {};
    for (const variant of values.variants!.split(',')) r[variant] = await measure(set, variant);
    (out.results as Record<string, unknown>)[set] = r;
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
