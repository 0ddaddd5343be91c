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
import { renderResult } from '../src/export/render.js';
import { fitOnQueue, scoreOnQueue } from '../src/queue/index.js';
import { resolveBackbone } from '../src/backbone/registry.js';
import { listImages } from '../src/data/loaders.js';
import path from 'node:path';
import { BOTTLE } from './helpers/shared.js';
import { thrown } from './helpers/errors.js';

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
      ['imagesize', { imagesize: 224 }],
      ['thresholdRule.k', { thresholdRule: { kind: 'sigma', k: -1 } }],
      ['thresholdRule.kind', { thresholdRule: { kind: 'p99' } }],
      ['band.low', { band: { low: 0.6, high: 0.7 } }],
      ['backbone.wieghts', { backbone: { name: 'resnet50', wieghts: 'rn50.safetensors' } }],
      ['preprocess.kernal', { preprocess: { kernal: 'linear' } }],
      ['manualThresholds.img', { manualThresholds: { img: 3 } }],
      ['falseRejectTarget', { falseRejectTarget: 0 }],
      ['falseRejectTarget', { falseRejectTarget: 1 }],
      ['falseRejectTarget', { falseRejectTarget: Number.NaN }],
      ['falseRejectTarget', { falseRejectTarget: '0.01' }],
      ['reviewBand', { reviewBand: -0.1 }],
      ['reviewBand', { falseRejectTarget: 0.05, reviewBand: 0.01 }],
      ['thresholdRule', { thresholdRule: 'median' }],
      ['thresholdRule', { thresholdRule: 'f1' }], // no labelled defects
      ['imageScore', { imageScore: 'mean' }],
      ['signal', { signal: 'stop' }],
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
      ['goood', { goood: 'dir' }],
      ['signal', { signal: 'stop' }],
    ],
  },
  {
    entry: 'Model.load',
    call: (o) => Model.load(missing, o),
    bad: [
      ['threads', { threads: -1 }],
      ['verify', { verify: 'no' }],
      ['thread', { thread: 2 }],
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
      ['minarea', { minarea: 3 }],
      ['signal', { signal: {} }],
    ],
  },
  {
    entry: 'Model.save',
    call: (o) => Model.prototype.save.call(notAModel, missing, o),
    bad: [
      ['embedBackbone', { embedBackbone: 1 }],
      ['compact', { compact: true }],
    ],
  },
  {
    entry: 'BatchingScorer',
    call: (o) => new BatchingScorer(notAModel, o),
    bad: [
      ['maxBatch', { maxBatch: 0 }],
      ['maxBatch', { maxBatch: 1.5 }],
      ['batch', { batch: 4 }],
    ],
  },
  {
    entry: 'BatchingScorer.score',
    call: (o) => new BatchingScorer(notAModel, { maxBatch: 2 }).score('x.png', o),
    bad: [
      ['onProgress', { onProgress: () => undefined }],
      ['minArea', { minArea: -2 }],
    ],
  },
  {
    entry: 'evaluateModel',
    call: (o) => evaluateModel(notAModel, missing, o),
    bad: [
      ['batchSize', { batchSize: 0 }],
      ['onProgress', { onProgress: 3 }],
      ['batchsize', { batchsize: 3 }],
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
      ['exports.masks', { exports: { masks: false } }],
      ['failures', { failures: [] }],
    ],
  },
  {
    entry: 'writeScoredRun',
    call: (o) => writeScoredRun(notAModel, [], missing, o),
    bad: [
      ['labels', { labels: { a: 'good' } }],
      ['inputIndices.0', { inputIndices: [-1] }],
      ['maxside', { maxside: 3 }],
    ],
  },
  {
    entry: 'exportModelOnnx',
    call: (o) => exportModelOnnx(notAModel, missing, o),
    bad: [
      ['externalDataThreshold', { externalDataThreshold: -1 }],
      ['externalDataThreshold', { externalDataThreshold: Infinity }],
      ['raw', { raw: 'yes' }],
      ['externalData', { externalData: true }],
    ],
  },
  {
    entry: 'writeReport',
    call: (o) => writeReport(missing, o),
    bad: [
      ['inlineBudgetBytes', { inlineBudgetBytes: -1 }],
      ['inlineBudgetBytes', { inlineBudgetBytes: NaN }],
      ['out', { out: '' }],
      ['titel', { titel: 'x' }],
    ],
  },
  {
    entry: 'runDemo',
    call: (o) => runDemo(o),
    bad: [
      ['backbone', { backbone: '' }],
      ['onStep', { onStep: 'log' }],
      ['channels', { channels: 10 }],
    ],
  },
  {
    entry: 'monitor',
    call: (o) => new LineMonitor(notAModel, o),
    bad: [
      ['window', { window: 5 }],
      ['lambda', { lambda: 0 }],
      ['windowSize', { windowSize: 50 }],
      ['minShift.brightnes', { minShift: { brightnes: 0.1 } }], // the unknown key itself is named
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
      ['redisUrl', { redis: 'redis://127.0.0.1:1', redisUrl: 'x' }],
    ],
  },
  {
    entry: 'scoreOnQueue',
    call: (o) => scoreOnQueue(missing, [], missing, o),
    bad: [
      ['redis', { redis: '' }],
      ['batchSize', { redis: 'redis://127.0.0.1:1', batchSize: 8 }],
    ],
  },
  {
    entry: 'fitOnQueue',
    call: (o) => fitOnQueue(missing, missing, o),
    bad: [
      ['attempts', { redis: 'redis://127.0.0.1:1', attempts: 0 }],
      ['option', { redis: 'redis://127.0.0.1:1', option: {} }],
    ],
  },
  {
    entry: 'fitOnQueue',
    call: (o) => fitOnQueue(missing, missing, { redis: 'redis://127.0.0.1:1', options: o }),
    bad: [['options.imagesize', { imagesize: 224 }]],
  },
  {
    entry: 'renderResult',
    call: (o) => renderResult(notAModel, 'overlay', o),
    bad: [
      ['format', { format: 'gif' }],
      ['maxSide', { maxSide: 0 }],
      ['size', { size: 100 }],
    ],
  },
];


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
    const opts = { batchSize: 4, onProgress: () => 1 };
    expect(parseOptions(scoreOptionsSchema, opts, 'Model.score')).toBe(opts);
    expect(parseOptions(scoreOptionsSchema, {}, 'Model.score')).toEqual({});
  });

  it('an unknown key names the key it was probably meant to be, and the remedy renames it', async () => {
    const e = (await thrown(() => fit(missing, { imagesize: 224 } as never))) as Error & { remedy?: string };
    expect(isPartscanError(e, 'OPTIONS')).toBe(true);
    expect(e.message).toContain('Invalid fit option imagesize: unknown option (did you mean imageSize?)');
    expect(e.remedy).toBe('rename imagesize to imageSize');
    const nested = (await thrown(() => fit(missing, { backbone: { name: 'resnet50', wieghts: 'w' } } as never))) as Error;
    expect(nested.message).toContain('did you mean backbone.weights?');
    const far = (await thrown(() => Model.load(missing, { zzz: 1 } as never))) as Error;
    expect(far.message).toMatch(/Invalid Model.load option zzz: unknown option\.(?! \(did)/);
  });

  it('a backbone spec naming two backbones (name and backbone) is refused', async () => {
    const e = await thrown(() => resolveBackbone({ name: 'resnet50', backbone: 'resnet18' }));
    expect(isPartscanError(e, 'OPTIONS')).toBe(true);
    expect((e as Error).message).toMatch(/two different backbones/);
  });
});

