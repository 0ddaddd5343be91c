/**
 * int8 backbone: the QDQ quantizer's maths (property tests), the rewritten ResNet-50 graph (fixture
 * weights), deterministic calibration on bottle images, ORT's fusion into integer kernels, and
 * feature fidelity against float32 on a small bottle subset.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import { decodeModel, encodeModel, floatInitializer, makeNode, OnnxDataType, tensorValueInfo } from '../src/onnx/graph.js';
import { OrtBackbone } from '../src/backbone/ort-backbone.js';
import { buildResNetOnnx, resnetLayerInfo } from '../src/backbone/resnet.js';
import { SafeTensors } from '../src/backbone/safetensors.js';
import {
  activationQParams,
  calibrationTensors,
  quantizeGraphQdq,
  quantizeWeightsPerChannel,
  validatePrecision,
} from '../src/backbone/quantize.js';
import { calibrateActivations, percentileRange, quantizeBackbone } from '../src/backbone/calibrate.js';
import { defaultPreprocessOptions } from '../src/preprocess/options.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import type { Tensor4D } from '../src/types.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const SIZE = 224;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('quantizer maths', () => {
  it('per-channel symmetric int8 weights round-trip within half a step of their own channel scale', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.float({ min: -1e3, max: 1e3, noNaN: true }), { minLength: 120, maxLength: 120 }),
        fc.array(fc.float({ min: Math.fround(1e-4), max: 1e4, noNaN: true }), { minLength: 6, maxLength: 6 }),
        (outC, per, raw, gains) => {
          // Channels of very different magnitudes: each must get its own scale.
          const w = new Float32Array(outC * per);
          for (let c = 0; c < outC; c++) for (let i = 0; i < per; i++) w[c * per + i] = raw[(c * per + i) % raw.length]! * gains[c]!;
          const { q, scales } = quantizeWeightsPerChannel(w, outC);
          expect(scales).toHaveLength(outC);
          for (let c = 0; c < outC; c++) {
            let m = 0;
            let qm = 0;
            for (let i = c * per; i < (c + 1) * per; i++) {
              m = Math.max(m, Math.abs(w[i]!));
              qm = Math.max(qm, Math.abs(q[i]!));
              expect(Math.abs(q[i]!)).toBeLessThanOrEqual(127);
              expect(Math.abs(w[i]! - q[i]! * scales[c]!)).toBeLessThanOrEqual(scales[c]! * 0.5 * (1 + 1e-6) + 1e-30);
            }
            if (m > 1e-30) {
              expect(scales[c]!).toBeCloseTo(m / 127, 5 - Math.ceil(Math.log10(m / 127 + 1e-30)));
              expect(qm).toBe(127);
            } else expect(scales[c]).toBe(1);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('uint8 activation parameters cover the range and represent zero exactly', () => {
    fc.assert(
      fc.property(fc.float({ min: -1e4, max: 1e4, noNaN: true }), fc.float({ min: 0, max: 1e4, noNaN: true }), (a, width) => {
        const min = a;
        const max = Math.fround(a + width);
        const { scale, zeroPoint } = activationQParams({ min, max });
        expect(Number.isInteger(zeroPoint) && zeroPoint >= 0 && zeroPoint <= 255).toBe(true);
        expect(scale).toBeGreaterThan(0);
        // Representable interval [(0 − zp)·s, (255 − zp)·s] covers [min, max] up to one rounding step.
        expect(-zeroPoint * scale).toBeLessThanOrEqual(Math.min(min, 0) + scale);
        expect((255 - zeroPoint) * scale).toBeGreaterThanOrEqual(Math.max(max, 0) - scale);
        if (min >= 0) expect(zeroPoint).toBe(0); // after a Relu: ORT folds the Relu into the Q
      }),
      { numRuns: 300 },
    );
    expect(() => activationQParams({ min: 1, max: 0 })).toThrow(RangeError);
  });

  it('percentile ranges: exact min/max at 100, within one bin of the true quantile below', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ min: -100, max: 100, noNaN: true }), { minLength: 50, maxLength: 3000 }), fc.constantFrom(99, 99.9, 99.99), (xs, p) => {
        const x = Float32Array.from(xs);
        const sorted = [...x].sort((u, v) => u - v);
        const exact = percentileRange(x, 100, 256);
        expect(exact).toEqual({ min: sorted[0], max: sorted[sorted.length - 1] });
        const r = percentileRange(x, p, 4096);
        const binW = (sorted[sorted.length - 1]! - sorted[0]!) / 4096;
        const tail = Math.floor((x.length * (100 - p)) / 100);
        // Upper end: at least the value with `tail` values above it (minus a bin), at most the max.
        expect(r.max).toBeGreaterThanOrEqual(sorted[sorted.length - 1 - tail]! - binW * 1.0001);
        expect(r.max).toBeLessThanOrEqual(sorted[sorted.length - 1]!);
        expect(r.min).toBeLessThanOrEqual(sorted[tail]! + binW * 1.0001);
        expect(r.min).toBeGreaterThanOrEqual(sorted[0]!);
      }),
      { numRuns: 100 },
    );
  });

  it('percentile ranges of large tensors come from a strided sample: close to the full histogram, min/max exact', () => {
    const x = new Float32Array(3_000_001);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.7071) * 10 + (i % 997 === 0 ? 40 : 0);
    const full = percentileRange(x, 99.9, 4096, x.length);
    const sampled = percentileRange(x, 99.9, 4096, 1 << 16);
    expect(sampled.max).toBeLessThanOrEqual(50);
    const binW = (50 - -10) / 4096;
    expect(Math.abs(sampled.max - full.max)).toBeLessThan(20 * binW);
    expect(Math.abs(sampled.min - full.min)).toBeLessThan(20 * binW);
    expect(percentileRange(x, 100, 4096, 1 << 16)).toEqual(percentileRange(x, 100, 4096, x.length));
  });

  it('precision option: fp32 by default, int8 accepted, anything else a typed OPTIONS error', () => {
    expect(validatePrecision(undefined)).toBe('fp32');
    expect(validatePrecision('int8')).toBe('int8');
    for (const bad of ['fp16', 'INT8', 8, null]) {
      try {
        validatePrecision(bad);
        expect.unreachable();
      } catch (e) {
        expect(isPartscanError(e, 'OPTIONS')).toBe(true);
        expect((e as Error).message).toContain('precision');
      }
    }
  });

  it('refuses graphs with operators it does not handle', () => {
    const bytes = encodeModel({
      graphName: 'g',
      nodes: [makeNode('Conv', ['x', 'w'], ['y'], 'conv', { kernel_shape: [1, 1] }), makeNode('Sigmoid', ['y'], ['z'], 'sig')],
      initializers: [floatInitializer('w', [1, 1, 1, 1], Float32Array.of(1))],
      inputs: [tensorValueInfo('x', OnnxDataType.FLOAT, [1, 1, 4, 4])],
      outputs: [tensorValueInfo('z', OnnxDataType.FLOAT, [1, 1, 4, 4])],
      opset: 17,
      irVersion: 8,
      producerVersion: 'test',
    });
    expect(() => calibrationTensors(bytes)).toThrow(/Sigmoid/);
    try {
      quantizeGraphQdq(bytes, new Map());
      expect.unreachable();
    } catch (e) {
      expect(isPartscanError(e, 'ONNX_FORMAT')).toBe(true);
    }
  });
});

describe('int8 ResNet-50 (fixture weights, bottle)', () => {
  let tmp: string;
  let fp32: OrtBackbone;
  let calib: Tensor4D;
  let test: Tensor4D;

  const batchesOf = (t: Tensor4D, n: number): Tensor4D[] => {
    const per = 3 * SIZE * SIZE;
    const out: Tensor4D[] = [];
    for (let i = 0; i < t.dims[0]; i += n) {
      const k = Math.min(n, t.dims[0] - i);
      out.push({ data: t.data.subarray(i * per, (i + k) * per), dims: [k, 3, SIZE, SIZE] });
    }
    return out;
  };

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-quant-'));
    const weights = await SafeTensors.open(REF_WEIGHTS);
    const onnx = buildResNetOnnx('resnet50', weights);
    fp32 = await OrtBackbone.create(onnx, { name: 'resnet50', sha256: weights.sha256(), ...resnetLayerInfo('resnet50') }, { intraOpNumThreads: 2 });
    const pre = defaultPreprocessOptions({ imageSize: SIZE });
    const train = (await fs.readdir(path.join(BOTTLE, 'train', 'good'))).filter((f) => f.endsWith('.png')).sort();
    const c = await preprocessBatch(train.slice(0, 8).map((f) => path.join(BOTTLE, 'train', 'good', f)), pre);
    calib = { data: c.tensor, dims: [8, 3, SIZE, SIZE] };
    const testFiles = ['good/000.png', 'good/005.png', 'broken_large/000.png', 'contamination/003.png'].map((f) => path.join(BOTTLE, 'test', f));
    const t = await preprocessBatch(testFiles, pre);
    test = { data: t.tensor, dims: [4, 3, SIZE, SIZE] };
  }, 120_000);

  afterAll(async () => {
    await fp32?.dispose();
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  it('calibration is deterministic: the same images give the same ranges and the same graph bytes', async () => {
    const a = await calibrateActivations(fp32.onnx, batchesOf(calib, 4), { threads: 2 });
    const b = await calibrateActivations(fp32.onnx, batchesOf(calib, 4), { threads: 2 });
    expect([...a]).toEqual([...b]);
    expect(sha(quantizeGraphQdq(fp32.onnx, a))).toBe(sha(quantizeGraphQdq(fp32.onnx, b)));
    // Relu outputs calibrate to [0, max]; the image input to a signed range.
    expect(a.get('input')!.min).toBeLessThan(0);
    expect(a.get('layer1')!.min).toBe(0);
    // A different image set gives other ranges (the calibration does read the images).
    const c = await calibrateActivations(fp32.onnx, batchesOf(test, 4), { threads: 2 });
    expect(c.get('layer3')!.max).not.toBe(a.get('layer3')!.max);
  }, 120_000);

  it('every Conv gets int8 per-channel weights and an int32 bias; ORT fuses them into QLinearConv', async () => {
    const ranges = await calibrateActivations(fp32.onnx, batchesOf(calib, 4), { threads: 2 });
    const q = quantizeGraphQdq(fp32.onnx, ranges);
    const model = decodeModel(q);
    const inits = new Map(model.graph!.initializer!.map((t) => [t.name!, t]));
    const convs = model.graph!.node!.filter((n) => n.opType === 'Conv');
    expect(convs).toHaveLength(53 - 10); // resnet50 stem..layer3: 1 + 3·3+1 + 4·3+1 + 6·3+1 = 43
    for (const conv of convs) {
      const w = inits.get(`${conv.input![1]}/q`)!;
      expect(w.dataType).toBe(3); // INT8
      expect(inits.get(`${conv.input![1]}/scale`)!.dims!.map(Number)).toEqual([Number(w.dims![0])]);
      expect(inits.get(`${conv.input![2]}/q`)!.dataType).toBe(6); // INT32
      expect(inits.has(conv.input![1]!)).toBe(false); // no float weights left
    }
    // Graph inputs / outputs keep their names.
    expect(model.graph!.input!.map((i) => i.name)).toEqual(['input']);
    expect(model.graph!.output!.map((o) => o.name)).toEqual(['layer1', 'layer2', 'layer3']);

    const optimized = path.join(tmp, 'optimized.onnx');
    const session = await ort.InferenceSession.create(q, { graphOptimizationLevel: 'all', intraOpNumThreads: 1, optimizedModelFilePath: optimized });
    await session.release();
    const ops = decodeModel(new Uint8Array(await fs.readFile(optimized))).graph!.node!.map((n) => n.opType!);
    const count = (op: string): number => ops.filter((o) => o === op).length;
    expect(count('QLinearConv')).toBe(43);
    expect(count('Conv') + count('FusedConv')).toBe(0);
    expect(count('QLinearAdd')).toBe(13);
  }, 120_000);

  it('features stay within cosine 0.99 of float32 (median over positions, every layer)', async () => {
    const int8 = await quantizeBackbone(fp32, batchesOf(calib, 4), { threads: 2 });
    try {
      expect(int8.identity).toMatchObject({ ...fp32.identity, precision: 'int8' });
      const a = await fp32.extract(test);
      const b = await int8.extract(test);
      for (let l = 0; l < 3; l++) {
        const [n, c, h, w] = a[l]!.dims;
        expect(b[l]!.dims).toEqual(a[l]!.dims);
        const HW = h * w;
        const cos: number[] = [];
        for (let i = 0; i < n; i++) {
          for (let p = 0; p < HW; p++) {
            let dot = 0;
            let na = 0;
            let nb = 0;
            for (let k = 0; k < c; k++) {
              const u = a[l]!.data[(i * c + k) * HW + p]!;
              const v = b[l]!.data[(i * c + k) * HW + p]!;
              dot += u * v;
              na += u * u;
              nb += v * v;
            }
            cos.push(dot / Math.sqrt(na * nb + 1e-30));
          }
        }
        cos.sort((x, y) => x - y);
        expect(cos[cos.length >> 1], `layer${l + 1}`).toBeGreaterThanOrEqual(0.99);
        // And not identical: the graph really is quantized.
        expect(cos[0]).toBeLessThan(0.999999);
      }
    } finally {
      await int8.dispose();
    }
  }, 120_000);
});
