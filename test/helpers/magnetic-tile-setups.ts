/**
 * The magnetic-tile capture-setup split of line monitoring (issues 18 and 23), shared by its tests and
 * bench/monitor.ts. File names carry the setup (`exp0` … `exp6`):
 * - fit: train/good of exp1–5 (672 images);
 * - same-setup good stream: test/good of exp1–5 (121 images);
 * - new-setup good stream: exp6 good images of train/good and test/good (127 + 31 = 158);
 * - same-setup defects: every defect image of exp1–5 under test/ (323).
 * exp0 (one train/good image and two defects) is left out everywhere.
 */

import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { BackboneSpec } from '../../src/backbone/registry.js';
import type { FitOptions } from '../../src/model/fit-options.js';
import { createSeededRng } from '../../src/util/prng.js';
import { MAGNETIC_TILE } from './shared.js';

/** The backbone of the monitoring tests: the bundled MobileNetV2-int8 at its defaults (152 channels, 224 px). */
export function monitorBackbone(): BackboneSpec {
  return { backbone: 'mobilenetv2-int8' };
}

/** Fit options of the monitoring tests (everything else at its default). */
export function monitorFitOptions(): FitOptions {
  return { backbone: monitorBackbone(), imageSize: 224 };
}

const DEFECT_KINDS = ['blowhole', 'break', 'crack', 'fray', 'uneven'];

/** The capture setup a file name carries (exp1 → 1), or -1. */
export function setupOf(file: string): number {
  const m = /exp(\d)/.exec(path.basename(file));
  return m ? Number(m[1]) : -1;
}

function list(sub: string): string[] {
  const dir = path.join(MAGNETIC_TILE, sub);
  return readdirSync(dir)
    .filter((f) => /\.(jpe?g|png)$/i.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}

/** The split, each list sorted by path. */
export function magneticTileSetups(): { fit: string[]; sameGood: string[]; newGood: string[]; sameDefects: string[] } {
  const same = (f: string): boolean => setupOf(f) >= 1 && setupOf(f) <= 5;
  const trainGood = list('train/good');
  const testGood = list('test/good');
  return {
    fit: trainGood.filter(same),
    sameGood: testGood.filter(same),
    newGood: [...trainGood, ...testGood].filter((f) => setupOf(f) === 6),
    sameDefects: DEFECT_KINDS.flatMap((k) => list(`test/${k}`)).filter(same),
  };
}

/**
 * The files in blocks of their capture setup, as a line that runs one setup at a time: exp1 first
 * (or the highest setup first with `reverse`), file-name order within a block.
 */
export function setupBlocks(files: readonly string[], reverse = false): string[] {
  const setups = [...new Set(files.map(setupOf))].sort((a, b) => (reverse ? b - a : a - b));
  return setups.flatMap((s) => files.filter((f) => setupOf(f) === s).sort());
}

/** A seeded permutation (Fisher–Yates), for production orders that are reproducible. */
export function seededShuffle<T>(items: readonly T[], seed: number): T[] {
  const rng = createSeededRng(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng.nextFloat() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
