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
import { encodeKernelModel, decodeModel, ONNX_IR_VERSION, ONNX_OPSET, MS_DOMAIN } from '../src/onnx/graph.js';
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
});
