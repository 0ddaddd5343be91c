/**
 * Production streams for the line-monitoring tests and bench/monitor.ts. Every image is scored once;
 * a production order is a replay of those results through a fresh {@link LineMonitor}, so 100 seeded
 * permutations cost no more scoring than one.
 */

import sharp from 'sharp';
import type { Model, ScoreResult } from '../../src/model/model.js';
import { LineMonitor, type LineMonitorOptions, type MonitorInput, type RunMonitor } from '../../src/monitor/line-monitor.js';
import { seededShuffle } from './magnetic-tile-setups.js';

/** What a monitor is built from: a model or its header. */
type MonitorModel = ConstructorParameters<typeof LineMonitor>[0];

/** Scores inputs in batches of 16; results in input order. */
export async function scoreOnce(model: Model, inputs: readonly (string | Buffer)[]): Promise<ScoreResult[]> {
  const out: ScoreResult[] = [];
  for (let i = 0; i < inputs.length; i += 16) out.push(...(await model.score(inputs.slice(i, i + 16))));
  return out;
}

/** The image with its brightness multiplied by `factor` (sharp `modulate`), as PNG bytes. */
export function brighter(file: string, factor: number): Promise<Buffer> {
  return sharp(file).modulate({ brightness: factor }).png().toBuffer();
}

/** The image in grayscale (sharp `grayscale`), as PNG bytes. */
export function grayscale(file: string): Promise<Buffer> {
  return sharp(file).grayscale().png().toBuffer();
}

/** A fresh monitor fed `stream` in order (index = position); its result. */
export function replay(model: MonitorModel, stream: readonly MonitorInput[], options?: LineMonitorOptions): RunMonitor {
  const monitor = new LineMonitor(model, options);
  stream.forEach((r, i) => monitor.push(r, i));
  return monitor.result();
}

/** Where the first alarm of streams "before, then after" fell, over seeded orders of both parts. */
export interface ChangeDelays {
  /** Orders replayed. */
  runs: number;
  /** Orders that alarmed before the change. */
  early: number;
  /** Orders that never alarmed. */
  missed: number;
  /** Images after the change until the alarm (0 = the first changed image), ascending. */
  delays: number[];
}

/**
 * Replays `before` then `after`, each in a seeded permutation (`orders` of them; order 0 with `seed`),
 * and measures the delay to the first alarm after the change. `sameOrder` gives `after` the
 * permutation of `before` (the same images, changed: brighter, grayscale).
 */
export function changeDelays(
  model: MonitorModel,
  before: readonly MonitorInput[],
  after: readonly MonitorInput[],
  orders: number,
  seed: number,
  sameOrder = false,
  options?: LineMonitorOptions,
): ChangeDelays {
  const out: ChangeDelays = { runs: orders, early: 0, missed: 0, delays: [] };
  for (let k = 0; k < orders; k++) {
    const first = seededShuffle([...before.keys()], seed + k);
    const second = sameOrder ? first : seededShuffle([...after.keys()], seed + 10_000 + k);
    const at = replay(model, [...first.map((i) => before[i]!), ...second.map((i) => after[i]!)], options).firstAlarmAt;
    if (at === null) out.missed++;
    else if (at < before.length) out.early++;
    else out.delays.push(at - before.length);
  }
  out.delays.sort((a, b) => a - b);
  return out;
}

/** Median, 90th percentile and maximum of ascending delays (null when there are none), and how many are below 50. */
export function delaySummary(delays: readonly number[]): { median: number | null; p90: number | null; max: number | null; within50: number } {
  const q = (p: number): number | null => (delays.length ? delays[Math.min(delays.length - 1, Math.floor(p * delays.length))]! : null);
  return { median: q(0.5), p90: q(0.9), max: delays.at(-1) ?? null, within50: delays.filter((d) => d < 50).length };
}
