/**
 * A model's calibration pool: the out-of-sample scores its thresholds were chosen from, kept in the
 * file (sections `calibration.good` and `calibration.defect`, float32 [rows, 3]: image score, raw map
 * maximum, raw map minimum; `calibration.goodKeys` / `calibration.defectKeys`, uint8 [rows, 32]: the
 * sha256 of each image's bytes; `calibration.goodFlags` / `calibration.defectFlags`, uint8 [rows]: where
 * each row came from and whether QA review labelled it) so that `partscan calibrate` can move the
 * operating point without refitting, and reviewed parts can join later. The keys make joining
 * idempotent: an image given again (the same defects at a second `calibrate`, a part relabelled in
 * review) replaces its row instead of counting twice. The flags make the header's summary exact after
 * such replacements, and tell `fit --resume --review` which good images are already in the Gaussians
 * (the training images' leave-one-out rows). Files before format 1.6 have no flags: their rows' sources
 * are read from the order the rows were written in (training images, held-out, added).
 */

import { PartscanError } from '../errors.js';
import type { CalibrationScores } from '../postprocess/operating-point.js';

/** Section names of the pool. */
export const CALIBRATION_SECTIONS = {
  good: 'calibration.good',
  defect: 'calibration.defect',
  goodKeys: 'calibration.goodKeys',
  defectKeys: 'calibration.defectKeys',
  goodFlags: 'calibration.goodFlags',
  defectFlags: 'calibration.defectFlags',
} as const;

/**
 * The smallest value of a raw anomaly map: a pool row's third column, and what results.json records as
 * `mapMin` (a review brings it back, so both must come from here).
 */
export function mapMinimum(map: ArrayLike<number>): number {
  let lo = Infinity;
  for (let i = 0; i < map.length; i++) if (map[i]! < lo) lo = map[i]!;
  return lo;
}

/** A scored image's pool row: [image score, raw map maximum, raw map minimum]. */
export function poolRow(r: { imageScore: number; mapMax: number; anomalyMap: ArrayLike<number> }): number[] {
  return [r.imageScore, r.mapMax, mapMinimum(r.anomalyMap)];
}

/** Bytes of a row key (a sha256). */
export const KEY_BYTES = 32;

/** Columns of a pool row. */
export const POOL_COLUMNS = 3;

/** Where a good row came from. */
export type CalibrationSource = 'leaveOneOut' | 'heldOut' | 'added';

/** Row flag values: the source in the low two bits, {@link REVIEWED_FLAG} above. */
const SOURCE_CODE: Record<CalibrationSource, number> = { leaveOneOut: 0, heldOut: 1, added: 2 };
const SOURCE_OF: readonly CalibrationSource[] = ['leaveOneOut', 'heldOut', 'added'];
/** Flag bit of a row whose label came from QA review. */
const REVIEWED_FLAG = 4;

/** Where the good rows came from. */
export interface CalibrationSources {
  /** Training images scored leave-one-out. */
  leaveOneOut: number;
  /** Good images held out from the fit (`--calibration`, `--calibration-split`). */
  heldOut: number;
  /** Good images added later (`calibrate --good`, reviewed parts). */
  added: number;
}

/** The header's summary of the pool (model format ≥ 1.3, header field `calibration`). */
export interface CalibrationSummary {
  /** Good rows (section `calibration.good`). */
  good: number;
  /** Labelled defect rows (section `calibration.defect`). */
  defect: number;
  /** Where the good rows came from. */
  sources: CalibrationSources;
  /** Good images left out as likely defects (contamination suspects, calibration outliers). */
  excluded: number;
  /** Rows whose label came from QA review (`calibrate --review`, `fit --resume --review`), when any. */
  reviewed?: { good: number; defect: number };
}

/** Rows of [image score, map max, map min]. */
export type PoolRow = readonly number[];

/** A scored image for the pool: its row and the sha256 (hex) of its bytes. */
export interface KeyedRow {
  /** [image score, raw map max, raw map min]. */
  row: PoolRow;
  /** sha256 of the image file's bytes, lowercase hex. */
  key: string;
  /** Where it came from (good rows; default 'added'). */
  source?: CalibrationSource;
  /** Whether its label came from QA review. A row replacing a reviewed row of the same class stays reviewed. */
  reviewed?: boolean;
}

