import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isPartscanError, type PartscanErrorCode } from '../src/errors.js';
import { buildResNetOnnx } from '../src/backbone/resnet.js';
import { encodeSafetensors, SafeTensors } from '../src/backbone/safetensors.js';
import { downloadWeights, resolveCacheDir } from '../src/backbone/weights-cache.js';
import { BACKBONES, isWeightsCached, loadBackbone, resolveBackbone } from '../src/backbone/registry.js';
import { MOBILENET_INT8, REF_WEIGHTS } from './helpers/shared.js';

let server: http.Server;
let base: string;
let refBytes: Buffer;
let tmp: string;
const hits = new Map<string, number>();

/** A valid safetensors file that is not a ResNet. */
const notAResnet = encodeSafetensors({ 'encoder.weight': { dtype: 'F32', shape: [4], data: new Float32Array(4) } });

beforeAll(async () => {
  refBytes = await fs.readFile(REF_WEIGHTS);
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-download-'));
  server = http.createServer((req, res) => {
    const url = req.url ?? '';
    hits.set(url, (hits.get(url) ?? 0) + 1);
    if (url === '/ok/model.safetensors') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(refBytes.length) });
      createReadStream(REF_WEIGHTS).pipe(res);
    } else if (url === '/broken/model.safetensors') {
      // Announce the whole file, send about 1 MB, then drop the connection.
      res.writeHead(200, { 'content-length': String(refBytes.length) });
      res.write(refBytes.subarray(0, 1 << 20), () => setTimeout(() => req.socket.destroy(), 20));
    } else if (url === '/stall/model.safetensors') {
      res.writeHead(200, { 'content-length': String(refBytes.length) });
      res.write(refBytes.subarray(0, 1000));
      // ...and nothing more; the client's idle timeout must fire. Closed when the server closes.
    } else if (url === '/not-resnet/model.safetensors') {
      res.writeHead(200, { 'content-length': String(notAResnet.length) });
      res.end(Buffer.from(notAResnet));
    } else {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await fs.rm(tmp, { recursive: true, force: true });
});

