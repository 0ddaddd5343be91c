import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { decodeModel } from '../src/onnx/graph.js';
import { OrtBackbone } from '../src/backbone/ort-backbone.js';
import {
  buildResNetOnnx,
  detectResNetArch,
  expectedResNetShapes,
  foldBatchNorm,
  resnetLayerInfo,
  type WeightTensor,
} from '../src/backbone/resnet.js';
import { SafeTensors, writeSafetensors, type SafeTensorInput } from '../src/backbone/safetensors.js';
import type { Tensor4D } from '../src/types.js';
import { REF_FEATURES, REF_WEIGHTS } from './helpers/shared.js';

/** max|a−b| / max|b| and ‖a−b‖ / ‖b‖. */
function relativeErrors(a: Float32Array, b: Float32Array): { maxRel: number; l2Rel: number } {
  expect(a.length).toBe(b.length);
  let maxDiff = 0;
  let maxRef = 0;
  let diff2 = 0;
  let ref2 = 0;
  for (let i = 0; i < b.length; i++) {
    const d = a[i]! - b[i]!;
    maxDiff = Math.max(maxDiff, Math.abs(d));
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
    diff2 += d * d;
    ref2 += b[i]! * b[i]!;
  }
  return { maxRel: maxDiff / maxRef, l2Rel: Math.sqrt(diff2 / ref2) };
}

function bytesOf(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

let weights: SafeTensors;
let features: SafeTensors;
let onnx: Uint8Array;
let backbone: OrtBackbone;
let input: Tensor4D;
let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-parity-'));
  weights = await SafeTensors.open(REF_WEIGHTS);
  features = await SafeTensors.open(REF_FEATURES);
  onnx = buildResNetOnnx('resnet50', weights);
  const info = resnetLayerInfo('resnet50');
  backbone = await OrtBackbone.create(onnx, { name: 'resnet50', sha256: weights.sha256(), ...info }, { intraOpNumThreads: 2 });
  input = { data: features.getFloat32('input'), dims: features.shape('input') as Tensor4D['dims'] };
});