/** A row of the pool, found by its key. */
export interface PoolEntry {
  /** The class the row is in. */
  label: 'good' | 'defect';
  /** [image score, raw map max, raw map min]. */
  row: number[];
  /** Where it came from. */
  source: CalibrationSource;
  /** Whether its label came from QA review. */
  reviewed: boolean;
}

/** One class's rows, keys and flags. */
interface Rows {
  scores: Float32Array;
  keys: Uint8Array;
  flags: Uint8Array;
}

function toRows(items: readonly KeyedRow[], wasReviewed: (key: string) => boolean): Rows {
  const scores = new Float32Array(items.length * POOL_COLUMNS);
  const keys = new Uint8Array(items.length * KEY_BYTES);
  const flags = new Uint8Array(items.length);
  items.forEach(({ row, key, source, reviewed }, i) => {
    if (row.length !== POOL_COLUMNS || !row.every(Number.isFinite)) {
      throw new PartscanError('THRESHOLD', `A calibration score row must hold ${POOL_COLUMNS} finite numbers, got [${row.join(', ')}].`, { remedy: 'check the model and the images; scores must be finite' });
    }
    if (!/^[0-9a-f]{64}$/.test(key)) throw new PartscanError('THRESHOLD', `A calibration row key must be a sha256 in hex, got "${key}".`);
    scores.set(row, i * POOL_COLUMNS);
    keys.set(Buffer.from(key, 'hex'), i * KEY_BYTES);
    flags[i] = SOURCE_CODE[source ?? 'added'] | (reviewed || wasReviewed(key) ? REVIEWED_FLAG : 0);
  });
  return { scores, keys, flags };
}

function count(r: Rows): number {
  return r.scores.length / POOL_COLUMNS;
}

function keyAt(r: Rows, i: number): string {
  return Buffer.from(r.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES)).toString('hex');
}

/** The rows of `r` whose key is not in `drop`, followed by `add`. */
function replace(r: Rows, drop: ReadonlySet<string>, add: Rows): Rows {
  const keep: number[] = [];
  for (let i = 0; i < count(r); i++) if (!drop.has(keyAt(r, i))) keep.push(i);
  const n = keep.length + count(add);
  const scores = new Float32Array(n * POOL_COLUMNS);
  const keys = new Uint8Array(n * KEY_BYTES);
  const flags = new Uint8Array(n);
  keep.forEach((i, j) => {
    scores.set(r.scores.subarray(i * POOL_COLUMNS, (i + 1) * POOL_COLUMNS), j * POOL_COLUMNS);
    keys.set(r.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES), j * KEY_BYTES);
    flags[j] = r.flags[i]!;
  });
  scores.set(add.scores, keep.length * POOL_COLUMNS);
  keys.set(add.keys, keep.length * KEY_BYTES);
  flags.set(add.flags, keep.length);
  return { scores, keys, flags };
}

/**
 * Flags of a pool written before format 1.6 (no flag sections): the rows' sources from the order they
 * were written in — leave-one-out rows first, then held-out, then added (fit writes its rows in that
 * order and calibrate appends) — exact unless a later calibrate replaced rows; none reviewed.
 */
function flagsFromOrder(rows: number, sources: CalibrationSources | undefined): Uint8Array {
  const flags = new Uint8Array(rows).fill(SOURCE_CODE.added);
  if (!sources) return flags;
  const loo = Math.min(rows, sources.leaveOneOut);
  flags.fill(SOURCE_CODE.leaveOneOut, 0, loo);
  flags.fill(SOURCE_CODE.heldOut, loo, Math.min(rows, loo + sources.heldOut));
  return flags;
}

function column(m: Float32Array, c: number): Float32Array {
  const n = m.length / POOL_COLUMNS;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = m[i * POOL_COLUMNS + c]!;
  return out;
}

const EMPTY: Rows = { scores: new Float32Array(0), keys: new Uint8Array(0), flags: new Uint8Array(0) };

