/**
 * Line monitoring: statistical process control over a stream of scored images, to catch a shift of
 * the whole population (new camera, new setup, other lighting) that no single image shows, and to stay
 * quiet on streams the model was fitted on, in whatever order they come.
 *
 * Fed with each {@link ScoreResult} in production order, a {@link LineMonitor} runs, against what the
 * fit saw (the model's {@link MonitorReference} and its drift model):
 * - image-score charts ({@link ScoreCharts}): a one-sided rank-based EWMA of the scores against the
 *   out-of-sample good scores, and a one-sided Mann–Whitney test of the last `window` scores;
 * - one chart per drift descriptor ({@link DescriptorCharts}): the share of images beyond the training
 *   images' envelope (format ≥ 1.4; a stream from any fitted setup, lot or shift stays inside), or, for
 *   older files, the robust z against the training median.
 * Every chart alarms only when its change is also large in absolute terms (`minShift`, `minNgRise`),
 * and each observation is clipped before it enters an EWMA, so a few percent of real defects do not
 * raise an alarm while a shift of every image does. The NG rate of the window and of the run is
 * reported against the rate the reference predicts; it is not an alarm criterion (defects are not drift).
 */

import { z } from 'zod';
import { parseDriftModel, type DriftModel } from '../guards/drift.js';
import { GLOBAL_STATS_FEATURES } from '../guards/image-stats.js';
import { PartscanError } from '../errors.js';
import { parseOptionsWithDefaults } from '../options/parse.js';
import type { ModelHeader, ScoreResult } from '../model/model.js';
import { parseMonitorReference, type MonitorReference } from '../model/monitor-reference.js';
import { DescriptorCharts, type DescriptorChartKind } from './descriptor-charts.js';
import { slide } from './ewma-chart.js';
import { NO_DRIFT_NOTE, NO_ENVELOPE_NOTE, NO_REFERENCE_NOTE } from './reasons.js';
import { ScoreCharts } from './score-charts.js';
import { ewmaLimit } from './spc.js';

/** A drift descriptor's name. */
export type DriftFeature = (typeof GLOBAL_STATS_FEATURES)[number];

/** Options of {@link LineMonitor}. */
export interface LineMonitorOptions {
  /** Images in the rolling window (Mann–Whitney test, window median, NG rate, reasons, floors); default 50. */
  window?: number;
  /** EWMA weight λ of the newest image; default {@link DEFAULT_MONITOR_LAMBDA}. */
  lambda?: number;
  /** EWMA control limit L, in standard deviations of the EWMA; default {@link DEFAULT_MONITOR_LIMIT}. */
  limit?: number;
  /** Each standardised observation is clipped to ±clip before the EWMA; default {@link DEFAULT_MONITOR_CLIP}. */
  clip?: number;
  /** One-sided significance of the Mann–Whitney window test; default {@link DEFAULT_MONITOR_ALPHA}. */
  alpha?: number;
  /** Per-image chart points kept for {@link RunMonitor.points} (the most recent; default 100 000), so a long-lived monitor stays bounded. */
  maxPoints?: number;
  /**
   * Practical-significance floor of the descriptor charts, per descriptor, as a fraction (0.03 = 3 %):
   * a chart alarms only when the images beyond the envelope lie a median of at least this far from the
   * nearest tenth of the training images (models without an envelope: when the window's median moved
   * this far). Descriptors not given keep {@link DEFAULT_MONITOR_MIN_SHIFT}.
   */
  minShift?: Partial<Record<DriftFeature, number>>;
  /**
   * Practical-significance floor of the score charts: they alarm only when the window's median score
   * shift would put at least this share more of good parts above the NG threshold (default
   * {@link DEFAULT_MONITOR_MIN_NG_RISE}, one percentage point).
   */
  minNgRise?: number;
}

/**
 * Default EWMA weight λ: an effective memory of about 2/λ − 1 = 39 images, so one image moves a chart
 * by at most λ·clip = 0.1 while a shift of every image is caught within a few dozen images.
 */
