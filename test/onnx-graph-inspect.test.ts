/**
 * Inspection of untrusted ONNX graphs (src/onnx/graph-inspect.ts): hand-built hostile graphs are
 * refused with ONNX_FORMAT before ONNX Runtime loads or runs them — through `--backbone file.onnx`
 * (loadBackbone, the CLI) and embedded in a model file alike — while the graphs partscan ships and
 * builds (bundled int8 MobileNetV2, ResNet50, its int8 quantization) pass. Each refusal is quick and
 * allocates nothing of what the graph asks for.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { encodeModel, floatInitializer, int64Initializer, makeNode, MS_DOMAIN, OnnxDataType, tensorValueInfo } from '../src/onnx/graph.js';
import { GRAPH_LIMITS, inspectOnnxGraph } from '../src/onnx/graph-inspect.js';
import { loadBackbone } from '../src/backbone/registry.js';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { readModelFile, writeModelFile } from '../src/model/model-file.js';
import { isPartscanError } from '../src/errors.js';
import { listImages } from '../src/data/loaders.js';
import { runCli } from '../src/cli/cli.js';
import { BOTTLE, REF_WEIGHTS, REPO } from './helpers/shared.js';

const { onnx } = onnxProto;
const F = OnnxDataType.FLOAT;
let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-graphs-'));
});
afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/**
 * A tiny backbone: input [N,3,H,W] → 3×3 conv (8 channels) → `layer1`, then `extra` nodes whose output
 * `bomb` (any shape) is reduced to one value and added to the feature map, so it cannot be pruned away.
 */
function graph(extra: OnnxTypes.INodeProto[], initializers: OnnxTypes.ITensorProto[] = [], opts: { domains?: string[]; output?: string } = {}): Uint8Array {
  const nodes = [
    makeNode('Conv', ['input', 'w'], ['conv'], 'conv', { pads: [1, 1, 1, 1] }),
    ...extra,
    makeNode('ReduceMax', ['bomb'], ['bomb.max'], 'reduce', { keepdims: 0 }),
    makeNode('Add', ['conv', 'bomb.max'], [opts.output ?? 'layer1'], 'add'),
  ];
  const bytes = encodeModel({
    graphName: 'hostile',
    nodes,
    initializers: [floatInitializer('w', [8, 3, 3, 3], new Float32Array(8 * 27).fill(0.01)), ...initializers],
    inputs: [tensorValueInfo('input', F, ['N', 3, 'H', 'W'])],
    outputs: [tensorValueInfo(opts.output ?? 'layer1', F, ['N', 8, 'H', 'W'])],
    opset: 17,
    irVersion: 8,
    producerVersion: 'test',
  });
  if (!opts.domains) return bytes;
  const m = onnx.ModelProto.decode(bytes);
  m.opsetImport.push(...opts.domains.map((domain) => ({ domain, version: 1 })));
  return onnx.ModelProto.encode(m).finish();
}

const shapeInit = (name: string, dims: number[]) => int64Initializer(name, [dims.length], dims);
const one = (name: string) => floatInitializer(name, [1], new Float32Array([1]));

/** 2^31 float32 elements: 8 GiB. */
const BIG = [1, 8, 2 ** 14, 2 ** 14];

