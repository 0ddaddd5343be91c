/**
 * The image-score charts of a line monitor: whether image scores run systematically above the
 * out-of-sample scores good images got at fit (`MonitorReference.scores`).
 *
 * - A one-sided EWMA of each score's normal score against the reference (a rank-based,
 *   distribution-free EWMA: Φ⁻¹ of its mid-rank percentile; standard normal for a good image whatever
 *   the score distribution, and bounded by the reference size).
 * - A one-sided Mann–Whitney test of the last `window` scores against the reference.
 *
 * Lower scores never alarm: they are not a quality problem (a blank or shifted image shows in the
 * drift charts). Either test alarms only when the shift is also large enough to matter: shifted by
 * the window's median shift, the reference scores would put at least `minNgRise` more of good parts
 * above the NG threshold (above the reference's 99th percentile when the model has no threshold).
 */

import { median } from '../guards/robust-stats.js';
import type { MonitorReference } from '../model/monitor-reference.js';
import { EwmaChart, slide, type EwmaSettings } from './ewma-chart.js';
import { scoreReason } from './reasons.js';
import { mannWhitney, normalScore, normalUpperTail, percentileIn, rankIn } from './spc.js';

/** What the score charts need of the monitor's settings. */
export interface ScoreChartSettings extends EwmaSettings {
  window: number;
  alpha: number;
  minNgRise: number;
}

/** Share of ascending `sorted` above x. */
function shareAbove(sorted: readonly number[], x: number): number {
  const { below, equal } = rankIn(sorted, x);
  return (sorted.length - below - equal) / sorted.length;
}

/** The score EWMA and the window test against one reference. */
export class ScoreCharts {
  readonly chart = new EwmaChart('image score', true);
  /** Share of reference scores above the model's threshold; null without a threshold. */
  readonly expectedNg: number | null;
  private readonly scores: readonly number[];
  /** The reference's median (fixed: the window's median shift is measured against it). */
  private readonly referenceMedian: number;
  private readonly gateThreshold: number;
  private readonly gateExpected: number;
  private readonly window: number[] = [];
  private windowTestAlarmed = false;

  constructor(
    reference: MonitorReference,
    private readonly threshold: number | undefined,
    private readonly s: ScoreChartSettings,
  ) {
    this.scores = reference.scores;
    this.referenceMedian = median(this.scores);
    this.expectedNg = threshold !== undefined ? shareAbove(this.scores, threshold) : null;
    this.gateThreshold = threshold ?? this.scores[Math.min(this.scores.length - 1, Math.floor(0.99 * this.scores.length))]!;
    this.gateExpected = shareAbove(this.scores, this.gateThreshold);
  }

  /** Adds one image score; returns the reasons of the tests that alarmed at this image. */
  push(score: number, limit: number): string[] {
    slide(this.window, score, this.s.window);
    const fresh: string[] = [];
    // The two tests say the same thing: only the first to alarm gives a reason.
    const said = this.chart.alarmed || this.windowTestAlarmed;
    if (this.chart.update(normalScore(this.scores, score), limit, this.s, () => this.matters()) && !said) {
      fresh.push(this.reason(`EWMA of score ranks ${this.chart.ewma.toFixed(2)} > ${limit.toFixed(2)}`));
    }
    if (!this.windowTestAlarmed && this.window.length >= Math.ceil(this.s.window / 2)) {
      const t = mannWhitney(this.scores, this.window);
      const p = normalUpperTail(t.z);
      if (p < this.s.alpha && this.matters()) {
        this.windowTestAlarmed = true;
        if (!said && !fresh.length) fresh.push(this.reason(`one-sided Mann–Whitney test of the last ${this.window.length} vs the reference: p = ${p.toExponential(1)}`));
      }
    }
    return fresh;
  }

  /** Share of good parts above the gate's threshold if every reference score moved by the window's median shift. */
  private predictedShare(): number {
    const shift = median(this.window) - this.referenceMedian;
    return shareAbove(this.scores, this.gateThreshold - shift);
  }

  private matters(): boolean {
    return this.predictedShare() - this.gateExpected >= this.s.minNgRise;
  }

  private reason(how: string): string {
    return scoreReason({
      images: this.window.length,
      percentile: percentileIn(this.scores, median(this.window)),
      predicted: this.predictedShare(),
      expected: this.gateExpected,
      hasThreshold: this.threshold !== undefined,
      how,
    });
  }
}
