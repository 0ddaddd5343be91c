/**
 * Every public entry checks its options first with one zod schema (src/options/schemas.ts): invalid
 * values are a typed 'OPTIONS' error naming the field path, raised before any file, model or backbone
 * is touched. That is why the stand-in model below is never used: the check comes first.
 */
import { describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import { fit } from '../src/model/fit.js';
import { calibrate } from '../src/model/recalibrate.js';
import { Model } from '../src/model/model.js';
import { BatchingScorer } from '../src/model/batching-scorer.js';
import { evaluateModel } from '../src/model/evaluate.js';
import { scoreToRunDir, writeScoredRun } from '../src/export/score-run.js';
import { exportModelOnnx } from '../src/export/onnx-export.js';
import { writeReport } from '../src/report/html.js';
import { runDemo } from '../src/demo.js';
import { LineMonitor } from '../src/monitor/line-monitor.js';
import { startWorker } from '../src/queue/worker.js';
import { parseOptions } from '../src/options/parse.js';
import { scoreOptionsSchema } from '../src/options/schemas.js';

/** Never reached: every call below fails in its option check. */
const notAModel = {} as never;
const missing = '/nonexistent/partscan-options-test';

type Call = (opts: never) => unknown;

const entries: Array<{ entry: string; call: Call; bad: Array<[field: string, opts: object]> }> = [
  {
    entry: 'fit',
    call: (o) => fit(missing, o),
    bad: [
      ['batchSize', { batchSize: 0 }],
      ['batchSize', { batchSize: 1.5 }],
      ['channels', { channels: 0 }],
      ['calibrationSplit', { calibrationSplit: 1 }],
      ['precision', { precision: 'fp16' }],
      ['tile.overlap', { tile: { size: 64, overlap: -1 } }],
      ['onProgress', { onProgress: 'yes' }],
      ['falseRejectTarget', { falseRejectTarget: 0 }],
      ['falseRejectTarget', { falseRejectTarget: 1 }],
      ['falseRejectTarget', { falseRejectTarget: Number.NaN }],
      ['falseRejectTarget', { falseRejectTarget: '0.01' }],
      ['reviewBand', { reviewBand: -0.1 }],
      ['reviewBand', { falseRejectTarget: 0.05, reviewBand: 0.01 }],
      ['thresholdRule', { thresholdRule: 'median' }],
      ['thresholdRule', { thresholdRule: 'f1' }], // no labelled defects
      ['thresholdRule.k', { thresholdRule: { kind: 'sigma', k: -1 } }],
      ['imageScore', { imageScore: 'mean' }],
    ],
  },
  {
    entry: 'calibrate',
    call: (o) => calibrate(notAModel, o),
    bad: [
      ['falseRejectTarget', { falseRejectTarget: 1.5 }],
      ['reviewBand', { reviewBand: Number.POSITIVE_INFINITY }],
      ['defects', { defects: [] }],
      ['good', { good: '' }],
      ['signal', { signal: 'stop' }],
    ],
  },
  {
    entry: 'Model.load',
    call: (o) => Model.load(missing, o),
    bad: [
      ['threads', { threads: -1 }],
      ['verify', { verify: 'no' }],
    ],
  },
  {
    entry: 'Model.score',
    call: (o) => Model.prototype.score.call(notAModel, 'x.png', o),
    bad: [
      ['batchSize', { batchSize: 0 }],
      ['batchSize', { batchSize: 2.5 }],
      ['minArea', { minArea: -1 }],
      ['openRadius', { openRadius: 0.5 }],
    ],
  },
  {
    entry: 'Model.save',
    call: (o) => Model.prototype.save.call(notAModel, missing, o),
    bad: [['embedBackbone', { embedBackbone: 1 }]],
  },
  {
    entry: 'BatchingScorer',
    call: (o) => new BatchingScorer(notAModel, o),
    bad: [
      ['maxBatch', { maxBatch: 0 }],
      ['maxBatch', { maxBatch: 1.5 }],
    ],
  },
  {
    entry: 'evaluateModel',
    call: (o) => evaluateModel(notAModel, missing, o),
    bad: [
      ['batchSize', { batchSize: 0 }],
      ['onProgress', { onProgress: 3 }],
    ],
  },
  {
    entry: 'scoreToRunDir',
    call: (o) => scoreToRunDir(notAModel, [], missing, o),
    bad: [
      ['batchSize', { batchSize: 0 }],
      ['maxSide', { maxSide: -5 }],
      ['monitor', { monitor: true }],
      ['exports.mask', { exports: { mask: 'no' } }],
    ],
  },
  {
    entry: 'writeScoredRun',
    call: (o) => writeScoredRun(notAModel, [], missing, o),
    bad: [
      ['labels', { labels: { a: 'good' } }],
      ['inputIndices.0', { inputIndices: [-1] }],
    ],
  },
  {
    entry: 'exportModelOnnx',
    call: (o) => exportModelOnnx(notAModel, missing, o),
    bad: [
      ['externalDataThreshold', { externalDataThreshold: -1 }],
      ['externalDataThreshold', { externalDataThreshold: Infinity }],
      ['raw', { raw: 'yes' }],
    ],
  },
  {
    entry: 'writeReport',
    call: (o) => writeReport(missing, o),
    bad: [
      ['inlineBudgetBytes', { inlineBudgetBytes: -1 }],
      ['inlineBudgetBytes', { inlineBudgetBytes: NaN }],
      ['out', { out: '' }],
    ],
  },
  {
    entry: 'runDemo',
    call: (o) => runDemo(o),
    bad: [
      ['backbone', { backbone: '' }],
      ['onStep', { onStep: 'log' }],
    ],
  },
  {
    entry: 'monitor',
    call: (o) => new LineMonitor(notAModel, o),
    bad: [
      ['window', { window: 5 }],
      ['lambda', { lambda: 0 }],
      ['minShift', { minShift: { brightnes: 0.1 } }],
      ['minShift.brightness', { minShift: { brightness: -0.1 } }],
      ['minNgRise', { minNgRise: 1 }],
    ],
  },
  {
    entry: 'worker',
    call: (o) => startWorker(o),
    bad: [
      ['redis', { redis: '' }],
      ['concurrency', { redis: 'redis://127.0.0.1:1', concurrency: 0 }],
    ],
  },
];

/** Runs a call that may throw or reject, and returns what it threw. */
async function thrown(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('options: one schema per public entry, one typed error', () => {
  for (const { entry, call, bad } of entries) {
    for (const [field, opts] of bad) {
      it(`${entry}: ${JSON.stringify(opts, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))} → OPTIONS naming ${field}`, async () => {
        const e = await thrown(() => call(opts as never));
        expect(isPartscanError(e, 'OPTIONS')).toBe(true);
        expect((e as Error).message).toContain(`Invalid ${entry} option ${field}:`);
      });
    }
  }

  it('parseOptions returns the caller\'s own object (functions and absent fields untouched)', () => {
    const opts = { batchSize: 4, extra: () => 1 };
    expect(parseOptions(scoreOptionsSchema, opts, 'Model.score')).toBe(opts);
    expect(parseOptions(scoreOptionsSchema, {}, 'Model.score')).toEqual({});
  });
});
