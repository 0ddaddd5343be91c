/**
 * Option parsers shared by the commands: turn flag text into typed values, or a usage error naming
 * the flag. Apart from cli.ts so that commands registering their own flags (worker) share them.
 */

import { InvalidArgumentError } from 'commander';
import type { ThresholdRule } from '../postprocess/operating-point.js';
import { DEFAULT_GOOD_RULE } from '../postprocess/threshold-rules.js';

export function intArg(name: string, min: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got "${v}".`);
    return n;
  };
}

export function shareArg(v: string): number {
  const n = Number(v);
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError(`must be a number in [0, 1), got "${v}".`);
  return n;
}

/** A rate strictly between 0 and 1 (e.g. a false-reject target). */
export function rateArg(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!(v.trim() !== '' && n > 0 && n < 1)) throw new InvalidArgumentError(`${name} must be a rate in (0, 1), e.g. 0.01 for 1 %, got "${v}".`);
    return n;
  };
}

/** The threshold rules the CLI names ('sigma' is partscan ≤ 0.1's max(mean + 3σ, max)). */
export const THRESHOLD_RULE_NAMES = ['false-reject', 'f1', 'sigma'] as const;

/** The API rule for a CLI rule name. */
export function thresholdRuleOf(name: (typeof THRESHOLD_RULE_NAMES)[number]): ThresholdRule {
  return name === 'sigma' ? DEFAULT_GOOD_RULE : name;
}

/** A repeatable flag's values, in the order given. */
export function collectArg(v: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), v];
}

export function listArg(v: string): string[] {
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('expects a comma-separated list.');
  return items;
}

export function bandArg(v: string): { low: number; high: number } {
  const [low, high, ...rest] = v.split(',').map(Number);
  if (rest.length || !(low !== undefined && high !== undefined && low >= 0 && low < high && high <= 1)) {
    throw new InvalidArgumentError(`expects "low,high" with 0 ≤ low < high ≤ 1, got "${v}".`);
  }
  return { low, high };
}

/** The flags of `partscan fit` (commander's camel-cased option values). */
export interface FitFlags {
  out: string;
  backbone?: string;
  layers?: string[];
  weights?: string;
  channels?: number;
  imageSize?: number;
  seed?: number;
  calibrationSplit?: number;
  calibration?: string;
  defects?: string;
  resume?: string;
  review?: string;
  imageRoot?: string[];
  batchSize?: number;
  threads?: number;
  embedBackbone: boolean;
  compact?: boolean;
  roi?: string;
  band?: { low: number; high: number };
  falseReject?: number;
  reviewBand?: number;
  thresholdRule?: (typeof THRESHOLD_RULE_NAMES)[number];
  imageScore?: 'standardized' | 'max';
  cacheDir?: string;
  offline?: boolean;
  tile?: number;
  tileOverlap?: number;
  looMemory?: number;
  precision?: 'fp32' | 'int8';
  json?: boolean;
  queue?: string;
  queueName?: string;
}
