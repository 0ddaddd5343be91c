/**
 * Tests of the runnable examples: the HTTP inspection service under concurrent valid and invalid
 * requests and fed raw camera frames, and the folder watcher scoring a dropped file exactly once.
 * test/npm-pack-install.test.ts runs the examples again from the packed package in a clean project.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { fit } from '../src/model/fit.js';
import type { Model } from '../src/model/model.js';
import { listImages } from '../src/data/loaders.js';
import { createInspectionServer } from '../examples/inspection-service.js';
import { watchFolder } from '../examples/watch-folder.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

let tmp: string;
let model: Model;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-examples-'));
  const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 12);
  model = await fit(train, {
    backbone: { name: 'resnet50', weights: REF_WEIGHTS },
    imageSize: 128,
    channels: 30,
    calibrationSplit: 0.25,
  });
}, 180_000);

afterAll(async () => {
  await model?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('inspection service', () => {
  let server: http.Server;
  let base: string;
  const maxBodyBytes = 4 * 1024 * 1024;

  beforeAll(async () => {
    server = createInspectionServer(model, { maxBodyBytes });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('GET /health answers', async () => {
    const r = await fetch(`${base}/health`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ ok: true, size: 128, calibrated: true });
  });

  it('20 concurrent requests: valid images get a verdict, bad bodies a 4xx with a message', async () => {
    const names = ['good/000.png', 'good/001.png', 'broken_large/000.png', 'contamination/001.png'];
    const images = await Promise.all(names.map((n) => fs.readFile(path.join(BOTTLE, 'test', n))));
    const bad: { body: Uint8Array; status: number }[] = [
      { body: new Uint8Array(0), status: 400 },
      { body: new TextEncoder().encode('definitely not an image'), status: 422 },
      { body: images[0]!.subarray(0, 300), status: 422 }, // truncated PNG
      { body: new Uint8Array(1000).fill(7), status: 422 },
    ];
    const jobs: { body: Uint8Array; expect: number | 'ok' }[] = [];
    for (let i = 0; i < 20; i++) {
      if (i % 3 === 2) {
        const b = bad[i % bad.length]!;
        jobs.push({ body: b.body, expect: b.status });
      } else jobs.push({ body: images[i % images.length]!, expect: 'ok' });
    }
    const responses = await Promise.all(
      jobs.map(async (j) => {
        const r = await fetch(`${base}/inspect`, { method: 'POST', body: j.body });
        return { status: r.status, json: (await r.json()) as Record<string, unknown>, expect: j.expect };
      }),
    );
    for (const r of responses) {
      if (r.expect === 'ok') {
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        expect(['OK', 'NG', 'UNCERTAIN']).toContain(r.json.verdict);
        expect(typeof r.json.imageScore).toBe('number');
        expect(Array.isArray(r.json.regions)).toBe(true);
      } else {
        expect(r.status, JSON.stringify(r.json)).toBe(r.expect);
        expect(String(r.json.error).length).toBeGreaterThan(5);
      }
    }
    expect(responses.filter((r) => r.expect === 'ok')).toHaveLength(14);
  });

  it('POST /inspect/frame takes the camera buffer (mono8, RGB, BGR with a stride) and answers like the encoded image', async () => {
    const file = path.join(BOTTLE, 'test', 'broken_large', '000.png');
    const ref = (await (await fetch(`${base}/inspect`, { method: 'POST', body: await fs.readFile(file) })).json()) as { verdict: string; imageScore: number; regions: { bbox: { x: number } }[] };
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const rgb = await fetch(`${base}/inspect/frame?width=${info.width}&height=${info.height}&channels=3`, { method: 'POST', body: data });
    expect(rgb.status).toBe(200);
    const got = (await rgb.json()) as typeof ref;
    expect(got.verdict).toBe(ref.verdict);
    expect(Math.abs(got.imageScore - ref.imageScore)).toBeLessThan(1e-4);
    expect(got.regions).toEqual(ref.regions);
    const grey = await sharp(file).greyscale().extractChannel(0).raw().toBuffer();
    const mono = await fetch(`${base}/inspect/frame?width=${info.width}&height=${info.height}&channels=1`, { method: 'POST', body: grey });
    expect(mono.status).toBe(200);
    // render=mask: the defect mask at the frame's size.
    const mask = await fetch(`${base}/inspect/frame?width=${info.width}&height=${info.height}&channels=3&render=mask`, { method: 'POST', body: data });
    expect(mask.headers.get('content-type')).toBe('image/png');
    expect(mask.headers.get('x-verdict')).toBe(ref.verdict);
    expect((await sharp(Buffer.from(await mask.arrayBuffer())).metadata()).width).toBe(info.width);
    // Fields that disagree with the body: 400 naming the field; an unknown render kind: 400.
    const short = await fetch(`${base}/inspect/frame?width=${info.width}&height=${info.height}&channels=4`, { method: 'POST', body: data });
    expect(short.status).toBe(400);
    expect(((await short.json()) as { error: string }).error).toMatch(/Invalid raw frame: data /);
    expect((await fetch(`${base}/inspect/frame?height=2&channels=3`, { method: 'POST', body: data })).status).toBe(400);
    expect((await fetch(`${base}/inspect?render=gif`, { method: 'POST', body: data })).status).toBe(400);
  });

  it('rejects oversized bodies with 413 and unknown routes with 404', async () => {
    // Answered from the declared length, before the body is read.
    const big = await fetch(`${base}/inspect`, { method: 'POST', body: new Uint8Array(maxBodyBytes + 1) });
    expect(big.status).toBe(413);
    expect((await big.json()).code).toBe('TOO_LARGE');
    const r = await fetch(`${base}/nope`);
    expect(r.status).toBe(404);
    const m = await fetch(`${base}/inspect`);
    expect(m.status).toBe(405);
  });
});

describe('watch folder', () => {
  it('scores a dropped file once, after it is completely written', async () => {
    const inDir = path.join(tmp, 'incoming');
    const outDir = path.join(tmp, 'watch-out');
    await fs.mkdir(inDir);
    const seen: string[] = [];
    const w = await watchFolder(model, inDir, outDir, { stableMs: 250, pollMs: 50, onResult: (r) => seen.push(r.file) });
    try {
      const bytes = await fs.readFile(path.join(BOTTLE, 'test', 'broken_large', '001.png'));
      const target = path.join(inDir, 'part-1.png');
      // Written in two steps, like a slow camera transfer.
      const fh = await fs.open(target, 'w');
      await fh.write(bytes.subarray(0, 1000));
      await new Promise((r) => setTimeout(r, 100));
      await fh.write(bytes.subarray(1000));
      await fh.close();
      const deadline = Date.now() + 30_000;
      while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      // Touch it again: a further event must not score it a second time.
      await fs.utimes(target, new Date(), new Date());
      await new Promise((r) => setTimeout(r, 600));
      await w.idle();
      expect(seen).toEqual([target]);
      const manifest = JSON.parse(await fs.readFile(path.join(outDir, 'results.json'), 'utf8'));
      expect(manifest.results).toHaveLength(1);
      expect(manifest.failures).toEqual([]);
      const outputs = await fs.readdir(outDir);
      expect(outputs).toContain('part-1.overlay.png');
    } finally {
      await w.close();
    }
  });
});
