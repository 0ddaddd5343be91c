/**
 * The queue under hostile input and faults, against a real redis-server: paths that leave the
 * worker's roots through a symlink or a relative climb, special files (a FIFO image batched with a
 * valid one, /dev/zero as the model), garbled and forged result records (each fails its own image
 * only), a job failing three times into the run's failures, jobs lost by a Redis restart without
 * persistence (the producer adds them again), and producer options checked before Redis or the disk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { listImages } from '../src/data/loaders.js';
import { isPartscanError } from '../src/errors.js';
import { fit } from '../src/model/fit.js';
import { JOB_FIT, JOB_SCORE, RECORDS_DIR, type ScoreJobRecord } from '../src/queue/jobs.js';
import { fileSha256 } from '../src/queue/model-cache.js';
import { fitOnQueue, scoreOnQueue } from '../src/queue/producer.js';
import { recordKey, signRecord } from '../src/queue/records.js';
import { connectRedis } from '../src/queue/redis.js';
import { startWorker, type PartscanWorker } from '../src/queue/worker.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { listAll } from './helpers/processes.js';

const KEY = 'c'.repeat(64);
let redis: TestRedis;
let tmp: string;
let root: string;
let outside: string;
let modelFile: string;
let sha: string;
let good: string[];

beforeAll(async () => {
  redis = await startRedis();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-queue-hard-'));
  root = path.join(tmp, 'root');
  outside = path.join(tmp, 'outside');
  await fs.mkdir(root);
  await fs.mkdir(outside);
  good = await listImages(path.join(BOTTLE, 'test', 'good'));
  const train = await listImages(path.join(BOTTLE, 'train', 'good'));
  const m = await fit(train.slice(0, 6), { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 8, imageSize: 64, calibration: train.slice(6, 9), contaminationCheck: false });
  modelFile = path.join(root, 'm.partscan');
  await m.save(modelFile);
  await m.dispose();
  sha = await fileSha256(modelFile);
}, 300_000);

afterAll(async () => {
  await redis?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** Adds jobs to `queue` and waits for each: its record, or its failure reason. */
async function runJobs(queue: string, jobs: { name: string; data: unknown }[]): Promise<({ ok: true; value: ScoreJobRecord } | { ok: false; error: string })[]> {
  const connection = connectRedis(redis.url);
  const q = new Queue(queue, { connection: connection as never });
  const events = new QueueEvents(queue, { connection: connectRedis(redis.url) as never });
  try {
    await events.waitUntilReady();
    const added = await q.addBulk(jobs.map((j) => ({ ...j, opts: { attempts: 1 } })));
    return await Promise.all(
      added.map((j) =>
        j.waitUntilFinished(events, 60_000).then(
          (value: ScoreJobRecord) => ({ ok: true as const, value }),
          (e: Error) => ({ ok: false as const, error: e.message }),
        ),
      ),
    );
  } finally {
    await events.close();
    await q.close();
    await connection.quit();
  }
}

describe('paths a job names are resolved through symlinks and checked against --allow-root', () => {
  let w: PartscanWorker;
  beforeAll(async () => {
    w = await startWorker({ redis: redis.url, queue: 'rooted', concurrency: 2, threads: 1, allowedRoots: [root] });
  });
  afterAll(async () => {
    await w?.close();
  });

  it('a run folder through a symlink inside the root that leads out is refused; nothing is written outside', async () => {
    await fs.symlink(outside, path.join(root, 'link'));
    const image = path.join(root, 'part.png');
    await fs.copyFile(good[0]!, image);
    const [r] = await runJobs('rooted', [
      { name: JOB_SCORE, data: { model: { path: modelFile, sha256: sha }, image: { path: image }, run: { dir: path.join(root, 'link', 'run'), stem: 'x', exports: {}, recordKey: KEY } } },
    ]);
    expect(r!.ok).toBe(false);
    expect((r as { error: string }).error).toMatch(new RegExp(`^QUEUE: Job \\S+ names .*link/run \\(it leads to ${outside}/run\\), outside the folders`));
    expect(listAll(outside)).toEqual([]);
    // The same job with the run folder inside the root is served (the producer makes the records folder).
    await fs.mkdir(path.join(root, 'run', RECORDS_DIR), { recursive: true });
    const [ok] = await runJobs('rooted', [
      { name: JOB_SCORE, data: { model: { path: modelFile, sha256: sha }, image: { path: image }, run: { dir: path.join(root, 'run'), stem: 'x', exports: {}, recordKey: KEY } } },
    ]);
    expect(ok!.ok, JSON.stringify(ok)).toBe(true);
  });

  it('a fit job with a relative backbone path climbing out of the root is refused before anything is read', async () => {
    const benign = path.join(outside, 'benign.onnx');
    execFileSync('mkfifo', [benign]); // were it opened, a FIFO would hang the job
    const relative = path.relative(process.cwd(), benign);
    expect(relative.startsWith('..')).toBe(true);
    for (const backbone of [relative, path.join(root, 'link', 'benign.onnx')]) {
      const [r] = await runJobs('rooted', [{ name: JOB_FIT, data: { data: path.join(root), out: path.join(root, 'never.partscan'), options: { backbone, layers: ['x'] } } }]);
      expect(r!.ok).toBe(false);
      expect((r as { error: string }).error).toMatch(/^QUEUE: Job \S+ names .*benign\.onnx.*outside the folders/);
    }
    expect(await fs.readdir(root)).not.toContain('never.partscan');
  });
});