const hostile: { name: string; bytes: () => Uint8Array; message: RegExp }[] = [
  {
    name: 'ConstantOfShape of 8 GiB',
    bytes: () => graph([makeNode('ConstantOfShape', ['big.shape'], ['bomb'], 'cos')], [shapeInit('big.shape', BIG)]),
    message: /size-producing operator ConstantOfShape makes tensor "bomb" of 2147483648 elements/,
  },
  {
    name: 'Expand to 8 GiB',
    bytes: () => graph([makeNode('Expand', ['one', 'big.shape'], ['bomb'], 'expand')], [one('one'), shapeInit('big.shape', BIG)]),
    message: /Expand makes tensor "bomb"/,
  },
  {
    name: 'Tile of the feature map ×65536',
    bytes: () => graph([makeNode('Tile', ['conv', 'reps'], ['bomb'], 'tile')], [shapeInit('reps', [1, 256, 16, 16])]),
    message: /Tile makes tensor "bomb"/,
  },
  {
    name: 'Range of 2^31 values',
    bytes: () =>
      graph(
        [makeNode('Range', ['r.start', 'r.limit', 'r.delta'], ['bomb'], 'range')],
        [floatInitializer('r.start', [], new Float32Array([0])), floatInitializer('r.limit', [], new Float32Array([2 ** 31])), floatInitializer('r.delta', [], new Float32Array([1]))],
      ),
    message: /Range makes tensor "bomb"/,
  },
  {
    name: 'Resize ×1000',
    bytes: () => graph([makeNode('Resize', ['conv', '', 'scales'], ['bomb'], 'resize')], [floatInitializer('scales', [4], new Float32Array([1, 1, 1000, 1000]))]),
    message: /Resize makes tensor "bomb"/,
  },
  {
    name: 'Pad by 100 000',
    bytes: () => graph([makeNode('Pad', ['conv', 'pads'], ['bomb'], 'pad')], [shapeInit('pads', [0, 0, 100_000, 100_000, 0, 0, 100_000, 100_000])]),
    message: /Pad makes tensor "bomb"/,
  },
  {
    name: 'a 1×1 conv fanning out to 65536 channels',
    bytes: () => graph([makeNode('Conv', ['conv', 'fan'], ['bomb'], 'fan')], [floatInitializer('fan', [65536, 8, 1, 1], new Float32Array(65536 * 8))]),
    message: /operator Conv makes tensor "bomb" of \d+ elements/,
  },
  {
    name: 'a size computed from the data (NonZero → ConstantOfShape)',
    bytes: () =>
      graph(
        [makeNode('NonZero', ['conv'], ['nz'], 'nz'), makeNode('Shape', ['nz'], ['nz.shape'], 'shape'), makeNode('ConstantOfShape', ['nz.shape'], ['bomb'], 'cos')],
      ),
    message: /cannot work out the size of tensor "nz"/,
  },
  {
    name: 'an initializer with external data (secret.bin)',
    bytes: () => {
      const m = onnx.ModelProto.decode(graph([makeNode('Identity', ['conv'], ['bomb'], 'id')]));
      m.graph!.initializer!.push({ name: 'ext', dims: [4], dataType: F, dataLocation: 1, externalData: [{ key: 'location', value: 'secret.bin' }] });
      return onnx.ModelProto.encode(m).finish();
    },
    message: /initializer "ext" keeps its data in an external file/,
  },
  {
    name: 'a sub-graph (If)',
    bytes: () => {
      const m = onnx.ModelProto.decode(graph([makeNode('Identity', ['conv'], ['bomb'], 'id')]));
      const branch = { name: 'b', node: [makeNode('Identity', ['conv'], ['y'], 'i')], output: [tensorValueInfo('y', F, [1])] };
      m.graph!.node!.push({ opType: 'If', input: ['cond'], output: ['z'], name: 'if', attribute: [{ name: 'then_branch', type: 5, g: branch }, { name: 'else_branch', type: 5, g: branch }] });
      return onnx.ModelProto.encode(m).finish();
    },
    message: /sub-graph \(attribute "then_branch" of If\)/,
  },
  {
    name: 'a custom-domain operator',
    bytes: () => graph([{ ...makeNode('Evil', ['conv'], ['bomb'], 'evil'), domain: 'com.example' }], [], { domains: ['com.example'] }),
    message: /operator Evil of domain "com.example" is not a standard ONNX operator/,
  },
  {
    name: 'a com.microsoft operator outside the quantized set',
    bytes: () => graph([{ ...makeNode('Inverse', ['conv'], ['bomb'], 'inv'), domain: MS_DOMAIN }], [], { domains: [MS_DOMAIN] }),
    message: /operator Inverse of domain "com.microsoft"/,
  },
];

