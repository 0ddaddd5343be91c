/**
 * A model's calibration pool: the out-of-sample scores its thresholds were chosen from, kept in the
 * file (sections `calibration.good` and `calibration.defect`, float32 [rows, 3]: image score, raw map
 * maximum, raw map minimum; `calibration.goodKeys` / `calibration.defectKeys`, uint8 [rows, 32]: the
 * sha256 of each image's bytes) so that `partscan calibrate` can move the operating point without
 * refitting, and reviewed parts can join later. The keys make joining idempotent: an image given again
 * (the same defects at a second `calibrate`, a part relabelled in review) replaces its row instead of
 * counting twice. The header's `calibration` field says how many rows came from where.
 */

import { PartscanError } from '../errors.js';
import type { CalibrationScores } from '../postprocess/operating-point.js';

/** Section names of the pool. */
export const CALIBRATION_SECTIONS = {
  good: 'calibration.good',
  defect: 'calibration.defect',
  goodKeys: 'calibration.goodKeys',
  defectKeys: 'calibration.defectKeys',
} as const;

/** Bytes of a row key (a sha256). */
export const KEY_BYTES = 32;

/** Columns of a pool row. */
export const POOL_COLUMNS = 3;

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
  /** Labels from QA review that joined the pool (issue 25), when any. */
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
}

/** One class's rows and keys. */
interface Rows {
  scores: Float32Array;
  keys: Uint8Array;
}

function toRows(items: readonly KeyedRow[]): Rows {
  const scores = new Float32Array(items.length * POOL_COLUMNS);
  const keys = new Uint8Array(items.length * KEY_BYTES);
  items.forEach(({ row, key }, i) => {
    if (row.length !== POOL_COLUMNS || !row.every(Number.isFinite)) {
      throw new PartscanError('THRESHOLD', `A calibration score row must hold ${POOL_COLUMNS} finite numbers, got [${row.join(', ')}].`, { remedy: 'check the model and the images; scores must be finite' });
    }
    if (!/^[0-9a-f]{64}$/.test(key)) throw new PartscanError('THRESHOLD', `A calibration row key must be a sha256 in hex, got "${key}".`);
    scores.set(row, i * POOL_COLUMNS);
    keys.set(Buffer.from(key, 'hex'), i * KEY_BYTES);
  });
  return { scores, keys };
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
  keep.forEach((i, j) => {
    scores.set(r.scores.subarray(i * POOL_COLUMNS, (i + 1) * POOL_COLUMNS), j * POOL_COLUMNS);
    keys.set(r.keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES), j * KEY_BYTES);
  });
  scores.set(add.scores, keep.length * POOL_COLUMNS);
  keys.set(add.keys, keep.length * KEY_BYTES);
  return { scores, keys };
}

function column(m: Float32Array, c: number): Float32Array {
  const n = m.length / POOL_COLUMNS;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = m[i * POOL_COLUMNS + c]!;
  return out;
}

const EMPTY: Rows = { scores: new Float32Array(0), keys: new Uint8Array(0) };

/** The out-of-sample scores thresholds are chosen from (see the module comment). */
export class CalibrationPool {
  private constructor(
    private readonly goodRows: Rows,
    private readonly defectRows: Rows,
    /** Where the good rows came from. */
    readonly sources: CalibrationSources,
    /** Good images left out as likely defects. */
    readonly excluded: number,
    /** Reviewed labels that joined. */
    readonly reviewed: { good: number; defect: number } | undefined,
  ) {}

  /** Number of good rows. */
  get good(): { rows: number } {
    return { rows: count(this.goodRows) };
  }

  /** Number of defect rows. */
  get defect(): { rows: number } {
    return { rows: count(this.defectRows) };
  }

  /** Whether the pool holds an image (by the sha256 of its bytes), and as what. */
  labelOf(key: string): 'good' | 'defect' | undefined {
    for (let i = 0; i < count(this.defectRows); i++) if (keyAt(this.defectRows, i) === key) return 'defect';
    for (let i = 0; i < count(this.goodRows); i++) if (keyAt(this.goodRows, i) === key) return 'good';
    return undefined;
  }