describe('special files in jobs', () => {
  it('a FIFO image fails its own job at once; the valid job batched with it is scored; the worker then closes promptly', async () => {
    const w = await startWorker({ redis: redis.url, queue: 'fifo', concurrency: 4, threads: 1 });
    const fifo = path.join(tmp, 'image.png');
    execFileSync('mkfifo', [fifo]);
    const t0 = Date.now();
    const [a, b] = await runJobs('fifo', [
      { name: JOB_SCORE, data: { model: { path: modelFile, sha256: sha }, image: { path: fifo } } },
      { name: JOB_SCORE, data: { model: { path: modelFile, sha256: sha }, image: { path: good[1]! } } },
    ]);
    expect(a!.ok && a!.value.failure?.code).toBe('IMAGE_DECODE');
    expect((a as { value: ScoreJobRecord }).value.failure!.message).toMatch(/FIFO/);
    expect(b!.ok && b!.value.result?.file).toBe(good[1]);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const t1 = Date.now();
    await w.close(); // what SIGTERM does
    expect(Date.now() - t1).toBeLessThan(5_000);
  }, 60_000);

  it('/dev/zero as the model file is refused, not hashed for ever', async () => {
    const w = await startWorker({ redis: redis.url, queue: 'devzero', concurrency: 1, threads: 1 });
    try {
      const t0 = Date.now();
      const [r] = await runJobs('devzero', [{ name: JOB_SCORE, data: { model: { path: '/dev/zero', sha256: sha }, image: { path: good[0]! } } }]);
      expect(r!.ok).toBe(false);
      expect((r as { error: string }).error).toMatch(/^QUEUE: \/dev\/zero is a character device/);
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      await w.close();
    }
  });
});

/** The job ids of a queue's waiting jobs, once there are `n` of them. */
async function waitingIds(queue: string, n: number): Promise<string[]> {
  const connection = connectRedis(redis.url);
  const q = new Queue(queue, { connection: connection as never });
  try {
    let ids: string[] = [];
    for (let t = 0; t < 300 && ids.length < n; t++) {
      ids = (await q.getWaiting(0, n + 10)).map((j) => j.id!);
      if (ids.length < n) await new Promise((r) => setTimeout(r, 100));
    }
    return ids;
  } finally {
    await q.close();
    await connection.quit();
  }
}

describe('result records are untrusted', () => {
  it('garbled, forged, mis-signed, FIFO and deeply nested records fail their own image only; the rest of the run is written', async () => {
    const run = path.join(tmp, 'records-run');
    const inputs = good.slice(0, 8);
    const producer = scoreOnQueue(modelFile, inputs, run, { redis: redis.url, queue: 'records' });
    const ids = await waitingIds('records', inputs.length);
    const runId = ids[0]!.split('.')[0]!;
    const dir = path.join(run, RECORDS_DIR);
    const file = (i: number) => path.join(dir, `${runId}.${i}.json`);
    const result = { file: inputs[1]!, imageScore: 1, normalizedScore: 0.1, verdict: 'OK', regions: [], width: 512, height: 512 };
    await fs.writeFile(file(0), 'garbage{');
    await fs.writeFile(file(1), JSON.stringify({ jobId: `${runId}.1`, result, worker: 'x', mac: '0'.repeat(64) }));
    await fs.writeFile(file(2), signRecord({ jobId: `${runId}.2`, result: { ...result, file: inputs[2]! } as never, worker: 'x' }, recordKey(randomBytes(32), `${runId}.2`)));
    execFileSync('mkfifo', [file(3)]);
    await fs.writeFile(file(4), '['.repeat(300_000) + ']'.repeat(300_000));
    await new Promise((r) => setTimeout(r, 1000));
    const w = await startWorker({ redis: redis.url, queue: 'records', concurrency: 4, threads: 1 });
    try {
      const manifest = await producer;
      expect(manifest.failures.map((f) => f.file)).toEqual(inputs.slice(0, 5));
      for (const f of manifest.failures) expect(f.code).toBe('QUEUE');
      expect(manifest.failures[0]!.message).toMatch(/not readable JSON/);
      expect(manifest.failures[1]!.message).toMatch(/signature does not match/);
      expect(manifest.failures[2]!.message).toMatch(/signature does not match/);
      expect(manifest.failures[3]!.message).toMatch(/FIFO/);
      expect(manifest.results.map((r) => r.file)).toEqual(inputs.slice(5));
      expect(listAll(run)).toContain('results.json');
    } finally {
      await w.close();
    }
  }, 120_000);

  it('a job that fails three times (an output path taken by a folder) ends in failures with its code', async () => {
    const run = path.join(tmp, 'retry-run');
    const inputs = good.slice(10, 13);
    await fs.mkdir(path.join(run, `${path.basename(inputs[1]!, '.png')}.overlay.png`), { recursive: true });
    const w = await startWorker({ redis: redis.url, queue: 'retry', concurrency: 2, threads: 1 });
    try {
      const manifest = await scoreOnQueue(modelFile, inputs, run, { redis: redis.url, queue: 'retry' });
      expect(manifest.failures).toHaveLength(1);
      expect(manifest.failures[0]!.file).toBe(inputs[1]);
      expect(manifest.failures[0]!.code).toBe('OUTPUT');
      expect(manifest.results.map((r) => r.file)).toEqual([inputs[0], inputs[2]]);
      const connection = connectRedis(redis.url);
      const q = new Queue('retry', { connection: connection as never });
      const failed = await q.getFailed();
      await q.close();
      await connection.quit();
      expect(failed.map((j) => j.attemptsMade)).toEqual([3]);
    } finally {
      await w.close();
    }
  }, 120_000);
});

