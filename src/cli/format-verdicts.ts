/**
 * Text form of the verdict quality (`eval`, `demo`): one row per set with the rates a line engineer
 * signs off on and the confusion counts behind them.
 */

import type { VerdictCounts, VerdictQuality } from '../metrics/verdicts.js';
import type { OperatingCurvePoint } from '../metrics/operating-curve.js';
import type { ShippedOperatingPoint } from '../model/evaluate.js';
import { fmtNum, fmtPct as pct, formatTable } from './format.js';


function counts(c: VerdictCounts): string {
  return `${c.OK}/${c.NG}/${c.UNCERTAIN}`;
}

/** Table of escape rate, false-reject rate, UNCERTAIN share and OK/NG/UNCERTAIN counts per class. */
export function formatVerdictTable(v: VerdictQuality): string {
  const rows = [['all', v] as const, ...Object.entries(v.per_defect)].map(([name, s]) => [
    name,
    pct(s.escape_rate),
    pct(s.false_reject_rate),
    pct(s.uncertain_share),
    counts(s.confusion.good),
    counts(s.confusion.defect),
  ]);
  return formatTable(['verdicts', 'escape', 'false reject', 'uncertain', 'good OK/NG/?', 'defect OK/NG/?'], rows);
}

/** One line: "verdicts: defective 22 NG, 1 OK (escape 4.2%), 1 UNCERTAIN; good 9 OK, 1 NG (false reject 10.0%), 0 UNCERTAIN". */
export function formatVerdictLine(v: VerdictQuality): string {
  const { good, defect } = v.confusion;
  return (
    `verdicts: defective ${defect.NG} NG, ${defect.OK} OK (escape ${pct(v.escape_rate)}), ${defect.UNCERTAIN} UNCERTAIN; ` +
    `good ${good.OK} OK, ${good.NG} NG (false reject ${pct(v.false_reject_rate)}), ${good.UNCERTAIN} UNCERTAIN`
  );
}

/**
 * The operating curve measured on a test set, with the model's shipped threshold placed on it (the row
 * marked "shipped", between the curve points it falls between).
 */
export function formatOperatingCurve(points: readonly OperatingCurvePoint[], shipped: ShippedOperatingPoint | null): string {
  const rows: string[][] = points.map((p) => [`at ${pct(p.false_reject_rate)}`, pct(p.measured_false_reject_rate), pct(p.escape_rate), fmtNum(p.threshold)]);
  if (shipped) {
    const target = shipped.target_false_reject_rate !== null ? ` (target ${pct(shipped.target_false_reject_rate)})` : '';
    const row = [`shipped${target}`, pct(shipped.false_reject_rate), pct(shipped.escape_rate), fmtNum(shipped.threshold)];
    // Thresholds fall as the false-reject rate rises: the shipped row goes where its threshold belongs.
    const at = points.findIndex((p) => !(p.threshold > shipped.threshold));
    rows.splice(at < 0 ? rows.length : at, 0, row);
  }
  return formatTable(['operating point', 'false reject', 'escape', 'threshold'], rows);
}