describe('options are checked before any long work', () => {
  /** A backbone that fails the test if the fit ever runs it. */
  const tripwire = {
    identity: { name: 'tripwire', sha256: '0'.repeat(64), layers: ['a'], strides: [4], channels: [8] },
    inputName: 'input',
    onnx: new Uint8Array(0),
    extract: () => {
      throw new Error('the backbone ran: the option was checked too late');
    },
    dispose: async () => undefined,
  };

  it('a bad thresholdRule, band or ROI is refused before a single image goes through the backbone', async () => {
    const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 10);
    for (const [opts, code, text] of [
      [{ thresholdRule: { kind: 'quantile', q: 1.5 } }, 'OPTIONS', /thresholdRule\.q/],
      [{ band: { low: 0.2, high: 0.4 } }, 'OPTIONS', /band\.high/],
      [{ roi: path.join(BOTTLE, 'no-such-roi.png') }, 'MASK', /does not exist/],
      [{ roi: path.join(BOTTLE, 'train', 'good', '000.png'), tile: { size: 64, overlap: 8 } }, 'OPTIONS', /ROI mask cannot be combined with tiling/],
      [{ preprocess: { cropSize: 512 }, imageSize: 256 }, 'OPTIONS', /crop/i],
    ] as const) {
      const e = await thrown(() => fit(train, { backbone: tripwire as never, ...opts } as never));
      expect(isPartscanError(e, code), `${JSON.stringify(opts)}: ${String(e)}`).toBe(true);
      expect((e as Error).message).toMatch(text);
    }
  });
});

describe('backbone as a string', () => {
  it("fit(images, { backbone: 'mobilenetv2-int8' }) fits the named backbone (it used to fall back to resnet50)", async () => {
    const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 4);
    const model = await fit(train, { backbone: 'mobilenetv2-int8', channels: 16, imageSize: 64, calibrationSplit: 0, guards: false, contaminationCheck: false });
    try {
      expect(model.header.backbone.name).toBe('mobilenetv2-int8');
      expect(model.header.embedding.channels).toBe(16);
    } finally {
      await model.dispose();
    }
  }, 120_000);
});
