/**
 * Line monitoring: statistical process control over a stream of scored images, to catch a shift of
 * the whole population (new camera, new setup, other lighting) that no single image shows.
 *
 * Fed with each {@link ScoreResult} in production order, a {@link LineMonitor} runs, against what the
 * fit saw (the model's {@link MonitorReference}, format 1.2, and its drift model):
 * - an EWMA chart of the image scores' normal scores against the good reference scores (a rank-based,
 *   distribution-free EWMA: each score becomes Φ⁻¹ of its percentile among the reference scores);
 * - one EWMA chart per drift descriptor (brightness, contrast, sharpness...) on its robust z from the
 *   drift model, divided by the spread the training images showed;
 * - a Mann–Whitney test of the last `window` image scores against the reference scores.
 * Each observation is clipped to ±`clip` before it enters an EWMA (a Huber-type robust EWMA), and a
 * normal score is bounded by the reference size: a defective part moves a chart by a bounded step, so
 * a few percent of real defects do not raise an alarm, while a shift of every image does.
 * The NG rate of the window and of the run is reported against the rate the reference scores predict;
 * it is not an alarm criterion (defects are not drift).
 */

import { z } from 'zod';
import { PartscanError } from '../errors.js';
import { parseOptionsWithDefaults } from '../options/parse.js';
import { parseDriftModel, type DriftModel } from '../guards/drift.js';
import { median } from '../guards/robust-stats.js';
import type { ModelHeader, ScoreResult } from '../model/model.js';
import { parseMonitorReference, type MonitorReference } from '../model/monitor-reference.js';
import { ewmaLimit, mannWhitney, normalScore, percentileIn } from './spc.js';

/** Options of {@link LineMonitor}. */
export interface LineMonitorOptions {
  /** Images in the rolling window (Mann–Whitney test, window median, NG rate, reasons); default 50. */
  window?: number;
  /** EWMA weight λ of the newest image; default {@link DEFAULT_MONITOR_LAMBDA}. */
  lambda?: number;
  /** EWMA control limit L, in standard deviations of the EWMA; default {@link DEFAULT_MONITOR_LIMIT}. */
  limit?: number;
  /** Each standardised observation is clipped to ±clip before the EWMA; default {@link DEFAULT_MONITOR_CLIP}. */
  clip?: number;
  /** Two-sided significance of the Mann–Whitney window test; default {@link DEFAULT_MONITOR_ALPHA}. */
  alpha?: number;
  /** Per-image chart points kept for {@link RunMonitor.points} (the most recent; default 100 000), so a long-lived monitor stays bounded. */
  maxPoints?: number;
}

/**
 * Default EWMA weight λ: an effective memory of about 2/λ − 1 = 39 images, so one image moves a chart
 * by at most λ·clip = 0.1 while a shift of one standard deviation of every image is caught within
 * about 15–20 images.
 */
export const DEFAULT_MONITOR_LAMBDA = 0.05;
/** Default EWMA limit L (see docs/MONITORING.md for the measured false-alarm rate). */
export const DEFAULT_MONITOR_LIMIT = 4;
/** Default clip of standardised observations: a Huber-type bound on what one image (a defect) contributes. */
export const DEFAULT_MONITOR_CLIP = 2;
/** Default significance of the window test, small because it is repeated at every image. */
export const DEFAULT_MONITOR_ALPHA = 1e-5;

const optionsSchema = z
  .object({
    window: z.number().int().min(10).max(100_000).default(50),
    lambda: z.number().gt(0).lte(1).default(DEFAULT_MONITOR_LAMBDA),
    limit: z.number().gt(0).finite().default(DEFAULT_MONITOR_LIMIT),
    clip: z.number().gt(0).finite().default(DEFAULT_MONITOR_CLIP),
    alpha: z.number().gt(0).lt(0.5).default(DEFAULT_MONITOR_ALPHA),
    maxPoints: z.number().int().min(1).default(100_000),
  })
  .strict();

/** What a monitor needs of a scored image. */
export type MonitorInput = Pick<ScoreResult, 'source' | 'imageScore'> & Partial<Pick<ScoreResult, 'verdict' | 'drift'>>;

