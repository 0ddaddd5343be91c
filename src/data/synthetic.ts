/**
 * Synthetic sample parts: machined metal discs (turned face with concentric tool marks, a chamfered
 * bore, four bolt holes, an index notch) on a dark fixture, with natural good-part variation, plus four
 * defect types with exact masks. Written in MVTec AD layout so every loader and metric can run on it
 * without external data.
 *
 * Determinism: every random choice comes from a seeded PRNG keyed by (seed, sample key, purpose), never
 * Math.random, so any sample can be re-rendered on its own — including the clean part underneath a
 * defect. Exact masks: a defect changes the scene only inside its mask, and sensor noise is added after
 * the defect from the same noise stream as the clean render, so pixels outside the mask are
 * byte-identical to the clean part.
 *
 * Layout: synthetic-part.ts draws and renders the part, synthetic-defects.ts the defects; this module
 * assembles samples (defect, then sensor noise) and writes the dataset.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { PartscanError } from '../errors.js';
import { ensureOutputDir, writeFileAtomic } from '../util/atomic-write.js';
import { chip, contamination, dent, scratch } from './synthetic-defects.js';
import { drawPart, makeRng, renderPart, type PartScene, type Rng } from './synthetic-part.js';

/** The defect types the generator can draw. */
export const SYNTHETIC_DEFECT_TYPES = ['scratch', 'dent', 'chip', 'contamination'] as const;

/** One of {@link SYNTHETIC_DEFECT_TYPES}. */
export type SyntheticDefectType = (typeof SYNTHETIC_DEFECT_TYPES)[number];

/** Name of the manifest file written (last) into a generated dataset. */
export const SYNTHETIC_MANIFEST = 'partscan-synthetic.json';

/** Bumped whenever rendering changes, so an old set on disk is regenerated instead of reused. */
const GENERATOR_VERSION = 1;

/** Generator settings; every field is optional. */
export interface SyntheticOptions {
  /** PRNG seed (unsigned 32-bit integer, default 0). Same seed → byte-identical files. */
  seed?: number;
  /** Image side in pixels (default 256). */
  size?: number;
  /** Good training parts (default 40). */
  nTrain?: number;
  /** Good test parts (default 10). */
  nTestGood?: number;
  /** Test parts per defect type (default 6). */
  nPerDefect?: number;
}

/** One rendered sample. */
export interface SyntheticSample {
  /** Image width (= size). */
  width: number;
  /** Image height (= size). */
  height: number;
  /** Interleaved 8-bit RGB of the sample as written. */
  image: Uint8Array;
  /** The same part without its defect (same pose, lighting and noise); equals `image` for good parts. */
  clean: Uint8Array;
  /** 1 where the defect changed the part, else 0; absent for good parts. */
  mask?: Uint8Array;
}

/**
 * Fills in defaults and checks ranges.
 * @throws PartscanError 'OPTIONS' for a non-integer or out-of-range value.
 */
export function resolveSyntheticOptions(opts: SyntheticOptions = {}): Required<SyntheticOptions> {
  const o: Required<SyntheticOptions> = {
    seed: opts.seed ?? 0,
    size: opts.size ?? 256,
    nTrain: opts.nTrain ?? 40,
    nTestGood: opts.nTestGood ?? 10,
    nPerDefect: opts.nPerDefect ?? 6,
  };
  const limits: Record<keyof SyntheticOptions, [number, number]> = {
    seed: [0, 0xffffffff],
    size: [64, 2048],
    nTrain: [1, 100_000],
    nTestGood: [0, 100_000],
    nPerDefect: [0, 100_000],
  };
  for (const [k, [lo, hi]] of Object.entries(limits) as [keyof SyntheticOptions, [number, number]][]) {
    const v = o[k];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new PartscanError('OPTIONS', `Synthetic option ${k} must be an integer in ${lo}..${hi}, got ${v}.`, {
        remedy: `pass a ${k} in range or leave it out for the default`,
      });
    }
  }
  return o;
}

const DEFECTS: Record<SyntheticDefectType, (rng: Rng, scene: PartScene, rgb: Float32Array) => Uint8Array> = {
  scratch,
  dent,
  chip,
  contamination,
};

