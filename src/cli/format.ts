/**
 * Output formatting for the CLI: JSON that never holds NaN (it becomes null), aligned text tables,
 * byte sizes and the one-line error message.
 */

import { PartscanError } from '../errors.js';

/**
 * JSON text of `value` in which non-finite numbers (NaN, ±Infinity) are `null`, typed arrays are
 * left out and Maps become objects: what `--json` prints, so every consumer can parse it.
 */
export function toJson(value: unknown, indent = 2): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) return null;
      if (ArrayBuffer.isView(v)) return undefined;
      if (v instanceof Map) return Object.fromEntries(v);
      return v;
    },
    indent,
  );
}

/** Left-aligned text table with a header row and a dashed rule; numbers should be pre-formatted. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A number for people: fixed decimals, 'n/a' for NaN / missing. */
export function fmtNum(v: number | undefined | null, digits = 3): string {
  return v === undefined || v === null || !Number.isFinite(v) ? 'n/a' : v.toFixed(digits);
}

/** A rate as a percentage, with two decimals below 1 % so small targets stay readable ("0.50%", "12.5%"); "-" when not finite. */
export function fmtPct(r: number): string {
  if (!Number.isFinite(r)) return '-';
  return `${(100 * r).toFixed(r > 0 && r < 0.00995 ? 2 : 1)}%`;
}

/** Byte count for people (1024-based: "12.3 MiB"). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/**
 * The message printed after `partscan: `: a PartscanError's message (it already names the file and
 * the remedy), else the error's own message. The stack is added only when PARTSCAN_DEBUG=1.
 */
export function errorLine(e: unknown, debug = process.env.PARTSCAN_DEBUG === '1'): string {
  const message = e instanceof Error ? e.message : String(e);
  const oneLine = message.replace(/\s*\n\s*/g, ' ');
  if (!debug) return oneLine;
  const stack = e instanceof Error && e.stack ? `\n${e.stack}` : '';
  const cause = e instanceof PartscanError && e.cause instanceof Error && e.cause.stack ? `\ncaused by: ${e.cause.stack}` : '';
  return oneLine + stack + cause;
}

/**
 * Control characters a terminal would act on — C0 other than newline and tab (ESC starts colour,
 * cursor and title sequences), DEL, C1 (0x9b is a one-byte CSI) — and the bidirectional overrides that
 * reorder what is shown.
 */
const TERMINAL_CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text that is safe to print: every character of {@link TERMINAL_CONTROLS} shown as a `\u00XX`
 * escape. Model headers, file names and queue payloads are input: a backbone name holding ESC
 * sequences must not retitle the terminal or hide a line. The escape is also JSON's, so `--json`
 * output stays valid JSON with the same values.
 */
export function terminalSafe(text: string): string {
  return text.replace(TERMINAL_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Where the CLI writes; tests may capture it. */
export interface CliIo {
  /** Writes to stdout (results). */
  out: (text: string) => void;
  /** Writes to stderr (messages, warnings). */
  err: (text: string) => void;
}