afterAll(async () => {
  await backbone?.dispose();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('ResNet50 built from torchvision-layout weights', () => {
  it('matches PyTorch layer1..layer3 features within 1e-4 relative error', async () => {
    expect(input.dims).toEqual([2, 3, 224, 224]);
    const maps = await backbone.extract(input);
    const expectedDims = { layer1: [2, 256, 56, 56], layer2: [2, 512, 28, 28], layer3: [2, 1024, 14, 14] };
    for (const [i, layer] of (['layer1', 'layer2', 'layer3'] as const).entries()) {
      expect(maps[i]!.dims).toEqual(expectedDims[layer]);
      const { maxRel, l2Rel } = relativeErrors(maps[i]!.data, features.getFloat32(layer));
      console.log(`parity ${layer}: max|a-b|/max|b| = ${maxRel.toExponential(3)}, ||a-b||/||b|| = ${l2Rel.toExponential(3)}`);
      expect(maxRel).toBeLessThanOrEqual(1e-4);
      expect(l2Rel).toBeLessThanOrEqual(1e-4);
    }
  });

  it('gives the same maps for concurrent calls as for a single one', async () => {
    const one: Tensor4D = { data: input.data.slice(0, 3 * 224 * 224), dims: [1, 3, 224, 224] };
    const [a, b] = await Promise.all([backbone.extract(one), backbone.extract(one)]);
    const whole = await backbone.extract(input);
    for (let l = 0; l < 3; l++) {
      // Byte comparison: vitest's deep equality is slow on arrays this large.
      expect(Buffer.compare(bytesOf(a![l]!.data), bytesOf(b![l]!.data))).toBe(0);
      expect(a![l]!.dims[0]).toBe(1);
      // Image 0 of the batch of two equals the batch of one.
      const n = a![l]!.data.length;
      expect(relativeErrors(a![l]!.data, whole[l]!.data.subarray(0, n)).maxRel).toBeLessThan(1e-5);
    }
  });

  it('is deterministic and emits a folded Conv/Relu/MaxPool/Add graph with the right interface', () => {
    const again = buildResNetOnnx('resnet50', weights);
    expect(createHash('sha256').update(again).digest('hex')).toBe(createHash('sha256').update(onnx).digest('hex'));
    const model = decodeModel(onnx);
    // Decoded messages always carry their repeated fields.
    const graph = model.graph as OnnxTypes.GraphProto;
    expect(Number(model.irVersion)).toBe(8);
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
    const ops = new Set(graph.node.map((n) => n.opType));
    expect([...ops].sort()).toEqual(['Add', 'Conv', 'MaxPool', 'Relu']);
    // 1 stem conv + (3+4+6)·3 main-path convs + 3 downsample convs.
    expect(graph.node.filter((n) => n.opType === 'Conv')).toHaveLength(1 + 13 * 3 + 3);
    expect(graph.input.map((v) => v.name)).toEqual(['input']);
    const inputDims = graph.input[0]?.type?.tensorType?.shape?.dim ?? [];
    expect(inputDims.map((d) => d.dimParam || Number(d.dimValue))).toEqual(['N', 3, 'H', 'W']);
    expect(graph.output.map((v) => v.name)).toEqual(['layer1', 'layer2', 'layer3']);
    expect(graph.initializer.some((t) => /num_batches_tracked|running/.test(t.name ?? ''))).toBe(false);
  });

  it('detects the architecture of the reference file', () => {
    expect(detectResNetArch(weights)).toBe('resnet50');
  });
});

describe('BatchNorm folding', () => {
  it('equals conv-then-BatchNorm evaluated in float64', () => {
    // 2 output channels, 3 weights each; y = BN(w·x) for x = 1-hot inputs reduces to per-weight checks.
    const w = Float32Array.from([0.5, -1.25, 2, 3, 0.1, -0.7]);
    const gamma = Float32Array.from([1.5, -0.25]);
    const beta = Float32Array.from([0.3, 2]);
    const mean = Float32Array.from([-0.4, 1.1]);
    const variance = Float32Array.from([0.81, 4]);
    const folded = foldBatchNorm(w, gamma, beta, mean, variance, 1e-5);
    for (let o = 0; o < 2; o++) {
      const s = gamma[o]! / Math.sqrt(variance[o]! + 1e-5);
      expect(folded.bias[o]).toBe(Math.fround(beta[o]! - mean[o]! * s));
      for (let i = 0; i < 3; i++) expect(folded.weight[o * 3 + i]).toBe(Math.fround(w[o * 3 + i]! * s));
      // A conv input x: BN(conv(x)) == folded conv(x).
      const x = [0.2, -1, 0.6];
      const conv = x.reduce((acc, xi, i) => acc + xi * w[o * 3 + i]!, 0);
      const bn = ((conv - mean[o]!) / Math.sqrt(variance[o]! + 1e-5)) * gamma[o]! + beta[o]!;
      const fused = x.reduce((acc, xi, i) => acc + xi * folded.weight[o * 3 + i]!, folded.bias[o]!);
      expect(fused).toBeCloseTo(bn, 6);
    }
  });
});

describe('unusable weights', () => {
  /** Writes the reference weights with `edit` applied to the tensor map. */
  async function variant(name: string, edit: (t: Map<string, SafeTensorInput>) => void): Promise<string> {
    const map = new Map<string, SafeTensorInput>();
    for (const [key, e] of weights.entries) {
      if (e.dtype === 'F32') map.set(key, { dtype: 'F32', shape: e.shape, data: weights.getFloat32(key) });
      else map.set(key, { dtype: 'I64', shape: e.shape, data: new BigInt64Array(weights.raw(key).slice().buffer) });
    }
    edit(map);
    const file = path.join(tmp, name);
    await writeSafetensors(file, Object.fromEntries(map));
    return file;
  }

  it('names the missing key and the file', async () => {
    const file = await variant('missing.safetensors', (m) => m.delete('layer2.1.conv2.weight'));
    const st = await SafeTensors.open(file);
    let caught: unknown;
    try {
      buildResNetOnnx('resnet50', st);
    } catch (e) {
      caught = e;
    }
    expect(isPartscanError(caught, 'WEIGHTS_MISSING_KEY')).toBe(true);
    expect((caught as Error).message).toContain('layer2.1.conv2.weight');
    expect((caught as Error).message).toContain(file);
  });

  it('points out a wrapper prefix on every key', () => {
    const prefixed = new Map<string, WeightTensor>();
    for (const [key, shape] of expectedResNetShapes('resnet50')) prefixed.set(`module.${key}`, { shape, data: new Float32Array(0) });
    expect(() => buildResNetOnnx('resnet50', prefixed, { source: 'ckpt.safetensors' })).toThrow(/keys start with "module\."/);
  });

  it('refuses a wrong shape with WEIGHTS_FORMAT', async () => {
    const file = await variant('shape.safetensors', (m) => m.set('layer1.0.bn2.running_var', { dtype: 'F32', shape: [32], data: new Float32Array(32).fill(1) }));
    const st = await SafeTensors.open(file);
    expect(() => buildResNetOnnx('resnet50', st)).toThrow(/layer1\.0\.bn2\.running_var.*shape \[32\].*expected.*\[64\]/);
    try {
      buildResNetOnnx('resnet50', st);
    } catch (e) {
      expect(isPartscanError(e, 'WEIGHTS_FORMAT')).toBe(true);
      expect((e as Error).message).toContain(file);
    }
  });

  it('refuses a negative running variance instead of producing NaNs', async () => {
    const file = await variant('negvar.safetensors', (m) => {
      (m.get('layer3.0.bn1.running_var')!.data as Float32Array)[3] = -1;
    });
    const st = await SafeTensors.open(file);
    expect(() => buildResNetOnnx('resnet50', st)).toThrow(/layer3\.0\.bn1.*NaN or infinite/);
  });

  it('refuses a resnet50 file for resnet18 and wide_resnet50_2 with BACKBONE_MISMATCH', () => {
    for (const arch of ['resnet18', 'wide_resnet50_2'] as const) {
      let caught: unknown;
      try {
        buildResNetOnnx(arch, weights);
      } catch (e) {
        caught = e;
      }
      expect(isPartscanError(caught, 'BACKBONE_MISMATCH'), String(caught)).toBe(true);
      expect((caught as Error).message).toContain('looks like resnet50');
    }
  });

  it('refuses a deeper ResNet (extra layer3 blocks) for resnet50', () => {
    const map = new Map<string, WeightTensor>();
    for (const [key, shape] of expectedResNetShapes('resnet50')) map.set(key, { shape, data: weights.getFloat32(key) });
    map.set('layer3.6.conv1.weight', { shape: [256, 1024, 1, 1], data: new Float32Array(256 * 1024) });
    expect(detectResNetArch(new Map([...map].map(([k, t]) => [k, t.shape])))).toBeUndefined();
    expect(() => buildResNetOnnx('resnet50', map)).toThrow(/blocks \[3, 4, 7, 0\]/);
  });
});