/** Adds the sample's sensor noise (its own PRNG stream) and rounds to 8 bits. */
function quantise(rgb: Float32Array, noiseRng: Rng): Uint8Array {
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i += 3) {
    const lum = 1.3 * noiseRng.normal();
    for (let c = 0; c < 3; c++) {
      const v = Math.round(rgb[i + c]! + lum + 0.6 * noiseRng.normal());
      out[i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/**
 * Renders one sample without touching the disk: `split`/`label`/`index` name it exactly as in the
 * generated dataset (e.g. 'test', 'scratch', 3 → test/scratch/003.png). Only `seed` and `size` of `opts`
 * matter. Returns the image, the clean part under it and, for defects, the exact mask.
 */
export function renderSyntheticSample(
  split: 'train' | 'test',
  label: 'good' | SyntheticDefectType,
  index: number,
  opts: SyntheticOptions = {},
): SyntheticSample {
  const o = resolveSyntheticOptions(opts);
  if (split === 'train' && label !== 'good') {
    throw new PartscanError('OPTIONS', `Synthetic training samples are good parts; got label '${label}'.`, {
      remedy: "use split 'test' for defect samples",
    });
  }
  if (label !== 'good' && !(SYNTHETIC_DEFECT_TYPES as readonly string[]).includes(label)) {
    throw new PartscanError('OPTIONS', `Unknown synthetic defect type '${String(label)}'.`, {
      remedy: `use one of ${SYNTHETIC_DEFECT_TYPES.join(', ')}`,
    });
  }
  const key = `${split}/${label}/${index}`;
  const scene = renderPart(drawPart(makeRng(o.seed, `part:${key}`), o.size));
  const clean = quantise(scene.rgb, makeRng(o.seed, `noise:${key}`));
  if (label === 'good') return { width: o.size, height: o.size, image: clean, clean };
  const rgb = scene.rgb.slice();
  const mask = DEFECTS[label](makeRng(o.seed, `defect:${key}`), scene, rgb);
  const image = quantise(rgb, makeRng(o.seed, `noise:${key}`));
  return { width: o.size, height: o.size, image, clean, mask };
}

// ---------------------------------------------------------------------------------------------------
// Writing the dataset

interface Manifest {
  generator: 'partscan-synthetic';
  version: number;
  complete: boolean;
  options: Required<SyntheticOptions>;
  counts: Record<string, number>;
  files: { path: string; bytes: number }[];
}

async function readManifest(file: string): Promise<Manifest | undefined> {
  try {
    const m = JSON.parse(await fs.readFile(file, 'utf8')) as Manifest;
    return m && m.generator === 'partscan-synthetic' ? m : undefined;
  } catch {
    return undefined;
  }
}

async function isCompleteSet(root: string, m: Manifest, o: Required<SyntheticOptions>): Promise<boolean> {
  if (!m.complete || m.version !== GENERATOR_VERSION) return false;
  if (JSON.stringify(m.options) !== JSON.stringify(o)) return false;
  for (const f of m.files) {
    const st = await fs.stat(path.join(root, f.path)).catch(() => undefined);
    if (!st || !st.isFile() || st.size !== f.bytes) return false;
  }
  return true;
}

const pad3 = (i: number) => String(i).padStart(3, '0');

/**
 * Writes a synthetic dataset in MVTec AD layout under `outDir`: train/good/NNN.png,
 * test/<good|scratch|dent|chip|contamination>/NNN.png and ground_truth/<type>/NNN_mask.png (0/255,
 * single channel). Idempotent: when `outDir` already holds a complete set generated with the same
 * options (checked through `partscan-synthetic.json`, written last), nothing is rewritten. A set made
 * with other options is replaced; a non-empty folder that is not a generated set is refused.
 * Returns the absolute root and image counts per folder ('train/good', 'test/good', 'test/scratch', ...).
 * @throws PartscanError 'OPTIONS' (bad options), 'OUTPUT' (cannot write), 'DATASET' (foreign folder).
 */
export async function generateSyntheticParts(
  outDir: string,
  opts: SyntheticOptions = {},
): Promise<{
  /** Absolute root of the dataset. */
  root: string;
  /** Images per folder ('train/good', 'test/good', 'test/scratch', ...). */
  counts: Record<string, number>;
}> {
  const o = resolveSyntheticOptions(opts);
  const root = path.resolve(outDir);
  const manifestPath = path.join(root, SYNTHETIC_MANIFEST);
  const counts: Record<string, number> = { 'train/good': o.nTrain, 'test/good': o.nTestGood };
  for (const t of SYNTHETIC_DEFECT_TYPES) counts[`test/${t}`] = o.nPerDefect;

  const previous = await readManifest(manifestPath);
  if (previous && (await isCompleteSet(root, previous, o))) return { root, counts };
  await ensureOutputDir(root);
  if (previous) {
    // Our own earlier (other options, or interrupted) set: clear it so no stale images remain.
    for (const d of ['train', 'test', 'ground_truth']) await fs.rm(path.join(root, d), { recursive: true, force: true });
  } else {
    const existing = (await fs.readdir(root)).filter((n) => !n.startsWith('.'));
    if (existing.length > 0) {
      throw new PartscanError(
        'DATASET',
        `Refusing to generate synthetic parts into ${root}: the folder is not empty and is not a generated set.`,
        { file: root, remedy: 'choose an empty or new folder' },
      );
    }
  }

  const manifest: Manifest = {
    generator: 'partscan-synthetic',
    version: GENERATOR_VERSION,
    complete: false,
    options: o,
    counts,
    files: [],
  };
  await writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');

  const jobs: { split: 'train' | 'test'; label: 'good' | SyntheticDefectType; index: number }[] = [];
  for (let i = 0; i < o.nTrain; i++) jobs.push({ split: 'train', label: 'good', index: i });
  for (let i = 0; i < o.nTestGood; i++) jobs.push({ split: 'test', label: 'good', index: i });
  for (const t of SYNTHETIC_DEFECT_TYPES) for (let i = 0; i < o.nPerDefect; i++) jobs.push({ split: 'test', label: t, index: i });

  const madeDirs = new Set<string>();
  const write = async (rel: string, data: Uint8Array) => {
    const abs = path.join(root, rel);
    const dir = path.dirname(abs);
    if (!madeDirs.has(dir)) {
      await ensureOutputDir(dir);
      madeDirs.add(dir);
    }
    await writeFileAtomic(abs, data);
    manifest.files.push({ path: rel.split(path.sep).join('/'), bytes: data.length });
  };
  for (const job of jobs) {
    const s = renderSyntheticSample(job.split, job.label, job.index, o);
    const raw = { width: s.width, height: s.height };
    const png = await sharp(s.image, { raw: { ...raw, channels: 3 } }).png().toBuffer();
    await write(path.join(job.split, job.label, `${pad3(job.index)}.png`), png);
    if (s.mask) {
      const m = new Uint8Array(s.mask.length);
      for (let i = 0; i < m.length; i++) m[i] = s.mask[i] ? 255 : 0;
      const maskPng = await sharp(m, { raw: { ...raw, channels: 1 } }).toColourspace('b-w').png().toBuffer();
      await write(path.join('ground_truth', job.label, `${pad3(job.index)}_mask.png`), maskPng);
    }
  }
  manifest.complete = true;
  await writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
  return { root, counts };
}