export const DEFAULT_MONITOR_LAMBDA = 0.05;
/** Default EWMA limit L (see docs/MONITORING.md for the measured false-alarm rate). */
export const DEFAULT_MONITOR_LIMIT = 4;
/** Default clip of standardised observations: a Huber-type bound on what one image (a defect) contributes. */
export const DEFAULT_MONITOR_CLIP = 2;
/** Default one-sided significance of the window test, small because it is repeated at every image. */
export const DEFAULT_MONITOR_ALPHA = 1e-5;
/**
 * Default practical-significance floors of the descriptor charts (docs/MONITORING.md): 3 % for
 * brightness, contrast and the per-channel means and spreads (a few per cent of exposure is within
 * what lines tolerate; MVTec bottle's test images differ from its training images by about 1 %),
 * 1.5 % for the colour ratio (the drift guard's scale floor), 20 % for sharpness (it varies by about
 * 5–20 % between good images of one setup).
 */
export const DEFAULT_MONITOR_MIN_SHIFT: Readonly<Record<DriftFeature, number>> = {
  brightness: 0.03,
  contrast: 0.03,
  mean_r: 0.03,
  mean_g: 0.03,
  mean_b: 0.03,
  std_r: 0.03,
  std_g: 0.03,
  std_b: 0.03,
  r_b_ratio: 0.015,
  sharpness: 0.2,
};
/** Default floor of the score charts: one percentage point more good parts above the NG threshold. */
export const DEFAULT_MONITOR_MIN_NG_RISE = 0.01;

