/**
 * Soak run of the example inspection service: fits a small model on a few bottle images, starts the
 * service on 127.0.0.1 (free port), and fires rounds of concurrent requests (half valid images, half
 * bad requests: empty, garbage, truncated, text, BMP, PNG bomb, oversized, wrong method/route,
 * malformed target). Prints one JSON object: counts, process RSS before/after each round, latency.
 *
 *   npx tsx bench/service-soak.ts [--rounds 3] [--requests 200] [--data ../shared/datasets/mvtec_bottle]
 */
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { fit } from '../src/model/fit.js';
import { listImages } from '../src/data/loaders.js';
import { createInspectionServer } from '../examples/inspection-service.js';
import { buildCatalogue, check, percentile, runRound, send, type SoakAnswer } from './service-soak-driver.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '200' },
    data: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'datasets', 'mvtec_bottle') },
    weights: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'reference', 'resnet50-random-seed0.safetensors') },
  },
});

const MAX_BODY = 1024 * 1024;
const mb = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;

async function main(): Promise<void> {
  const train = (await listImages(path.join(values.data!, 'train', 'good'))).slice(0, 12);
  const model = await fit(train, { backbone: { backbone: 'resnet50', weights: values.weights! }, imageSize: 128, channels: 30, calibrationSplit: 0.25 });
  const server = createInspectionServer(model, { maxBodyBytes: MAX_BODY });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let crashes = 0;
  process.on('uncaughtException', () => crashes++);
  try {
    const cases = await buildCatalogue(model, values.data!, MAX_BODY);
    await runRound(port, cases, 40, agent); // warm-up: backbone sessions, sharp, sockets
    const rounds: { round: number; rssBeforeMB: number; rssAfterMB: number; seconds: number }[] = [];
    const all: SoakAnswer[] = [];
    for (let r = 0; r < Number(values.rounds); r++) {
      const before = process.memoryUsage().rss;
      const t0 = performance.now();
      const answers = await runRound(port, cases, Number(values.requests), agent, r);
      const seconds = (performance.now() - t0) / 1000;
      rounds.push({ round: r + 1, rssBeforeMB: mb(before), rssAfterMB: mb(process.memoryUsage().rss), seconds: Math.round(seconds * 10) / 10 });
      all.push(...answers);
    }
    const health = await send(port, { name: 'health', method: 'GET', path: '/health', body: Buffer.alloc(0), mode: 'plain', expect: { kind: 'reject', status: 200, code: '' } }, agent);
    const mismatches = all.map((a) => check(a)).filter((m): m is string => m !== undefined);
    const ok = all.filter((a) => a.status === 200).length;
    const scored = all.filter((a) => a.case.expect.kind === 'score').map((a) => a.ms);
    console.log(
      JSON.stringify({
        requests: all.length,
        ok,
        rejected4xx: all.filter((a) => a.status !== undefined && a.status >= 400 && a.status < 500).length,
        errors5xx: all.filter((a) => a.status !== undefined && a.status >= 500).length,
        transportErrors: all.filter((a) => a.error !== undefined && a.status === undefined).length,
        mismatches: mismatches.length,
        firstMismatches: mismatches.slice(0, 5),
        crashes,
        healthAfter: health.status,
        rounds,
        latencyMs: {
          scoredP50: Math.round(percentile(scored, 0.5)),
          scoredP95: Math.round(percentile(scored, 0.95)),
          allP50: Math.round(percentile(all.map((a) => a.ms), 0.5)),
          allP95: Math.round(percentile(all.map((a) => a.ms), 0.95)),
        },
      }),
    );
  } finally {
    agent.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await model.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