/** The rows with one per key: the last given. */
function lastPerKey<T extends { key: string }>(rows: readonly T[]): T[] {
  const last = new Map<string, number>();
  rows.forEach((r, i) => last.set(r.key, i));
  return rows.filter((r, i) => last.get(r.key) === i);
}

/** Rows whose flag passes `test`. */
function countFlags(r: Rows, test: (flag: number) => boolean): number {
  let n = 0;
  for (const f of r.flags) if (test(f)) n++;
  return n;
}

/** The out-of-sample scores thresholds are chosen from (see the module comment). */
export class CalibrationPool {
  private index: Map<string, { rows: Rows; i: number; label: 'good' | 'defect' }> | undefined;

  private constructor(
    private readonly goodRows: Rows,
    private readonly defectRows: Rows,
    /** Good images left out as likely defects. */
    readonly excluded: number,
  ) {}

  /** Number of good rows. */
  get good(): { rows: number } {
    return { rows: count(this.goodRows) };
  }

  /** Number of defect rows. */
  get defect(): { rows: number } {
    return { rows: count(this.defectRows) };
  }

  /** Where the good rows came from. */
  get sources(): CalibrationSources {
    const of = (s: CalibrationSource): number => countFlags(this.goodRows, (f) => (f & 3) === SOURCE_CODE[s]);
    return { leaveOneOut: of('leaveOneOut'), heldOut: of('heldOut'), added: of('added') };
  }

  /** Rows whose label came from QA review, by class; undefined when none. */
  get reviewed(): { good: number; defect: number } | undefined {
    const r = { good: countFlags(this.goodRows, (f) => (f & REVIEWED_FLAG) !== 0), defect: countFlags(this.defectRows, (f) => (f & REVIEWED_FLAG) !== 0) };
    return r.good + r.defect > 0 ? r : undefined;
  }

  /** The row of an image (by the sha256 of its bytes, hex), or undefined when the pool does not hold it. */
  entryOf(key: string): PoolEntry | undefined {
    if (!this.index) {
      this.index = new Map();
      for (const [rows, label] of [[this.goodRows, 'good'], [this.defectRows, 'defect']] as const) {
        for (let i = 0; i < count(rows); i++) this.index.set(keyAt(rows, i), { rows, i, label });
      }
    }
    const hit = this.index.get(key);
    if (!hit) return undefined;
    const flag = hit.rows.flags[hit.i]!;
    return {
      label: hit.label,
      row: Array.from(hit.rows.scores.subarray(hit.i * POOL_COLUMNS, (hit.i + 1) * POOL_COLUMNS)),
      source: SOURCE_OF[flag & 3] ?? 'added',
      reviewed: (flag & REVIEWED_FLAG) !== 0,
    };
  }

  /** Whether the pool holds an image (by the sha256 of its bytes), and as what. */
  labelOf(key: string): 'good' | 'defect' | undefined {
    return this.entryOf(key)?.label;
  }

  /**
   * A pool extended by new rows (`prev` may be undefined: a new pool). A new row replaces any row of
   * either class with the same key, so an image is counted once, under its latest label; it stays
   * reviewed when it replaces a reviewed row of the same class. Within `add`, the last row of an image
   * wins, and an image in both classes counts as a defect.
   */
  static merge(prev: CalibrationPool | undefined, add: { good: readonly KeyedRow[]; defect?: readonly KeyedRow[] | undefined; excluded: number }): CalibrationPool {
    const wasReviewed = (label: 'good' | 'defect') => (key: string) => {
      const e = prev?.entryOf(key);
      return e !== undefined && e.label === label && e.reviewed;
    };
    // One row per image: the last of a class wins, and an image given as both good and defective is a defect.
    const defects = lastPerKey((add.defect ?? []).map(({ source: _s, ...r }) => r));
    const defectKeys = new Set(defects.map((r) => r.key));
    const good = toRows(lastPerKey(add.good).filter((r) => !defectKeys.has(r.key)), wasReviewed('good'));
    const defect = toRows(defects, wasReviewed('defect'));
    const drop = new Set([...add.good, ...(add.defect ?? [])].map((k) => k.key));
    return new CalibrationPool(replace(prev?.goodRows ?? EMPTY, drop, good), replace(prev?.defectRows ?? EMPTY, drop, defect), (prev?.excluded ?? 0) + add.excluded);
  }