/** One image as the control charts saw it (for the report). */
export interface MonitorPoint {
  /** 0-based index in input order. */
  index: number;
  /** Raw image score. */
  score: number;
  /** Verdict, when the model has thresholds. */
  verdict?: string;
  /** EWMA of the scores' normal scores (absent without a reference). */
  scoreEwma?: number;
  /** EWMA of each charted drift feature's scaled robust z, in {@link RunMonitor.features} order. */
  driftEwma: number[];
  /** Control limit (±) of the EWMAs at this image. */
  ewmaLimit: number;
}

/** The run-level monitoring result written to results.json and `score --json` (`monitor`). */
export interface RunMonitor {
  /** Whether any chart or the window test left its limits. */
  alarm: boolean;
  /** 0-based input index of the image at which the first alarm was raised, else null. */
  firstAlarmAt: number | null;
  /** Why, in plain words (at the first alarm, then new reasons as they appear). */
  reasons: string[];
  /** Images monitored. */
  images: number;
  /** NG share of the run and of the last window, and the share the reference predicts (null without thresholds or reference). */
  ngRate: {
    /** NG share of all images monitored. */
    run: number;
    /** NG share of the last window of images. */
    window: number;
    /** NG share the calibration reference predicts; null without thresholds or reference. */
    expected: number | null;
  };
  /** Whether the model had a calibration reference (format ≥ 1.2); without it only the drift charts run. */
  reference: boolean;
  /** Notes on what could not be monitored. */
  notes: string[];
  /** The settings used. */
  settings: Required<LineMonitorOptions>;
  /** Charted drift features (features that never varied in training, and exact duplicates, are left out). */
  features: string[];
  /** Raw image-score threshold, when the model has one. */
  threshold?: number;
  /** Per image, for the control chart. */
  points: MonitorPoint[];
}

interface Chart {
  name: string;
  ewma: number;
  alarmed: boolean;
}

/**
 * Control charts over a stream of scored images. Feed it with {@link LineMonitor.push} in production
 * order; read {@link LineMonitor.result} at any time. The alarm latches: once raised it stays, with the
 * index of the image that raised it.
 *
 * @example
 * const model = await Model.load('tile.partscan');
 * const monitor = new LineMonitor(model);
 * for (const file of files) monitor.push(await model.score(file));
 * const { alarm, firstAlarmAt, reasons } = monitor.result();
 */
export class LineMonitor {
  private readonly opts: Required<LineMonitorOptions>;
  private readonly reference: MonitorReference | undefined;
  private readonly drift: DriftModel | undefined;
  private readonly threshold: number | undefined;
  private readonly expectedNg: number | null;
  private readonly notes: string[] = [];
  /** Features with a chart: index into the drift model's features, and the spread to divide by. */
  private readonly charted: { j: number; scale: number }[] = [];
  private readonly scoreChart: Chart | undefined;
  private readonly driftCharts: Chart[];
  private readonly windowScores: number[] = [];
  private readonly windowZ: number[][] = [];
  private readonly windowNg: boolean[] = [];
  private readonly points: MonitorPoint[] = [];
  private readonly reasons: string[] = [];
  private firstAlarmAt: number | null = null;
  private windowTestAlarmed = false;
  private ngRun = 0;
  private count = 0;

