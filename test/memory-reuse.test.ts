/**
 * Buffer reuse and huge pages: the memory-first-touch measures of the scoring and fit paths must not
 * change any result, and concurrent users must never share a buffer.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrtBackbone } from '../src/backbone/ort-backbone.js';
import { randomResNetWeights } from '../src/backbone/random-weights.js';
import { buildResNetOnnx, resnetLayerInfo } from '../src/backbone/resnet.js';
import { channelSources, gatherEmbedding, selectChannels } from '../src/embedding/embedding.js';
import { BufferPool } from '../src/util/buffer-pool.js';
import { HUGE_PAGES_ENV, HUGE_PAGES_TUNABLE, hugePagesEnabled, hugePagesEnvironment } from '../src/util/huge-pages.js';
import type { Tensor4D } from '../src/types.js';
import { REPO } from './helpers/shared.js';

function image(n: number, size: number, seed: number): Tensor4D {
  const data = new Float32Array(n * 3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.013 + seed) * 1.5;
  return { data, dims: [n, 3, size, size] };
}

describe('BufferPool', () => {
  it('never hands out a buffer twice while it is in use, and reuses released ones', () => {
    const pool = new BufferPool(2);
    const a = pool.acquire(1000);
    const b = pool.acquire(1000);
    expect(a.buffer).not.toBe(b.buffer);
    pool.release(a);
    const c = pool.acquire(500); // fits in a's buffer
    expect(c.buffer).toBe(a.buffer);
    expect(c.length).toBe(500);
    const d = pool.acquire(1000); // a is taken again: a new one, never b (still in use) or a
    expect(d.buffer).not.toBe(a.buffer);
    expect(d.buffer).not.toBe(b.buffer);
  });

  it('keeps at most `keep` released buffers, the largest ones', () => {
    const pool = new BufferPool(1);
    const small = pool.acquire(10);
    const large = pool.acquire(10_000);
    pool.release(small);
    pool.release(large);
    expect(pool.acquire(5000).buffer).toBe(large.buffer);
    expect(pool.acquire(10).buffer).not.toBe(small.buffer);
  });
});

describe('pooled backbone outputs (withFeatures)', () => {
  let backbone: OrtBackbone;
  beforeAll(async () => {
    const onnx = buildResNetOnnx('resnet18', randomResNetWeights('resnet18', 3));
    backbone = await OrtBackbone.create(onnx, { name: 'resnet18-random', sha256: '', seed: 3, ...resnetLayerInfo('resnet18') }, { intraOpNumThreads: 2 });
  });
  afterAll(async () => backbone.dispose());

  it('gives the same maps as extract, on the first run and on reused buffers', async () => {
    const x = image(2, 64, 1);
    const expected = await backbone.extract(x);
    for (let round = 0; round < 3; round++) {
      const got = await backbone.withFeatures(x, (maps) => maps.map((m) => ({ data: m.data.slice(), dims: m.dims })));
      expect(got.map((m) => m.dims)).toEqual(expected.map((m) => m.dims));
      got.forEach((m, i) => expect(m.data).toEqual(expected[i]!.data));
    }
  });

  it('concurrent calls on different images each see their own maps', async () => {
    const inputs = [image(1, 64, 2), image(1, 64, 3), image(1, 64, 4)];
    const expected = await Promise.all(inputs.map((x) => backbone.extract(x)));
    await backbone.withFeatures(inputs[0]!, () => undefined); // learn the shape: later calls are pooled
    const got = await Promise.all(
      inputs.map((x) =>
        backbone.withFeatures(x, async (maps) => {
          await new Promise((r) => setTimeout(r, 5)); // hold the buffers while the others run
          return maps.map((m) => m.data.slice());
        }),
      ),
    );
    got.forEach((maps, k) => maps.forEach((m, i) => expect(m).toEqual(expected[k]![i]!.data)));
  });
});

describe('gatherEmbedding into a reused buffer', () => {
  it('writes exactly what a fresh gather returns, whatever the buffer held before', () => {
    const maps: Tensor4D[] = [
      { data: Float32Array.from({ length: 2 * 8 * 8 * 8 }, (_, i) => i), dims: [2, 8, 8, 8] },
      { data: Float32Array.from({ length: 2 * 16 * 4 * 4 }, (_, i) => -i), dims: [2, 16, 4, 4] },
    ];
    const sources = channelSources(selectChannels(24, 10, 5), [8, 16]);
    const fresh = gatherEmbedding(maps, sources).data;
    const into = new Float32Array(fresh.length).fill(Number.NaN);
    expect(gatherEmbedding(maps, sources, into).data).toEqual(fresh);
    expect(() => gatherEmbedding(maps, sources, new Float32Array(fresh.length - 1))).toThrow(RangeError);
  });

  it('writes a batch into rows of a larger [P, capacity, d] buffer (the statistics buffer of a fit), leaving the other rows', () => {
    const maps: Tensor4D[] = [
      { data: Float32Array.from({ length: 2 * 8 * 8 * 8 }, (_, i) => i), dims: [2, 8, 8, 8] },
      { data: Float32Array.from({ length: 2 * 16 * 4 * 4 }, (_, i) => -i), dims: [2, 16, 4, 4] },
    ];
    const sources = channelSources(selectChannels(24, 10, 5), [8, 16]);
    const fresh = gatherEmbedding(maps, sources).data; // [P=64, 2, 10]
    const [P, d, capacity, offset] = [64, 10, 5, 3];
    const buffer = new Float32Array(P * capacity * d).fill(7);
    gatherEmbedding(maps, sources, buffer, { capacity, offset });
    for (let p = 0; p < P; p++) {
      for (let r = 0; r < capacity; r++) {
        const row = buffer.subarray((p * capacity + r) * d, (p * capacity + r + 1) * d);
        if (r >= offset) expect(row).toEqual(fresh.subarray((p * 2 + r - offset) * d, (p * 2 + r - offset + 1) * d));
        else expect(row.every((v) => v === 7)).toBe(true);
      }
    }
    expect(() => gatherEmbedding(maps, sources, buffer, { capacity, offset: 4 })).toThrow(RangeError);
  });
});

describe('huge pages', () => {
  it('adds glibc\'s tunable to an environment once, keeps other tunables, and honours the opt-out', () => {
    const env = hugePagesEnvironment({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2', PATH: '/bin' });
    if (env) {
      expect(env.GLIBC_TUNABLES).toBe(`glibc.malloc.arena_max=2:${HUGE_PAGES_TUNABLE}`);
      expect(env[HUGE_PAGES_ENV]).toBe('0');
      expect(hugePagesEnabled(env)).toBe(true);
      expect(hugePagesEnvironment(env)).toBeUndefined(); // never twice
    }
    expect(hugePagesEnvironment({ [HUGE_PAGES_ENV]: '0' })).toBeUndefined();
    expect(hugePagesEnvironment({ GLIBC_TUNABLES: HUGE_PAGES_TUNABLE })).toBeUndefined();
    expect(hugePagesEnabled({})).toBe(false);
  });

  it('relaunchWithHugePages re-runs a command with the tunable, forwarding arguments, output and exit status', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'partscan-hp-'));
    const script = path.join(dir, 'child.mts'); // ESM: the relaunch is awaited at top level
    const out = path.join(dir, 'out.json');
    const helper = path.join(REPO, 'src', 'util', 'huge-pages.ts');
    writeFileSync(
      script,
      `import { relaunchWithHugePages } from ${JSON.stringify(helper)};\n` +
        `await relaunchWithHugePages();\n` +
        `import('node:fs').then((fs) => { fs.appendFileSync(${JSON.stringify(out)}, JSON.stringify({ t: process.env.GLIBC_TUNABLES ?? null, args: process.argv.slice(2) }) + '\\n'); process.exit(7); });\n`,
    );
    const env = { ...process.env };
    delete env.GLIBC_TUNABLES;
    delete env[HUGE_PAGES_ENV];
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, 'a', '--b'], { cwd: REPO, env, encoding: 'utf8' });
    expect(r.status).toBe(7);
    const runs = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { t: string | null; args: string[] });
    expect(runs).toHaveLength(1); // the work ran once, in the relaunched process (or here, when not offered)
    expect(runs[0]!.args).toEqual(['a', '--b']);
    if (hugePagesEnvironment(env)) expect(runs[0]!.t).toBe(HUGE_PAGES_TUNABLE);
    else expect(runs[0]!.t).toBeNull();
  });
});
