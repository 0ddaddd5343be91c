/**
 * Text form of a model's thresholds and operating point (`fit`, `info`, `calibrate`): the thresholds,
 * the false-reject rate they promise with its 95% bound, and the escape rate on labelled defects.
 */

import type { Thresholds } from '../postprocess/thresholds.js';
import type { ReviewJoinSummary } from '../model/types.js';
import { fmtNum, fmtPct as pct } from './format.js';


/**
 * Lines: thresholds, then what they promise (when the model records an operating point). Labels are
 * padded to `labelWidth` characters (11 as `fit` and `calibrate` align; `info` aligns on 12) and the
 * continuation lines indented as far.
 */
export function formatOperatingPoint(t: Thresholds, labelWidth = 11): string {
  const indent = ' '.repeat(labelWidth);
  const label = (name: string): string => name.padEnd(labelWidth);
  const lines = [`${label('thresholds')}image ${fmtNum(t.image)} (${t.method.image}), pixel ${fmtNum(t.pixel)} (${t.method.pixel})${t.band ? `, band ${t.band.low.toFixed(3)}..${t.band.high}` : ''}`];
  const op = t.operatingPoint;
  if (!op) return lines.join('\n');
  const excluded = op.goodScores.excluded ? ` (${op.goodScores.excluded} left out as likely defects)` : '';
  lines.push(
    `${label('operating')}false rejects: target ${pct(op.falseRejectTarget)}, estimated ${pct(op.image.rate)} (95% bound ${pct(op.image.upper95)}) from ${op.goodScores.used} out-of-sample good scores${excluded}`,
    `${indent}good parts showing a region: estimated ${pct(op.pixel.rate)} (95% bound ${pct(op.pixel.upper95)})`,
  );
  if (op.escape) {
    lines.push(`${indent}escapes on ${op.escape.defects} labelled defects: ${pct(op.escape.rate)} (95% interval ${pct(op.escape.lower95)}–${pct(op.escape.upper95)})`);
  }
  if (op.reviewBand) lines.push(`${indent}review band: UNCERTAIN from ${fmtNum(op.reviewBand.threshold)} (false-reject rate ${pct(op.reviewBand.falseRejectRate)}) to the image threshold`);
  return lines.join('\n');
}

/** One line: what a QA review brought (`calibrate --review`, `fit --resume --review`). */
export function formatReviewJoin(r: ReviewJoinSummary): string {
  const how = [
    r.fitted ? `${r.fitted} good added to the statistics` : '',
    r.recorded ? `${r.recorded} with the run's recorded scores` : '',
    r.scored ? `${r.scored} scored now` : '',
    r.inPool ? `${r.inPool} already in the calibration pool` : '',
  ].filter(Boolean);
  return `review     ${r.good + r.defect} reviewed parts (${r.good} good, ${r.defect} defect)${how.length ? `: ${how.join(', ')}` : ''}`;
}