  /**
   * @param model a loaded or fitted model (or its header): its thresholds, drift model and
   *   monitoring reference are the in-control state.
   * @param options window, EWMA weight and limit, clipping, window-test significance; invalid values
   *   throw a typed 'OPTIONS' error naming the field.
   */
  constructor(model: { header: ModelHeader; modelFile?: string | undefined } | ModelHeader, options: LineMonitorOptions = {}) {
    this.opts = parseOptionsWithDefaults(
      optionsSchema,
      options,
      'monitor',
      'use window ≥ 10, 0 < lambda ≤ 1, limit > 0, clip > 0, 0 < alpha < 0.5, maxPoints ≥ 1 (integer)',
    );
    const header = 'header' in model ? model.header : model;
    const file = 'header' in model ? model.modelFile : undefined;
    this.reference = header.monitor ? parseMonitorReference(header.monitor, file) : undefined;
    this.drift = header.drift ? parseDriftModel(header.drift, file) : undefined;
    this.threshold = header.thresholds?.image;
    if (!this.reference) {
      this.notes.push('The model has no calibration reference (model format < 1.2 or no calibration images): image scores are not monitored, only drift descriptors. Re-fit with this partscan version to monitor scores.');
    }
    if (!this.drift) this.notes.push('The model has no drift model (tiled or fitted on fewer than 5 images): drift descriptors are not monitored.');
    this.expectedNg =
      this.reference && this.threshold !== undefined
        ? this.reference.scores.filter((s) => s > this.threshold!).length / this.reference.scores.length
        : null;
    this.scoreChart = this.reference ? { name: 'image score', ewma: 0, alarmed: false } : undefined;
    if (this.drift) {
      const zScale = this.reference?.driftZScale;
      this.drift.features.forEach((_, j) => {
        const scale = zScale && zScale.length === this.drift!.features.length ? zScale[j]! : 1;
        if (scale > 1e-6) this.charted.push({ j, scale });
      });
    }
    this.driftCharts = this.charted.map(({ j }) => ({ name: this.drift!.features[j]!, ewma: 0, alarmed: false }));
  }

  /**
   * Feeds the next image (production order). `index` is its input position (default: a running count).
   *
   * @example
   * const monitor = new LineMonitor(model);
   * for (const file of files) monitor.push(await model.score(file));
   */
  push(r: MonitorInput, index: number = this.count): void {
    if (!Number.isFinite(r.imageScore)) return;
    this.count++;
    const { window, lambda, clip, limit } = this.opts;
    const limitNow = ewmaLimit(lambda, limit, this.count);
    const slide = <T>(buf: T[], v: T): void => {
      buf.push(v);
      if (buf.length > window) buf.shift();
    };
    const ng = r.verdict === 'NG';
    if (ng) this.ngRun++;
    slide(this.windowNg, ng);
    slide(this.windowScores, r.imageScore);
    const clipped = (x: number): number => Math.max(-clip, Math.min(clip, x));
    const point: MonitorPoint = { index, score: r.imageScore, driftEwma: [], ewmaLimit: limitNow, ...(r.verdict ? { verdict: r.verdict } : {}) };
    const fresh: string[] = [];
    if (this.scoreChart) {
      const u = clipped(normalScore(this.reference!.scores, r.imageScore));
      this.scoreChart.ewma = lambda * u + (1 - lambda) * this.scoreChart.ewma;
      point.scoreEwma = this.scoreChart.ewma;
      if (!this.scoreChart.alarmed && Math.abs(this.scoreChart.ewma) > limitNow) {
        this.scoreChart.alarmed = true;
        fresh.push(this.scoreReason(`EWMA of score ranks ${this.scoreChart.ewma.toFixed(2)} beyond ±${limitNow.toFixed(2)}`));
      }
    }
    const zs = r.drift?.z;
    if (this.drift && zs && zs.length === this.drift.features.length) {
      slide(this.windowZ, zs);
      this.charted.forEach(({ j, scale }, c) => {
        const chart = this.driftCharts[c]!;
        chart.ewma = lambda * clipped(zs[j]! / scale) + (1 - lambda) * chart.ewma;
        point.driftEwma.push(chart.ewma);
        if (!chart.alarmed && Math.abs(chart.ewma) > limitNow) {
          chart.alarmed = true;
          // Features that are exact copies (grayscale images: brightness = mean_r = mean_g = mean_b) say it once.
          const twin = this.charted.findIndex((o, k) => k < c && this.driftCharts[k]!.alarmed && this.driftCharts[k]!.ewma === chart.ewma);
          if (twin < 0) fresh.push(this.driftReason(j, `EWMA of robust z ${chart.ewma.toFixed(2)} beyond ±${limitNow.toFixed(2)}`));
        }
      });
    }
    if (this.reference && !this.windowTestAlarmed && this.windowScores.length >= Math.ceil(window / 2)) {
      const t = mannWhitney(this.reference.scores, this.windowScores);
      if (t.p < this.opts.alpha) {
        this.windowTestAlarmed = true;
        fresh.push(this.scoreReason(`Mann–Whitney test of the last ${this.windowScores.length} vs calibration: p = ${t.p.toExponential(1)}`));
      }
    }
    if (fresh.length) {
      if (this.firstAlarmAt === null) {
        this.firstAlarmAt = index;
        fresh.push(this.ngLine());
      }
      this.reasons.push(...fresh.map((s) => `${s} (image ${index})`));
    }
    this.points.push(point);
    // Dropped in chunks, not one by one: shifting a long array at every image would cost O(n) each time.
    if (this.points.length >= this.opts.maxPoints + Math.max(1, this.opts.maxPoints >> 3)) this.points.splice(0, this.points.length - this.opts.maxPoints);
  }

