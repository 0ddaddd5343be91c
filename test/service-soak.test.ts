/**
 * Soak test of the example inspection service (examples/inspection-service.ts): rounds of 200
 * concurrent requests, half valid bottle images (PNG and JPEG, good and defective), half bad requests
 * (empty, garbage, truncated PNGs, text, BMP, a PNG bomb above the pixel cap, bodies over the limit by
 * declared length and by chunked streaming, wrong method / route, a malformed request target).
 * Every request must get an answer, every valid one the result `model.score` gives for the same bytes,
 * every bad one a 4xx with a JSON {error, code}; the server must still answer /health and the process
 * memory must not grow from round to round. The catalogue and client live in bench/service-soak-driver.ts
 * (shared with `npx tsx bench/service-soak.ts`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fit } from '../src/model/fit.js';
import type { Model } from '../src/model/model.js';
import { listImages } from '../src/data/loaders.js';
import { createInspectionServer } from '../examples/inspection-service.js';
import { buildCatalogue, check, runRound, send, type SoakAnswer, type SoakCase } from '../bench/service-soak-driver.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const MAX_BODY = 1024 * 1024; // bottle PNGs are ~270 kB
const REQUESTS = 200;
const MB = 2 ** 20;

let model: Model;
let server: http.Server;
let port: number;
let cases: { valid: SoakCase[]; bad: SoakCase[] };
// No keep-alive: a reused idle socket can race the server's keep-alive timeout (a client-side ECONNRESET
// that says nothing about the service).
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

beforeAll(async () => {
  const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 12);
  model = await fit(train, { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, imageSize: 128, channels: 30, calibrationSplit: 0.25 });
  server = createInspectionServer(model, { maxBodyBytes: MAX_BODY });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  cases = await buildCatalogue(model, BOTTLE, MAX_BODY);
}, 180_000);

afterAll(async () => {
  agent.destroy();
  server?.closeAllConnections();
  if (server) await new Promise((resolve) => server.close(resolve));
  await model?.dispose();
});

function expectAllAnswered(answers: SoakAnswer[]): void {
  expect(answers).toHaveLength(REQUESTS);
  const problems = answers.map((a) => check(a)).filter((m): m is string => m !== undefined);
  expect(problems, problems.slice(0, 5).join('\n')).toEqual([]);
  for (const a of answers) {
    if (a.case.expect.kind === 'reject') {
      expect(a.status).toBeGreaterThanOrEqual(400);
      expect(a.status).toBeLessThan(500);
    }
  }
  expect(answers.filter((a) => a.status === 200)).toHaveLength(REQUESTS / 2);
}

describe('inspection service soak', () => {
  it('the catalogue covers the bad-request kinds and the valid results come from model.score', () => {
    expect(cases.valid.length).toBeGreaterThanOrEqual(6);
    expect(new Set(cases.valid.map((c) => (c.expect.kind === 'score' ? c.expect.verdict : '')))).toContain('NG');
    expect(new Set(cases.bad.map((c) => (c.expect.kind === 'reject' ? c.expect.status : 0)))).toEqual(new Set([400, 404, 405, 413, 415, 422]));
  });

  it(`${REQUESTS} concurrent requests × 3 rounds: all answered, exact results, 4xx for bad input, flat memory`, async () => {
    // Round 0 warms up: backbone sessions, sharp's thread pool and the allocators reach the high-water
    // mark of 200 requests in flight (bodies, decoded 900×900 images, backbone activations).
    expectAllAnswered(await runRound(port, cases, REQUESTS, agent, 0));
    const rssWarm = process.memoryUsage().rss;
    expectAllAnswered(await runRound(port, cases, REQUESTS, agent, 1));
    const rss1 = process.memoryUsage().rss;
    expectAllAnswered(await runRound(port, cases, REQUESTS, agent, 2));
    const rss2 = process.memoryUsage().rss;
    console.log(JSON.stringify({ rssWarmMB: Math.round(rssWarm / MB), rss1MB: Math.round(rss1 / MB), rss2MB: Math.round(rss2 / MB) }));
    // Once warm, a round should not grow the process: each request allocates ~0.3 MB of body, a 2.4 MB
    // decoded image and a few MB of backbone activations, all released after the answer. 150 MB is
    // generous for allocator noise (RSS is not returned to the OS eagerly; a jump of ~100 MB was seen
    // when a round first reached a new high-water mark) yet catches a leak of a decoded image or a
    // backbone output per request (100 valid requests × ≥1.5 MB ≥ 150 MB per round).
    expect(rss2 - rss1).toBeLessThan(150 * MB);
    expect(rss2 - rssWarm).toBeLessThan(2 * 150 * MB);

    const health = await send(port, { name: 'health', method: 'GET', path: '/health', body: Buffer.alloc(0), mode: 'plain', expect: { kind: 'reject', status: 200, code: '' } }, agent);
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ ok: true, size: 128 });
  }, 150_000);
});
