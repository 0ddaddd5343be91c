/**
 * The drift-descriptor charts of a line monitor, one EWMA chart per descriptor (brightness, contrast,
 * per-channel means and spreads, colour ratio, sharpness), in one of two kinds:
 *
 * - **envelope** (models of format ≥ 1.4): one-sided charts of the share of images that lie beyond
 *   the training images' envelope ({@link DescriptorEnvelope}). Each image contributes
 *   (beyond − p)/√(a(1−a)), with p the training images' own share beyond (≈ a =
 *   {@link ENVELOPE_TAIL}): mean 0 and variance ≤ 1 for good images of any fitted sub-population,
 *   +2 (clipped from 3) for each image beyond, −⅓ for each image among the training images.
 * - **median** (older files, which store no envelope): two-sided charts of each image's robust z
 *   against the median of all training images, divided by the spread the training images showed.
 *
 * Either alarms only when the change is also large in absolute terms: the images beyond the envelope
 * lie a median of at least `minShift` from the nearest tenth of the training images (envelope), or
 * the window's median has moved by at least `minShift` (median charts).
 */

import type { DriftModel } from '../guards/drift.js';
import { median } from '../guards/robust-stats.js';
import type { MonitorReference } from '../model/monitor-reference.js';
import { DescriptorEnvelope, ENVELOPE_TAIL, type EnvelopeObservation } from './envelope.js';
import { EwmaChart, slide, type EwmaSettings } from './ewma-chart.js';
import { descriptorFamily, envelopeReason, medianReason } from './reasons.js';

/** Which descriptor charts a monitor runs. */
export type DescriptorChartKind = 'envelope' | 'median' | 'none';

/** What the descriptor charts need of the monitor's settings. */
export interface DescriptorChartSettings extends EwmaSettings {
  window: number;
  /** Practical-significance floor per descriptor (fraction: 0.03 = 3 %). */
  minShift: Readonly<Record<string, number>>;
}

/** Floor of descriptors without their own (custom drift models). */
const DEFAULT_SHIFT = 0.03;

/** One chart per descriptor of the drift model, of the kind the model file supports. */
export class DescriptorCharts {
  readonly kind: DescriptorChartKind;
  /** The charts, in drift-model order of {@link DescriptorCharts.indices}. */
  readonly charts: EwmaChart[] = [];
  /** Drift-model feature index of each chart. */
  readonly indices: number[] = [];
  /** Per descriptor family that has given a reason: the direction it moved. */
  private readonly said = new Map<string, number>();
  private readonly envelope: DescriptorEnvelope | undefined;
  /** Per drift feature: what its robust z is divided by (median charts). */
  private readonly zScale: number[] = [];
  private readonly windowZ: number[][] = [];
  private readonly windowObs: EnvelopeObservation[] = [];

  constructor(
    private readonly drift: DriftModel | undefined,
    reference: MonitorReference | undefined,
    private readonly s: DescriptorChartSettings,
  ) {
    if (!drift) {
      this.kind = 'none';
      return;
    }
    const features = drift.features;
    if (reference?.envelope) {
      this.kind = 'envelope';
      this.envelope = new DescriptorEnvelope(reference.envelope.z, drift);
      features.forEach((name, j) => {
        this.indices.push(j);
        this.charts.push(new EwmaChart(name, true));
      });
      return;
    }
    this.kind = 'median';
    const zScale = reference?.driftZScale;
    features.forEach((name, j) => {
      const scale = zScale && zScale.length === features.length ? zScale[j]! : 1;
      this.zScale.push(scale);
      // A descriptor that never varied in training (the colour ratio of grayscale images) has no median chart.
      if (scale <= 1e-6) return;
      this.indices.push(j);
      this.charts.push(new EwmaChart(name, false));
    });
  }

  /** Adds one image's drift z; returns the reasons of charts that alarmed at this image. */
  push(z: readonly number[], limit: number): string[] {
    const fresh: string[] = [];
    const obs = this.envelope?.observe(z);
    // The envelope charts read their observations; the median charts the z rows.
    if (obs) slide(this.windowObs, obs, this.s.window);
    else slide(this.windowZ, [...z], this.s.window);
    this.charts.forEach((chart, c) => {
      const j = this.indices[c]!;
      const raised = obs ? this.updateEnvelope(chart, j, obs, limit) : chart.update(z[j]! / this.zScale[j]!, limit, this.s, () => this.medianMatters(j));
      if (raised && !this.isEcho(j)) fresh.push(this.reason(chart, j, limit));
    });
    return fresh;
  }

  /**
   * Whether descriptor j's alarm only repeats one already given: descriptors of one family
   * (brightness and the channel means, contrast and the channel spreads; copies of each other for
   * grayscale images) that move the same way say it once. A channel that moves the other way (a colour
   * cast) still gets its own reason.
   */
  private isEcho(j: number): boolean {
    const f = descriptorFamily(this.drift!.features[j]!);
    const sign = Math.sign(this.kind === 'envelope' ? this.beyondOffset(j) : this.medianShift(j));
    if (this.said.get(f) === sign) return true;
    if (!this.said.has(f)) this.said.set(f, sign);
    return false;
  }

  /** Current EWMA of every chart, in chart order. */
  ewmas(): number[] {
    return this.charts.map((c) => c.ewma);
  }

  private updateEnvelope(chart: EwmaChart, j: number, obs: EnvelopeObservation, limit: number): boolean {
    const p = this.envelope!.expectedShare[j]!;
    const u = ((obs.beyond[j] ? 1 : 0) - p) / Math.sqrt(ENVELOPE_TAIL * (1 - ENVELOPE_TAIL));
    return chart.update(u, limit, this.s, () => Math.abs(this.beyondOffset(j)) >= this.floor(j));
  }

  /** Median offset of the window's images beyond descriptor j's envelope (0 when none is). */
  private beyondOffset(j: number): number {
    const offsets = this.windowObs.filter((o) => o.beyond[j]).map((o) => o.offset[j]!);
    if (!offsets.length) return 0;
    const m = median(offsets.map(Math.abs));
    return median(offsets) < 0 ? -m : m;
  }

  /** Median change of descriptor j over the window, in transformed units (median charts). */
  private medianShift(j: number): number {
    return median(this.windowZ.map((row) => row[j]!)) * this.drift!.scale[j]!;
  }

  private medianMatters(j: number): boolean {
    return Math.abs(this.medianShift(j)) >= this.floor(j);
  }

  /** The floor of descriptor j in transformed units: ln(1 + minShift) for log descriptors. */
  private floor(j: number): number {
    const d = this.drift!;
    const shift = this.s.minShift[d.features[j]!] ?? DEFAULT_SHIFT;
    return d.transform[j] === 'log' ? Math.log1p(shift) : shift * Math.max(Math.abs(d.center[j]!), 1e-12);
  }

  private reason(chart: EwmaChart, j: number, limit: number): string {
    const d = this.drift!;
    const base = { feature: d.features[j]!, transform: d.transform[j]!, images: (this.kind === 'envelope' ? this.windowObs : this.windowZ).length };
    if (this.kind === 'envelope') {
      const beyond = this.windowObs.filter((o) => o.beyond[j]).length;
      const how = `EWMA of the share beyond ${chart.ewma.toFixed(2)} > ${limit.toFixed(2)}`;
      return envelopeReason({ ...base, beyond, expected: this.envelope!.expectedShare[j]!, offset: this.beyondOffset(j), how });
    }
    return medianReason({ ...base, delta: this.medianShift(j), how: `EWMA of robust z ${chart.ewma.toFixed(2)} beyond ±${limit.toFixed(2)}` });
  }
}
