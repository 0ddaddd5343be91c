/**
 * src/onnx/ is the one ONNX Runtime boundary: sessions are created only by its factory (so every
 * session gets the same thread and pool settings), and the opset / IR version literals live only in
 * its graph builder (so the backbone, the kernels and the export cannot drift apart).
 */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers/shared.js';
import ort from 'onnxruntime-node';
import fc from 'fast-check';
import {
  encodeKernelModel,
  encodeModelWithRawTensors,
  decodeModel,
  floatInitializer,
  makeNode,
  modelProto,
  ONNX_IR_VERSION,
  ONNX_OPSET,
  MS_DOMAIN,
  OnnxDataType,
  tensorValueInfo,
  type RawTensor,
} from '../src/onnx/graph.js';
import { createSession } from '../src/onnx/session.js';
import { BACKBONE_THREAD_CAP, defaultThreads, KERNEL_THREAD_CAP, ortSessionOptions } from '../src/onnx/session.js';
import { defaultIntraOpThreads } from '../src/backbone/ort-backbone.js';

function sources(): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) out.push({ file: path.relative(REPO, p), text: readFileSync(p, 'utf8') });
    }
  };
  walk(path.join(REPO, 'src'));
  return out;
}

describe('the ONNX runtime boundary', () => {
  it('creates every InferenceSession in src/onnx/session.ts', () => {
    const creators = sources().filter((s) => /InferenceSession\.create\(/.test(s.text)).map((s) => s.file);
    expect(creators).toEqual([path.join('src', 'onnx', 'session.ts')]);
  });

  it('writes the opset and IR version literals only in src/onnx/graph.ts', () => {
    const literal = /\birVersion:\s*\d|\bversion:\s*1[0-9]\b|(?:OPSET|IR_VERSION)\s*=\s*\d/;
    const offenders = sources().filter((s) => literal.test(s.text)).map((s) => s.file);
    expect(offenders).toEqual([path.join('src', 'onnx', 'graph.ts')]);
  });

  it('has one thread default, capped per role', () => {
    const cores = os.availableParallelism();
    expect(defaultThreads()).toBe(Math.max(1, Math.min(cores, KERNEL_THREAD_CAP)));
    expect(defaultIntraOpThreads()).toBe(Math.max(1, Math.min(cores, BACKBONE_THREAD_CAP)));
    expect(ortSessionOptions(3)).toMatchObject({ intraOpNumThreads: 3, interOpNumThreads: 1, executionMode: 'sequential' });
  });

  it('wraps kernel graphs in the shared envelope', () => {
    const model = decodeModel(encodeKernelModel({ name: 'k' }, true));
    expect(Number(model.irVersion)).toBe(ONNX_IR_VERSION);
    expect(model.producerName).toBe('partscan');
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([
      ['', ONNX_OPSET],
      [MS_DOMAIN, 1],
    ]);
  });

  it('encodes big tensors straight into the model bytes: ORT runs it exactly like the protobufjs encoding', async () => {
    // y = (x · W) + B with W, B given as raw tensors; the name padding moves the raw data to every
    // alignment, so both the direct write and the chunked copy are exercised.
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 7 }), fc.boolean(), async (k, namePad, direct) => {
        const W = Float32Array.from({ length: 3 * k }, (_, i) => Math.sin(i + 1) * 3);
        const B = Float32Array.from({ length: k }, (_, i) => i - 0.5);
        const wName = `w${'x'.repeat(namePad)}`;
        const graph = {
          name: 'raw',
          node: [makeNode('MatMul', ['x', wName], ['xw'], 'mm'), makeNode('Add', ['xw', 'b'], ['y'], 'add')],
          input: [tensorValueInfo('x', OnnxDataType.FLOAT, [2, 3])],
          output: [tensorValueInfo('y', OnnxDataType.FLOAT, [2, k])],
        };
        const reference = encodeKernelModel({ ...graph, initializer: [floatInitializer(wName, [3, k], W), floatInitializer('b', [k], B)] });
        let directWrites = 0;
        const raw = (name: string, dims: number[], data: Float32Array): RawTensor => ({
          proto: { name, dims, dataType: OnnxDataType.FLOAT },
          byteLength: data.byteLength,
          // Two chunks, so the chunked copy joins pieces.
          chunks: () => [new Uint8Array(data.buffer, 0, 4), new Uint8Array(data.buffer, 4)],
          ...(direct
            ? {
                writeInto: (target: Uint8Array) => {
                  expect(target.byteOffset % 4).toBe(0);
                  new Float32Array(target.buffer, target.byteOffset, data.length).set(data);
                  directWrites++;
                },
              }
            : {}),
        });
        const bytes = encodeModelWithRawTensors(modelProto({ opsetImport: [{ domain: '', version: ONNX_OPSET }], graph }), [raw(wName, [3, k], W), raw('b', [k], B)]);
        if (direct) expect(directWrites).toBe(2);
        const x = new ort.Tensor('float32', Float32Array.from([1, 2, 3, -1, 0.5, 4]), [2, 3]);
        const run = async (b: Uint8Array): Promise<Float32Array> => {
          const s = await createSession(b, 1);
          try {
            return (await s.run({ x }))['y']!.data as Float32Array;
          } finally {
            await s.release();
          }
        };
        expect(Array.from(await run(bytes))).toEqual(Array.from(await run(reference)));
      }),
      { numRuns: 12 },
    );
  });

  it('refuses raw tensors whose chunks do not add up to their length', () => {
    const graph = { name: 'g', node: [], input: [], output: [] };
    const bad: RawTensor = { proto: { name: 't', dims: [2], dataType: OnnxDataType.FLOAT }, byteLength: 8, chunks: () => [new Uint8Array(4)] };
    expect(() => encodeModelWithRawTensors(modelProto({ graph }), [bad])).toThrow(/chunks hold 4 of its 8 bytes/);
    const over: RawTensor = { ...bad, chunks: () => [new Uint8Array(12)] };
    expect(() => encodeModelWithRawTensors(modelProto({ graph }), [over])).toThrow(/exceed/);
  });
});