/** All files (not directories) under `dir`, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
}

async function caught(fn: () => Promise<unknown>): Promise<Error & { code?: string; remedy?: string }> {
  try {
    await fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

function expectCode(e: unknown, code: PartscanErrorCode): void {
  expect(isPartscanError(e, code), `expected ${code}, got ${String(e)}`).toBe(true);
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('weights download and cache', () => {
  it('downloads once, records sha256, builds, and reuses the cache without the network', async () => {
    const cacheDir = path.join(tmp, 'ok');
    const weightsUrl = `${base}/ok/model.safetensors`;
    expect(isWeightsCached('resnet50', cacheDir)).toBe(false);
    const progress: [number, number | undefined][] = [];
    const first = await resolveBackbone({ backbone: 'resnet50', cacheDir, weightsUrl, onProgress: (r, t) => progress.push([r, t]) });
    expect(hits.get('/ok/model.safetensors')).toBe(1);
    expect(progress.at(-1)).toEqual([refBytes.length, refBytes.length]);
    expect(progress.length).toBeGreaterThan(1);

    const file = path.join(cacheDir, 'weights', BACKBONES.resnet50!.fileName!);
    expect(sha(await fs.readFile(file))).toBe(sha(refBytes));
    const sidecar = JSON.parse(await fs.readFile(`${file}.json`, 'utf8'));
    expect(sidecar).toMatchObject({ sha256: sha(refBytes), bytes: refBytes.length, url: weightsUrl });
    expect(isWeightsCached('resnet50', cacheDir)).toBe(true);

    expect(first.identity).toEqual({ name: 'resnet50', sha256: sha(refBytes), layers: ['layer1', 'layer2', 'layer3'], strides: [4, 8, 16], channels: [256, 512, 1024] });
    // The graph is the one the builder makes from the same weights.
    expect(sha(first.onnx)).toBe(sha(buildResNetOnnx('resnet50', SafeTensors.fromBytes(refBytes))));
    const onnxFiles = (await filesUnder(cacheDir)).filter((f) => f.endsWith('.onnx'));
    expect(onnxFiles).toHaveLength(1);

    const second = await resolveBackbone({ backbone: 'resnet50', cacheDir, weightsUrl, offline: true });
    expect(hits.get('/ok/model.safetensors')).toBe(1);
    expect(second.identity).toEqual(first.identity);
    expect(sha(second.onnx)).toBe(sha(first.onnx));

    const backbone = await loadBackbone({ backbone: 'resnet50', cacheDir, offline: true }, { intraOpNumThreads: 1 });
    try {
      const maps = await backbone.extract({ data: new Float32Array(3 * 64 * 64), dims: [1, 3, 64, 64] });
      expect(maps.map((m) => m.dims)).toEqual([
        [1, 256, 16, 16],
        [1, 512, 8, 8],
        [1, 1024, 4, 4],
      ]);
    } finally {
      await backbone.dispose();
    }
  });

  it('leaves nothing in the cache when the connection drops mid-body', async () => {
    const cacheDir = path.join(tmp, 'broken');
    const e = await caught(() => resolveBackbone({ backbone: 'resnet50', cacheDir, weightsUrl: `${base}/broken/model.safetensors` }));
    expectCode(e, 'WEIGHTS_DOWNLOAD');
    expect(e.message).toMatch(/connection broke after \d+ of 34319336 bytes/);
    expect(e.message).toContain(`${base}/broken/model.safetensors`);
    expect(await filesUnder(cacheDir)).toEqual([]);
    expect(isWeightsCached('resnet50', cacheDir)).toBe(false);
  });

  it('times out a stalled download and cleans up', async () => {
    const file = path.join(tmp, 'stall', 'weights', 'w.safetensors');
    const e = await caught(() => downloadWeights({ url: `${base}/stall/model.safetensors`, file, idleTimeoutMs: 300 }));
    expectCode(e, 'WEIGHTS_DOWNLOAD');
    expect(e.message).toMatch(/no data for 0\.3 s after 1000 bytes/);
    expect(await filesUnder(path.join(tmp, 'stall'))).toEqual([]);
  });

  it('reports HTTP errors and unreachable hosts as WEIGHTS_DOWNLOAD', async () => {
    const cacheDir = path.join(tmp, 'http');
    const e404 = await caught(() => resolveBackbone({ backbone: 'resnet18', cacheDir, weightsUrl: `${base}/missing` }));
    expectCode(e404, 'WEIGHTS_DOWNLOAD');
    expect(e404.message).toMatch(/HTTP 404/);
    // Port 9 on localhost: nothing listens there.
    const refused = await caught(() => resolveBackbone({ backbone: 'resnet18', cacheDir, weightsUrl: 'http://127.0.0.1:9/x' }));
    expectCode(refused, 'WEIGHTS_DOWNLOAD');
    expect(refused.message).toMatch(/cannot connect/);
    expect(await filesUnder(cacheDir)).toEqual([]);
  });

  it('refuses a downloaded file that is not the requested ResNet, caching nothing', async () => {
    const cacheDir = path.join(tmp, 'notresnet');
    const e = await caught(() => resolveBackbone({ backbone: 'resnet50', cacheDir, weightsUrl: `${base}/not-resnet/model.safetensors` }));
    expectCode(e, 'WEIGHTS_MISSING_KEY');
    expect(e.message).toContain('conv1.weight');
    expect(await filesUnder(cacheDir)).toEqual([]);
    // The real resnet50 file is not a resnet18.
    const e18 = await caught(() => resolveBackbone({ backbone: 'resnet18', cacheDir, weightsUrl: `${base}/ok/model.safetensors` }));
    expectCode(e18, 'BACKBONE_MISMATCH');
    expect(await filesUnder(cacheDir)).toEqual([]);
  });

  it('detects a cached file that changed on disk (WEIGHTS_CHECKSUM)', async () => {
    const cacheDir = path.join(tmp, 'corrupt');
    const weightsUrl = `${base}/ok/model.safetensors`;
    await resolveBackbone({ backbone: 'resnet50', cacheDir, weightsUrl });
    const file = path.join(cacheDir, 'weights', BACKBONES.resnet50!.fileName!);
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 100] ^= 0x5a;
    bytes[bytes.length - 99] ^= 0xa5;
    await fs.writeFile(file, bytes);
    const before = hits.get('/ok/model.safetensors');
    const e = await caught(() => resolveBackbone({ backbone: 'resnet50', cacheDir, weightsUrl }));
    expectCode(e, 'WEIGHTS_CHECKSUM');
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/delete .* to re-download/);
    expect(hits.get('/ok/model.safetensors')).toBe(before);
  });

  it('refuses bytes from the official registry URL whose sha256 is not the registry\'s, caching nothing', async () => {
    // No override: the registry's own URL is requested (and answered here by the local server with the
    // fixture weights, a valid ResNet50 file but not the published one), so its sha256 is checked.
    const official = BACKBONES.resnet50!.url!;
    const realFetch = globalThis.fetch;
    const requested: string[] = [];
    const spy = vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      requested.push(String(input));
      return realFetch(String(input) === official ? `${base}/ok/model.safetensors` : input, init);
    });
    const cacheDir = path.join(tmp, 'official-sha');
    try {
      const e = await caught(() => resolveBackbone({ backbone: 'resnet50', cacheDir }));
      expectCode(e, 'WEIGHTS_CHECKSUM');
      expect(e.message).toContain(official);
      expect(e.message).toContain(BACKBONES.resnet50!.sha256!);
      expect(e.message).toContain(sha(refBytes));
    } finally {
      spy.mockRestore();
    }
    expect(requested).toEqual([official]);
    expect(await filesUnder(cacheDir)).toEqual([]);
  });

  it('fails offline when the weights are not cached, and uses --weights files without any download', async () => {
    const cacheDir = path.join(tmp, 'offline');
    const e = await caught(() => resolveBackbone({ backbone: 'wide_resnet50_2', cacheDir, offline: true }));
    expectCode(e, 'WEIGHTS_DOWNLOAD');
    expect(e.message).toMatch(/offline/);
    expect(e.message).toMatch(/--weights/);
    const local = await resolveBackbone({ backbone: 'resnet50', cacheDir, weights: REF_WEIGHTS, offline: true });
    expect(local.identity.sha256).toBe(sha(refBytes));
    const mismatch = await caught(() => resolveBackbone({ backbone: 'resnet18', cacheDir, weights: REF_WEIGHTS }));
    expectCode(mismatch, 'BACKBONE_MISMATCH');
    expect(mismatch.message).toMatch(/--backbone resnet50/);
  });

  it('picks the cache directory: option > PARTSCAN_CACHE_DIR > ~/.cache/partscan', () => {
    const saved = process.env.PARTSCAN_CACHE_DIR;
    try {
      process.env.PARTSCAN_CACHE_DIR = path.join(tmp, 'env');
      expect(resolveCacheDir(path.join(tmp, 'opt'))).toBe(path.join(tmp, 'opt'));
      expect(resolveCacheDir()).toBe(path.join(tmp, 'env'));
      delete process.env.PARTSCAN_CACHE_DIR;
      expect(resolveCacheDir()).toBe(path.join(os.homedir(), '.cache', 'partscan'));
    } finally {
      if (saved === undefined) delete process.env.PARTSCAN_CACHE_DIR;
      else process.env.PARTSCAN_CACHE_DIR = saved;
    }
  });
});

describe('registry names and ONNX backbones', () => {
  it('rejects unknown names and bad layer choices', async () => {
    const e = await caught(() => resolveBackbone({ backbone: 'resnet51' }));
    expectCode(e, 'BACKBONE_UNKNOWN');
    expect(e.message).toMatch(/resnet51/);
    expect(e.remedy).toMatch(/resnet50-random/);
    const layers = await caught(() => resolveBackbone({ backbone: 'resnet50-random', cacheDir: path.join(tmp, 'r'), layers: ['layer4'] }));
    expectCode(layers, 'OPTIONS');
    expect(isWeightsCached('nope')).toBe(false);
    expect(isWeightsCached('resnet50-random')).toBe(true);
  });

  it('exposes named tensors of an int8 ONNX classifier and measures strides and channels', async () => {
    const missing = await caught(() => resolveBackbone({ backbone: MOBILENET_INT8 }));
    expectCode(missing, 'OPTIONS');
    const names = /candidates at strides 4\/8\/16: (\S+?)\./.exec(missing.message)?.[1]?.split(',');
    expect(names, missing.message).toHaveLength(3);
    const resolved = await resolveBackbone({ backbone: MOBILENET_INT8, layers: names! });
    expect(resolved.identity.name).toBe('onnx:mobilenetv2-12-int8.onnx');
    expect(resolved.identity.sha256).toBe('83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f');
    expect(resolved.identity.strides).toEqual([4, 8, 16]);
    expect(resolved.identity.channels.every((c) => Number.isInteger(c) && c > 0)).toBe(true);
    const backbone = await loadBackbone({ backbone: MOBILENET_INT8, layers: names! }, { intraOpNumThreads: 1 });
    try {
      const maps = await backbone.extract({ data: new Float32Array(2 * 3 * 128 * 128).fill(0.1), dims: [2, 3, 128, 128] });
      expect(maps.map((m) => m.dims)).toEqual(resolved.identity.channels.map((c, i) => [2, c, 128 / resolved.identity.strides[i]!, 128 / resolved.identity.strides[i]!]));
    } finally {
      await backbone.dispose();
    }
  });
});
