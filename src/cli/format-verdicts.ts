/**
 * Text form of the verdict quality (`eval`, `demo`): one row per set with the rates a line engineer
 * signs off on and the confusion counts behind them.
 */

import type { VerdictCounts, VerdictQuality } from '../metrics/verdicts.js';
import { shippedRowIndex, type OperatingCurvePoint } from '../metrics/operating-curve.js';
import type { ShippedOperatingPoint } from '../model/evaluate.js';
import { fmtNum, fmtPct as pct, formatTable } from './format.js';


function counts(c: VerdictCounts): string {
  return `${c.OK}/${c.NG}/${c.UNCERTAIN}`;
}

/** Table of escape rate, false-reject rate, UNCERTAIN share and OK/NG/UNCERTAIN counts per class. */
export function formatVerdictTable(v: VerdictQuality): string {
  const rows = [['all', v] as const, ...Object.entries(v.perDefect)].map(([name, s]) => [
    name,
    pct(s.escapeRate),
    pct(s.falseRejectRate),
    pct(s.uncertainShare),
    counts(s.confusion.good),
    counts(s.confusion.defect),
  ]);
  return formatTable(['verdicts', 'escape', 'false reject', 'uncertain', 'good OK/NG/?', 'defect OK/NG/?'], rows);
}

/** One line: "verdicts: defective 22 NG, 1 OK (escape 4.2%), 1 UNCERTAIN; good 9 OK, 1 NG (false reject 10.0%), 0 UNCERTAIN". */
export function formatVerdictLine(v: VerdictQuality): string {
  const { good, defect } = v.confusion;
  return (
    `verdicts: defective ${defect.NG} NG, ${defect.OK} OK (escape ${pct(v.escapeRate)}), ${defect.UNCERTAIN} UNCERTAIN; ` +
    `good ${good.OK} OK, ${good.NG} NG (false reject ${pct(v.falseRejectRate)}), ${good.UNCERTAIN} UNCERTAIN`
  );
}

/**
 * The operating curve measured on a test set, with the model's shipped threshold placed on it (the row
 * marked "shipped", between the curve points it falls between).
 */
export function formatOperatingCurve(points: readonly OperatingCurvePoint[], shipped: ShippedOperatingPoint | null): string {
  const rows: string[][] = points.map((p) => [`at ${pct(p.falseRejectRate)}`, pct(p.measuredFalseRejectRate), pct(p.escapeRate), fmtNum(p.threshold)]);
  if (shipped) {
    const target = shipped.targetFalseRejectRate !== null ? ` (target ${pct(shipped.targetFalseRejectRate)})` : '';
    const row = [`shipped${target}`, pct(shipped.falseRejectRate), pct(shipped.escapeRate), fmtNum(shipped.threshold)];
    rows.splice(shippedRowIndex(points, shipped.threshold), 0, row);
  }
  return formatTable(['operating point', 'false reject', 'escape', 'threshold'], rows);
}