describe('ONNX graph inspection', () => {
  it.each(hostile)('refuses $name (inspectOnnxGraph)', ({ bytes, message }) => {
    const g = bytes();
    expect(g.byteLength).toBeLessThan(3 * 1024 * 1024);
    let error: unknown;
    try {
      inspectOnnxGraph(g, { source: 'hostile.onnx' });
    } catch (e) {
      error = e;
    }
    expect(isPartscanError(error, 'ONNX_FORMAT'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(message);
  });

  it('a control graph of the same shape passes', () => {
    const g = graph([makeNode('ConstantOfShape', ['s'], ['bomb'], 'cos')], [shapeInit('s', [1, 8, 4, 4])]);
    const r = inspectOnnxGraph(g, { source: 'ok.onnx' });
    expect(r.largest.elements).toBe(8 * 224 * 224);
  });

  it('passes the graphs partscan ships and builds, within the budget', async () => {
    const bundled = readFileSync(path.join(REPO, 'models', 'mobilenetv2-12-int8.onnx'));
    const b = inspectOnnxGraph(bundled, { source: 'bundled' });
    const resnet = await loadBackbone({ backbone: 'resnet50', weights: REF_WEIGHTS });
    try {
      const r = inspectOnnxGraph(resnet.onnx, { source: 'resnet50' });
      for (const x of [b, r]) {
        expect(x.largest.elements).toBeLessThan(GRAPH_LIMITS.tensorElements / 16);
        expect(x.totalElements).toBeLessThan(GRAPH_LIMITS.totalElements / 4);
      }
      // The same ResNet exported with a fixed 1024 px input: 21× the tensors, within the budget scaled by area.
      const m = onnx.ModelProto.decode(resnet.onnx);
      const dims = m.graph!.input![0]!.type!.tensorType!.shape!.dim!;
      dims[2] = { dimValue: 1024 };
      dims[3] = { dimValue: 1024 };
      const fixed = inspectOnnxGraph(onnx.ModelProto.encode(m).finish(), { source: 'resnet50@1024' });
      expect(fixed.totalElements).toBeGreaterThan(GRAPH_LIMITS.totalElements);
    } finally {
      await resnet.dispose();
    }
  });

  it('through --backbone file.onnx: loadBackbone and the CLI refuse the 8 GiB graph quickly, without allocating it', async () => {
    const file = path.join(tmp, 'bomb.onnx');
    await fs.writeFile(file, hostile[0]!.bytes());
    expect((await fs.stat(file)).size).toBeLessThan(4096);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const e = await loadBackbone({ backbone: file, layers: ['layer1'] }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isPartscanError(e, 'ONNX_FORMAT'), String(e)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(512 * 1024 ** 2);
    const err: string[] = [];
    const train = path.join(BOTTLE, 'train', 'good');
    const code = await runCli(['node', 'partscan', 'fit', train, '--out', path.join(tmp, 'never.partscan'), '--backbone', file, '--layers', 'layer1'], { out: () => undefined, err: (t) => void err.push(t) });
    expect(code).toBe(2);
    expect(err.join('')).toMatch(/^partscan: The ONNX graph .*bomb\.onnx is refused: the size-producing operator ConstantOfShape/);
  }, 60_000);

  it('embedded in a model file (with the header and checksums made to match): Model.load refuses it', async () => {
    const all = await listImages(path.join(BOTTLE, 'train', 'good'));
    const model = await fit(all.slice(0, 6), { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS, layers: ['layer1'] }, channels: 8, imageSize: 64, calibration: all.slice(6, 8), contaminationCheck: false });
    const file = path.join(tmp, 'valid.partscan');
    await model.save(file);
    await model.dispose();
    const contents = await readModelFile(file);
    const { sections: table, ...header } = contents.header;
    const bomb = hostile[0]!.bytes();
    (header.backbone as Record<string, unknown>).graphSha256 = createHash('sha256').update(bomb).digest('hex');
    const secs = table.map((t) => ({ name: t.name, data: t.name === 'backbone.onnx' ? bomb : contents.sections.get(t.name)!, shape: t.name === 'backbone.onnx' ? [bomb.length] : [...t.shape] }));
    const evil = path.join(tmp, 'evil.partscan');
    await writeModelFile(evil, header, secs);
    const rss0 = process.memoryUsage().rss;
    const e = await Model.load(evil).then(
      async (m) => (await m.dispose(), undefined),
      (x: unknown) => x,
    );
    expect(isPartscanError(e, 'ONNX_FORMAT'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(/ConstantOfShape/);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(512 * 1024 ** 2);
  }, 120_000);
});