describe('Redis restarted without persistence', () => {
  it('the producer adds the lost jobs again and the run completes', async () => {
    const volatile = await startRedis({ persist: false });
    try {
      const run = path.join(tmp, 'lost-run');
      const inputs = good.slice(14, 18);
      const producer = scoreOnQueue(modelFile, inputs, run, { redis: volatile.url, queue: 'lost' });
      const connection = connectRedis(volatile.url);
      const q = new Queue('lost', { connection: connection as never });
      q.on('error', () => undefined);
      for (let t = 0; t < 300 && (await q.getWaitingCount()) < inputs.length; t++) await new Promise((r) => setTimeout(r, 100));
      expect(await q.getWaitingCount()).toBe(inputs.length);
      await volatile.restart(200);
      for (let t = 0; t < 100 && connection.status !== 'ready'; t++) await new Promise((r) => setTimeout(r, 100));
      expect(await q.getWaitingCount()).toBe(0); // the jobs are gone
      await q.close();
      await connection.quit();
      const w = await startWorker({ redis: volatile.url, queue: 'lost', concurrency: 2, threads: 1 });
      try {
        const manifest = await producer;
        expect(manifest.results.map((r) => r.file)).toEqual(inputs);
        expect(manifest.failures).toEqual([]);
      } finally {
        await w.close();
      }
    } finally {
      await volatile.stop();
    }
  }, 180_000);
});

describe('producer options are checked before Redis is contacted or a folder created', () => {
  const nowhere = 'redis://127.0.0.1:1';
  it.each([
    ['scoreOnQueue minArea -1', () => scoreOnQueue(modelFile, [good[0]!], path.join(tmp, 'opt-a'), { redis: nowhere, minArea: -1 }), /minArea/],
    ['scoreOnQueue a queue name with a space', () => scoreOnQueue(modelFile, [good[0]!], path.join(tmp, 'opt-b'), { redis: nowhere, queue: 'a b' }), /queue/],
    ['scoreOnQueue a malformed Redis URL', () => scoreOnQueue(modelFile, [good[0]!], path.join(tmp, 'opt-c'), { redis: 'http://x' }), /not a Redis URL/],
    ['scoreOnQueue no inputs array', () => scoreOnQueue(modelFile, 'x' as never, path.join(tmp, 'opt-d'), { redis: nowhere }), /inputs/],
    ['fitOnQueue channels 0', () => fitOnQueue(good, path.join(tmp, 'opt-e', 'm.partscan'), { redis: nowhere, options: { channels: 0 } }), /options\.channels/],
    ['fitOnQueue attempts 0', () => fitOnQueue(good, path.join(tmp, 'opt-f', 'm.partscan'), { redis: nowhere, attempts: 0 }), /attempts/],
  ])('%s', async (_name, call, message) => {
    const t0 = Date.now();
    const e = await (call as () => Promise<unknown>)().catch((x: unknown) => x);
    expect(isPartscanError(e, 'OPTIONS') || isPartscanError(e, 'QUEUE'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(message as RegExp);
    expect(Date.now() - t0, 'Redis was contacted first').toBeLessThan(2_000);
    expect((await fs.readdir(tmp)).filter((n) => n.startsWith('opt-'))).toEqual([]);
  });
});