  /**
   * Monitors a result that is still being computed (a `BatchingScorer` request, a worker job): the
   * production index is taken now, at the call, and results are pushed in that order as soon as every
   * earlier one has settled, whatever order they complete in. A rejected request is skipped (and its
   * rejection passed on). Use either `track` or `push` on one monitor.
   *
   * @example
   * const scorer = new BatchingScorer(model);
   * const monitor = new LineMonitor(model);
   * const results = await Promise.all(files.map((f) => monitor.track(scorer.score(f))));
   */
  track(pending: Promise<ScoreResult>): Promise<ScoreResult> {
    const ticket = this.nextTicket++;
    return pending.then(
      (r) => {
        this.settle(ticket, r);
        return r;
      },
      (e: unknown) => {
        this.settle(ticket, null);
        throw e;
      },
    );
  }

  private nextTicket = 0;
  private nextToPush = 0;
  private readonly settled = new Map<number, ScoreResult | null>();

  private settle(ticket: number, r: ScoreResult | null): void {
    this.settled.set(ticket, r);
    while (this.settled.has(this.nextToPush)) {
      const next = this.settled.get(this.nextToPush)!;
      this.settled.delete(this.nextToPush);
      if (next) this.push(next, this.nextToPush);
      this.nextToPush++;
    }
  }

  /** Whether an alarm has been raised. */
  get alarm(): boolean {
    return this.firstAlarmAt !== null;
  }

  /**
   * The run-level result so far (a snapshot: later pushes do not change it).
   *
   * @example
   * const { alarm, firstAlarmAt, reasons, ngRate } = monitor.result();
   * if (alarm) console.warn(`line drifted at image ${firstAlarmAt}: ${reasons.join('; ')}`);
   */
  result(): RunMonitor {
    const wNg = this.windowNg.filter(Boolean).length;
    return {
      alarm: this.alarm,
      firstAlarmAt: this.firstAlarmAt,
      reasons: [...this.reasons],
      images: this.count,
      ngRate: {
        run: this.count ? this.ngRun / this.count : 0,
        window: this.windowNg.length ? wNg / this.windowNg.length : 0,
        expected: this.expectedNg,
      },
      reference: this.reference !== undefined,
      notes: [...this.notes],
      settings: { ...this.opts },
      features: this.driftCharts.map((c) => c.name),
      ...(this.threshold !== undefined ? { threshold: this.threshold } : {}),
      points: this.points.slice(-this.opts.maxPoints).map((p) => ({ ...p, driftEwma: [...p.driftEwma] })),
    };
  }

  private scoreReason(how: string): string {
    const m = median(this.windowScores);
    const pct = Math.round(percentileIn(this.reference!.scores, m) * 100);
    const dir = pct >= 50 ? 'up' : 'down';
    return `image scores shifted ${dir}: median of the last ${this.windowScores.length} images at the ${ordinal(pct)} percentile of calibration (${how})`;
  }

  private driftReason(j: number, how: string): string {
    const drift = this.drift!;
    const zMed = median(this.windowZ.map((row) => row[j]!));
    const delta = zMed * drift.scale[j]!;
    const change = drift.transform[j] === 'log' ? `${signed(Math.expm1(delta) * 100, 0)} %` : signed(delta, 3);
    return `${drift.features[j]} ${change} over the last ${this.windowZ.length} images vs training (${how})`;
  }

  private ngLine(): string {
    const r = this.result().ngRate;
    const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
    return `NG rate ${pct(r.window)} over the last ${this.windowNg.length} images${r.expected !== null ? ` (expected ${pct(r.expected)})` : ''}`;
  }
}

function signed(x: number, digits: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${s}`;
}