  /**
   * A pool extended by new rows (`prev` may be undefined: a new pool). A new row replaces any row of
   * either class with the same key, so an image is counted once, under its latest label.
   */
  static merge(
    prev: CalibrationPool | undefined,
    add: { good: readonly KeyedRow[]; defect?: readonly KeyedRow[] | undefined; sources: CalibrationSources; excluded: number; reviewed?: { good: number; defect: number } },
  ): CalibrationPool {
    const s = prev?.sources ?? { leaveOneOut: 0, heldOut: 0, added: 0 };
    const r = prev?.reviewed || add.reviewed ? { good: (prev?.reviewed?.good ?? 0) + (add.reviewed?.good ?? 0), defect: (prev?.reviewed?.defect ?? 0) + (add.reviewed?.defect ?? 0) } : undefined;
    const good = toRows(add.good);
    const defect = toRows(add.defect ?? []);
    const drop = new Set([...add.good, ...(add.defect ?? [])].map((k) => k.key));
    return new CalibrationPool(
      replace(prev?.goodRows ?? EMPTY, drop, good),
      replace(prev?.defectRows ?? EMPTY, drop, defect),
      { leaveOneOut: s.leaveOneOut + add.sources.leaveOneOut, heldOut: s.heldOut + add.sources.heldOut, added: s.added + add.sources.added },
      (prev?.excluded ?? 0) + add.excluded,
      r,
    );
  }

  /** The pool as {@link CalibrationScores} for the threshold rules. */
  scores(): CalibrationScores {
    const g = this.goodRows.scores;
    const good = { imageScores: column(g, 0), mapMaxima: column(g, 1), mapMinima: column(g, 2) };
    return this.defect.rows > 0 ? { good, defect: { imageScores: column(this.defectRows.scores, 0) } } : { good };
  }

  /** The header's summary. */
  summary(): CalibrationSummary {
    return { good: this.good.rows, defect: this.defect.rows, sources: { ...this.sources }, excluded: this.excluded, ...(this.reviewed ? { reviewed: { ...this.reviewed } } : {}) };
  }

  /** The file sections. */
  sections(): { name: string; data: Float32Array | Uint8Array; shape: number[] }[] {
    const out: { name: string; data: Float32Array | Uint8Array; shape: number[] }[] = [];
    for (const [rows, scores, keys] of [
      [this.goodRows, CALIBRATION_SECTIONS.good, CALIBRATION_SECTIONS.goodKeys],
      [this.defectRows, CALIBRATION_SECTIONS.defect, CALIBRATION_SECTIONS.defectKeys],
    ] as const) {
      if (count(rows) === 0) continue;
      out.push({ name: scores, data: rows.scores, shape: [count(rows), POOL_COLUMNS] }, { name: keys, data: rows.keys, shape: [count(rows), KEY_BYTES] });
    }
    return out;
  }

  /** The pool read back from a file's sections and header summary. Throws 'MODEL_FORMAT' when they disagree. */
  static fromSections(summary: CalibrationSummary, sections: ReadonlyMap<string, ArrayLike<number>>, file: string): CalibrationPool {
    const read = (scores: string, keys: string, expected: number): Rows => {
      const s = sections.get(scores) as Float32Array | undefined;
      const k = sections.get(keys) as Uint8Array | undefined;
      const rows: Rows = { scores: s ?? new Float32Array(0), keys: k ?? new Uint8Array(0) };
      if (count(rows) !== expected || rows.keys.length !== expected * KEY_BYTES || !rows.scores.every(Number.isFinite)) {
        throw new PartscanError('MODEL_FORMAT', `${file}: the calibration score sections do not match the header's calibration summary.`, {
          file,
          remedy: 're-fit the model, or copy it again from its source',
        });
      }
      return rows;
    };
    const good = read(CALIBRATION_SECTIONS.good, CALIBRATION_SECTIONS.goodKeys, summary.good);
    const defect = read(CALIBRATION_SECTIONS.defect, CALIBRATION_SECTIONS.defectKeys, summary.defect);
    return new CalibrationPool(good, defect, summary.sources, summary.excluded, summary.reviewed);
  }
}