const optionsSchema = z
  .object({
    window: z.number().int().min(10).max(100_000).default(50),
    lambda: z.number().gt(0).lte(1).default(DEFAULT_MONITOR_LAMBDA),
    limit: z.number().gt(0).finite().default(DEFAULT_MONITOR_LIMIT),
    clip: z.number().gt(0).finite().default(DEFAULT_MONITOR_CLIP),
    alpha: z.number().gt(0).lt(0.5).default(DEFAULT_MONITOR_ALPHA),
    maxPoints: z.number().int().min(1).default(100_000),
    minShift: z.partialRecord(z.enum(GLOBAL_STATS_FEATURES), z.number().gte(0).finite()).default({}),
    minNgRise: z.number().gte(0).lt(1).default(DEFAULT_MONITOR_MIN_NG_RISE),
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
  /** EWMA of each descriptor chart, in {@link RunMonitor.features} order (see {@link RunMonitor.descriptorCharts}). */
  driftEwma: number[];
  /** Control limit of the EWMAs at this image (+limit for one-sided charts, ±limit for median charts). */
  ewmaLimit: number;
}

/** The run-level monitoring result written to results.json and `score --json` (`monitor`). */
export interface RunMonitor {
  /** Whether any chart or the window test left its limits. */
  alarm: boolean;
  /** 0-based input index of the image at which the first alarm was raised, else null. */
  firstAlarmAt: number | null;
  /** Why, in plain words: one line per chart that crossed its limit (at the first alarm, then as more do). */
  reasons: string[];
  /** Images monitored. */
  images: number;
  /** NG share of the run and of the last window, and the share the reference predicts (null without thresholds or reference). */
  ngRate: {
    /** NG share of all images monitored. */
    run: number;
    /** NG share of the last window of images. */
    window: number;
    /** NG share the out-of-sample reference predicts; null without thresholds or reference. */
    expected: number | null;
  };
  /** Whether the model had a score reference (format ≥ 1.2); without it only the drift charts run. */
  reference: boolean;
  /**
   * The descriptor charts: 'envelope' (format ≥ 1.4: one-sided, share of images beyond the training
   * images), 'median' (older files: two-sided, robust z against the training median) or 'none'.
   */
  descriptorCharts: DescriptorChartKind;
  /** Notes on what could not be monitored, or only in an older way. */
  notes: string[];
  /** The settings used. */
  settings: Required<LineMonitorOptions>;
  /** Charted drift features (median charts leave out features that never varied in training). */
  features: string[];
  /** Raw image-score threshold, when the model has one. */
  threshold?: number;
  /** Per image, for the control chart. */
  points: MonitorPoint[];
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
  private readonly drift: DriftModel | undefined;
  private readonly threshold: number | undefined;
  private readonly notes: string[] = [];
  private readonly scoreCharts: ScoreCharts | undefined;
  private readonly descriptors: DescriptorCharts;
  private readonly windowNg: boolean[] = [];
  private readonly points: MonitorPoint[] = [];
  private readonly reasons: string[] = [];
  private firstAlarmAt: number | null = null;
  private ngRun = 0;
  private count = 0;

  /**
   * @param model a loaded or fitted model (or its header): its thresholds, drift model and
   *   monitoring reference are the in-control state.
   * @param options window, EWMA weight and limit, clipping, window-test significance, practical
   *   floors; invalid values throw a typed 'OPTIONS' error naming the field.
   */
  constructor(model: { header: ModelHeader; modelFile?: string | undefined } | ModelHeader, options: LineMonitorOptions = {}) {
    const parsed = parseOptionsWithDefaults(
      optionsSchema,
      options,
      'monitor',
      'use window ≥ 10, 0 < lambda ≤ 1, limit > 0, clip > 0, 0 < alpha < 0.5, maxPoints ≥ 1 (integer), minShift { descriptor: fraction ≥ 0 }, 0 ≤ minNgRise < 1',
    );
    this.opts = { ...parsed, minShift: { ...DEFAULT_MONITOR_MIN_SHIFT, ...parsed.minShift } };
    const header = 'header' in model ? model.header : model;
    const file = 'header' in model ? model.modelFile : undefined;
    const reference = header.monitor ? parseMonitorReference(header.monitor, file) : undefined;
    this.drift = header.drift ? parseDriftModel(header.drift, file) : undefined;
    checkEnvelope(reference, this.drift, file);
    this.threshold = header.thresholds?.image;
    this.scoreCharts = reference ? new ScoreCharts(reference, this.threshold, this.opts) : undefined;
    this.descriptors = new DescriptorCharts(this.drift, reference, { ...this.opts, minShift: this.opts.minShift as Record<string, number> });
    if (!reference) this.notes.push(NO_REFERENCE_NOTE);
    if (!this.drift) this.notes.push(NO_DRIFT_NOTE);
    else if (this.descriptors.kind === 'median') this.notes.push(NO_ENVELOPE_NOTE);
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
    const limitNow = ewmaLimit(this.opts.lambda, this.opts.limit, this.count);
    const ng = r.verdict === 'NG';
    if (ng) this.ngRun++;
    slide(this.windowNg, ng, this.opts.window);
    const point: MonitorPoint = { index, score: r.imageScore, driftEwma: [], ewmaLimit: limitNow, ...(r.verdict ? { verdict: r.verdict } : {}) };
    const fresh: string[] = [];
    if (this.scoreCharts) {
      fresh.push(...this.scoreCharts.push(r.imageScore, limitNow));
      point.scoreEwma = this.scoreCharts.chart.ewma;
    }
    const zs = r.drift?.z;
    if (this.drift && zs && zs.length === this.drift.features.length) {
      fresh.push(...this.descriptors.push(zs, limitNow));
      point.driftEwma = this.descriptors.ewmas();
    }
    if (fresh.length) {
      this.firstAlarmAt ??= index;
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
        expected: this.scoreCharts?.expectedNg ?? null,
      },
      reference: this.scoreCharts !== undefined,
      descriptorCharts: this.descriptors.kind,
      notes: [...this.notes],
      settings: { ...this.opts, minShift: { ...this.opts.minShift } },
      features: this.descriptors.charts.map((c) => c.name),
      ...(this.threshold !== undefined ? { threshold: this.threshold } : {}),
      points: this.points.slice(-this.opts.maxPoints).map((p) => ({ ...p, driftEwma: [...p.driftEwma] })),
    };
  }
}

/** Throws 'MODEL_FORMAT' when the envelope does not fit the drift model it must be read with. */
function checkEnvelope(reference: MonitorReference | undefined, drift: DriftModel | undefined, file: string | undefined): void {
  const rows = reference?.envelope?.z;
  if (!rows) return;
  const width = drift?.features.length;
  if (width === undefined || rows.some((row) => row.length !== width)) {
    throw new PartscanError(
      'MODEL_FORMAT',
      `Invalid monitor reference in the model header: monitor.envelope.z rows must have one value per drift feature (${width ?? 'no drift model'}).`,
      { ...(file !== undefined ? { file } : {}), remedy: 're-fit the model, or remove the header field "monitor.envelope"' },
    );
  }
}
