/**
 * A backbone whose ONNX Runtime session opens on first use (what Model.load gives an embedded backbone,
 * since scoring usually runs the single scoring graph): same features as an eagerly created one, the
 * same checks, only later.
 */
import { describe, expect, it } from 'vitest';
import { loadBackbone } from '../models/registry.js';
import { OrtBackbone } from '../src/backbone/ort-backbone.js';
import { REF_WEIGHTS } from './helpers/shared.js';

describe('OrtBackbone.deferred', () => {
  it('gives the features of an eagerly created session; checks input, outputs and threads', async () => {
    const eager = await loadBackbone({ backbone: 'resnet50', weights: REF_WEIGHTS });
    const lazy = OrtBackbone.deferred(eager.onnx, eager.identity, { inputName: eager.inputName });
    try {
      const S = 64;
      const data = new Float32Array(2 * 3 * S * S);
      for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.01);
      const input = { data, dims: [2, 3, S, S] as [number, number, number, number] };
      const a = await eager.extract(input);
      const [b, c] = await Promise.all([lazy.extract(input), lazy.withFeatures(input, (maps) => maps.map((m) => Float32Array.from(m.data)))]);
      a.forEach((m, i) => {
        expect(b[i]!.dims).toEqual(m.dims);
        expect(b[i]!.data).toEqual(m.data);
        expect(c[i]!).toEqual(m.data);
      });
      const wrongInput = OrtBackbone.deferred(eager.onnx, eager.identity, { inputName: 'pixels' });
      await expect(wrongInput.extract(input)).rejects.toMatchObject({ code: 'ONNX_TENSOR_NOT_FOUND' });
      const wrongLayer = OrtBackbone.deferred(eager.onnx, { ...eager.identity, layers: ['layer9'] }, { inputName: eager.inputName });
      await expect(wrongLayer.extract(input)).rejects.toMatchObject({ code: 'ONNX_TENSOR_NOT_FOUND' });
      expect(() => OrtBackbone.deferred(eager.onnx, eager.identity, { inputName: eager.inputName, intraOpNumThreads: 0 })).toThrow(
        expect.objectContaining({ code: 'OPTIONS' }),
      );
      await lazy.dispose();
      await expect(lazy.extract(input)).rejects.toMatchObject({ code: 'OPTIONS' });
    } finally {
      await eager.dispose();
      await lazy.dispose();
    }
  }, 120_000);
});