  /** The pool as {@link CalibrationScores} for the threshold rules. */
  scores(): CalibrationScores {
    const g = this.goodRows.scores;
    const good = { imageScores: column(g, 0), mapMaxima: column(g, 1), mapMinima: column(g, 2), excluded: this.excluded };
    return this.defect.rows > 0 ? { good, defect: { imageScores: column(this.defectRows.scores, 0) } } : { good };
  }

  /** The header's summary. */
  summary(): CalibrationSummary {
    const reviewed = this.reviewed;
    return { good: this.good.rows, defect: this.defect.rows, sources: this.sources, excluded: this.excluded, ...(reviewed ? { reviewed } : {}) };
  }

  /** The file sections. */
  sections(): { name: string; data: Float32Array | Uint8Array; shape: number[] }[] {
    const out: { name: string; data: Float32Array | Uint8Array; shape: number[] }[] = [];
    for (const [rows, scores, keys, flags] of [
      [this.goodRows, CALIBRATION_SECTIONS.good, CALIBRATION_SECTIONS.goodKeys, CALIBRATION_SECTIONS.goodFlags],
      [this.defectRows, CALIBRATION_SECTIONS.defect, CALIBRATION_SECTIONS.defectKeys, CALIBRATION_SECTIONS.defectFlags],
    ] as const) {
      if (count(rows) === 0) continue;
      out.push(
        { name: scores, data: rows.scores, shape: [count(rows), POOL_COLUMNS] },
        { name: keys, data: rows.keys, shape: [count(rows), KEY_BYTES] },
        { name: flags, data: rows.flags, shape: [count(rows)] },
      );
    }
    return out;
  }

  /** The pool read back from a file's sections and header summary. Throws 'MODEL_FORMAT' when they disagree. */
  static fromSections(summary: CalibrationSummary, sections: ReadonlyMap<string, ArrayLike<number>>, file: string): CalibrationPool {
    const read = (scores: string, keys: string, flagsName: string, expected: number, sources?: CalibrationSources): Rows => {
      const s = sections.get(scores) as Float32Array | undefined;
      const k = sections.get(keys) as Uint8Array | undefined;
      const f = sections.get(flagsName) as Uint8Array | undefined;
      const rows: Rows = { scores: s ?? new Float32Array(0), keys: k ?? new Uint8Array(0), flags: f ?? flagsFromOrder(expected, sources) };
      const flagsOk = rows.flags.length === expected && rows.flags.every((x) => (x & ~REVIEWED_FLAG) <= SOURCE_CODE.added);
      if (count(rows) !== expected || rows.keys.length !== expected * KEY_BYTES || !flagsOk || !rows.scores.every(Number.isFinite)) {
        throw new PartscanError('MODEL_FORMAT', `${file}: the calibration score sections do not match the header's calibration summary.`, {
          file,
          remedy: 're-fit the model, or copy it again from its source',
        });
      }
      return rows;
    };
    const good = read(CALIBRATION_SECTIONS.good, CALIBRATION_SECTIONS.goodKeys, CALIBRATION_SECTIONS.goodFlags, summary.good, summary.sources);
    const defect = read(CALIBRATION_SECTIONS.defect, CALIBRATION_SECTIONS.defectKeys, CALIBRATION_SECTIONS.defectFlags, summary.defect);
    const pool = new CalibrationPool(good, defect, summary.excluded);
    // With flags (format ≥ 1.6) the header's counts are the flags' counts; a header edited apart from its sections is refused.
    const flagged = sections.has(CALIBRATION_SECTIONS.goodFlags) || sections.has(CALIBRATION_SECTIONS.defectFlags);
    const counts = (c: CalibrationSummary): number[] => [c.sources.leaveOneOut, c.sources.heldOut, c.sources.added, c.reviewed?.good ?? 0, c.reviewed?.defect ?? 0];
    if (flagged && counts(pool.summary()).join() !== counts(summary).join()) {
      throw new PartscanError('MODEL_FORMAT', `${file}: the header's calibration summary does not match the calibration pool's row flags.`, {
        file,
        remedy: 're-fit the model, or copy it again from its source',
      });
    }
    return pool;
  }
}
