/**
 * Queue jobs in one process against a real redis-server: hostile payloads (property test), inline
 * image bytes, model sha256 checks, the model LRU, and the CLI's `score --queue` / `fit --queue`.
 */

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { Queue, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listImages } from '../src/data/loaders.js';
import { runCli } from '../src/cli/cli.js';
import { isPartscanError } from '../src/errors.js';
import { readRunManifest } from '../src/export/results.js';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { JOB_SCORE, parseJob, scoreJobSchema, type ScoreJobData, type ScoreJobRecord } from '../src/queue/jobs.js';
import { ModelCache, fileSha256 } from '../src/queue/model-cache.js';
import { connectRedis } from '../src/queue/redis.js';
import { startWorker, type PartscanWorker } from '../src/queue/worker.js';
import { scoreOnQueue } from '../src/queue/producer.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';
import { startRedis, type TestRedis } from './helpers/redis.js';

let redis: TestRedis;
let tmp: string;
let modelFile: string;
let modelFile2: string;
let sha: string;
let good: string[];
let worker: PartscanWorker;

const capture = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t) }, out, err };
};

beforeAll(async () => {
  redis = await startRedis();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-queue-jobs-'));
  good = await listImages(path.join(BOTTLE, 'train', 'good'));
  const backbone = { backbone: 'resnet50', weights: REF_WEIGHTS };
  const m = await fit(good.slice(0, 8), { backbone, channels: 16, imageSize: 96, seed: 1, calibration: good.slice(8, 11) });
  modelFile = path.join(tmp, 'a.partscan');
  await m.save(modelFile);
  await m.dispose();
  const m2 = await fit(good.slice(0, 8), { backbone, channels: 8, imageSize: 64, seed: 2, calibrationSplit: 0 });
  modelFile2 = path.join(tmp, 'b.partscan');
  await m2.save(modelFile2);
  await m2.dispose();
  sha = await fileSha256(modelFile);
  worker = await startWorker({ redis: redis.url, queue: 'jobs', concurrency: 4, threads: 1, lockDuration: 5000 });
}, 600_000);

afterAll(async () => {
  await worker?.close();
  await redis?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('job payloads are hostile input', () => {
  const valid: ScoreJobData = {
    model: { path: '/models/a.partscan', sha256: 'a'.repeat(64) },
    image: { path: '/images/x.png' },
    run: { dir: '/runs/1', stem: 'x', exports: { overlay: true }, recordKey: 'c'.repeat(64) },
  };

  it('a valid payload parses; path tricks and unknown fields give a typed QUEUE error naming the field', () => {
    expect(parseJob(scoreJobSchema, valid, 'j').image).toEqual({ path: '/images/x.png' });
    const bad: [unknown, string][] = [
      [{ ...valid, run: { ...valid.run, stem: '../../etc/passwd' } }, 'run.stem'],
      [{ ...valid, run: { ...valid.run, stem: '..' } }, 'run.stem'],
      [{ ...valid, image: { path: 'relative.png' } }, 'image'],
      [{ ...valid, model: { ...valid.model, sha256: 'xyz' } }, 'model.sha256'],
      [{ ...valid, extra: 1 }, '(payload)'],
      [{ ...valid, options: { minArea: -1 } }, 'options.minArea'],
      [{ ...valid, run: { ...valid.run, recordKey: undefined } }, 'run.recordKey'],
      [null, '(payload)'],
    ];
    for (const [data, field] of bad) {
      let err: unknown;
      try {
        parseJob(scoreJobSchema, data, 'j');
      } catch (e) {
        err = e;
      }
      expect(isPartscanError(err, 'QUEUE'), String(err)).toBe(true);
      expect((err as Error).message).toContain(field);
    }
  });

  it('property: any JSON, or a valid payload with one field replaced by any JSON, parses or gives a typed QUEUE error', () => {
    const keys = ['model', 'image', 'file', 'options', 'run'] as const;
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fc.record({ key: fc.constantFrom(...keys), value: fc.jsonValue() })), (v) => {
        const data = v !== null && typeof v === 'object' && 'key' in v && 'value' in v && Object.keys(v).length === 2 ? { ...valid, [v.key as string]: v.value } : v;
        try {
          const parsed = parseJob(scoreJobSchema, data, 'j');
          // Whatever passes has absolute paths and a plain stem.
          if ('path' in parsed.image) expect(path.isAbsolute(parsed.image.path)).toBe(true);
          if (parsed.run) expect(parsed.run.stem).toMatch(/^[\w.-]+$/);
        } catch (e) {
          expect(isPartscanError(e, 'QUEUE'), String(e)).toBe(true);
        }
      }),
      { numRuns: 500, seed: 17 },
    );
  });
});

describe('worker (in process, real Redis)', () => {
  async function runJob(name: string, data: unknown, attempts = 3) {
    const connection = connectRedis(redis.url);
    const queue = new Queue('jobs', { connection: connection as never });
    const events = new QueueEvents('jobs', { connection: connectRedis(redis.url) as never });
    try {
      await events.waitUntilReady();
      const job = await queue.add(name, data, { attempts, backoff: { type: 'fixed', delay: 100 } });
      try {
        return { ok: true as const, value: (await job.waitUntilFinished(events, 120_000)) as ScoreJobRecord, job };
      } catch (e) {
        const j = (await queue.getJob(job.id!))!;
        return { ok: false as const, error: String((e as Error).message), attemptsMade: j.attemptsMade };
      }
    } finally {
      await events.close();
      await queue.close();
      await connection.quit();
    }
  }

  it('scores inline bytes like the file, loads the model once, and records a corrupt image as a failure without retrying it', async () => {
    const ref = await Model.load(modelFile);
    const expected = await ref.score(good[20]!);
    await ref.dispose();
    const bytes = (await fs.readFile(good[20]!)).toString('base64');
    const r = await runJob(JOB_SCORE, { model: { path: modelFile, sha256: sha }, image: { bytes } });
    expect(r.ok).toBe(true);
    const rec = (r as { value: ScoreJobRecord }).value;
    expect(rec.result!.file).toBe('<buffer>');
    expect(rec.result!.imageScore).toBeCloseTo(expected.imageScore, 3);
    expect(rec.result!.verdict).toBe(expected.verdict);
    const junk = Buffer.from('definitely not a PNG').toString('base64');
    const f = await runJob(JOB_SCORE, { model: { path: modelFile, sha256: sha }, image: { bytes: junk } });
    expect(f.ok).toBe(true);
    expect((f as { value: ScoreJobRecord }).value.failure?.code).toBe('IMAGE_DECODE');
    expect(worker.loadedModels()).toEqual([sha]);
  });

  it('jobs that wait together are scored in batches (BatchingScorer), each with its own result', async () => {
    const connection = connectRedis(redis.url);
    const queue = new Queue('jobs', { connection: connection as never });
    const events = new QueueEvents('jobs', { connection: connectRedis(redis.url) as never });
    // Each waitUntilFinished listens on the queue: 12 at once is intended.
    queue.setMaxListeners(32);
    try {
      await events.waitUntilReady();
      const files = good.slice(60, 72);
      const before = worker.batches();
      const jobs = await queue.addBulk(files.map((f) => ({ name: JOB_SCORE, data: { model: { path: modelFile, sha256: sha }, image: { path: f } } })));
      const recs = (await Promise.all(jobs.map((j) => j.waitUntilFinished(events, 120_000)))) as ScoreJobRecord[];
      expect(recs.map((r) => r.result!.file)).toEqual(files);
      // 12 jobs, at most 4 in progress at once (concurrency 4): fewer batches than jobs.
      const batches = worker.batches() - before;
      expect(batches).toBeGreaterThanOrEqual(3);
      expect(batches).toBeLessThan(files.length);
    } finally {
      await events.close();
      await queue.close();
      await connection.quit();
    }
  });

  it('an error that may pass (an unwritable run directory) is retried a bounded number of times, then fails with its code', async () => {
    const notADir = path.join(tmp, 'a-file');
    await fs.writeFile(notADir, 'x');
    const r = await runJob(JOB_SCORE, { model: { path: modelFile, sha256: sha }, image: { path: good[22]! }, run: { dir: notADir, stem: 'x', recordKey: 'c'.repeat(64) } }, 3);
    expect(r.ok).toBe(false);
    expect((r as { error: string }).error).toMatch(/^OUTPUT: .*a-file/);
    expect((r as { attemptsMade: number }).attemptsMade).toBe(3);
  });

  it('a malformed job or a model file with another sha256 fails at once with a typed reason (no retries)', async () => {
    const bad = await runJob(JOB_SCORE, { model: { path: modelFile, sha256: sha }, image: { path: 'relative.png' } });
    expect(bad.ok).toBe(false);
    expect((bad as { error: string }).error).toMatch(/^QUEUE: Job \S+ is malformed: image/);
    expect((bad as { attemptsMade: number }).attemptsMade).toBe(1);
    const wrong = await runJob(JOB_SCORE, { model: { path: modelFile, sha256: 'b'.repeat(64) }, image: { path: good[20]! } });
    expect((wrong as { error: string }).error).toMatch(/^QUEUE: Model file .* has sha256/);
    expect((wrong as { attemptsMade: number }).attemptsMade).toBe(1);
  });
});

describe('limits', () => {
  it('a worker with --allow-root refuses a job that names a path outside its folders', async () => {
    const w = await startWorker({ redis: redis.url, queue: 'rooted', concurrency: 1, threads: 1, allowedRoots: [tmp] });
    const connection = connectRedis(redis.url);
    const queue = new Queue('rooted', { connection: connection as never });
    const events = new QueueEvents('rooted', { connection: connectRedis(redis.url) as never });
    try {
      await events.waitUntilReady();
      const inside = await queue.add(JOB_SCORE, { model: { path: modelFile, sha256: sha }, image: { path: good[21]! } });
      // The image lies in the shared data set, outside tmp.
      await expect(inside.waitUntilFinished(events, 60_000)).rejects.toThrow(/^QUEUE: Job \S+ names .*outside the folders/);
      const copy = path.join(tmp, 'inside.png');
      await fs.copyFile(good[21]!, copy);
      const ok = await queue.add(JOB_SCORE, { model: { path: modelFile, sha256: sha }, image: { path: copy } });
      expect(((await ok.waitUntilFinished(events, 60_000)) as ScoreJobRecord).result?.file).toBe(copy);
    } finally {
      await events.close();
      await queue.close();
      await connection.quit();
      await w.close();
    }
  });

  it('a producer with no worker gives up after idleTimeoutMs with a typed error, leaving no records and no jobs', async () => {
    const out = path.join(tmp, 'nobody');
    const err = await scoreOnQueue(modelFile, good.slice(50, 53), out, { redis: redis.url, queue: 'nobody', idleTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(isPartscanError(err, 'QUEUE'), String(err)).toBe(true);
    expect(await fs.readdir(out)).toEqual([]);
    const connection = connectRedis(redis.url);
    const queue = new Queue('nobody', { connection: connection as never });
    try {
      expect(await queue.getWaitingCount()).toBe(0);
    } finally {
      await queue.close();
      await connection.quit();
    }
  });
});

describe('worker shutdown', () => {
  it('close() with Redis gone does not wait for it: the worker lets go of its jobs and stops', async () => {
    const r2 = await startRedis();
    try {
      const w = await startWorker({ redis: r2.url, queue: 'gone', threads: 1 });
      await r2.crash();
      const t0 = Date.now();
      await w.close();
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      await r2.stop();
    }
  });
});

describe('model LRU', () => {
  it('keeps models within the budget, least recently used out first, never one in use', async () => {
    const cache = new ModelCache({ maxBytes: 1, threads: 1 });
    const sha2 = await fileSha256(modelFile2);
    try {
      const a = await cache.acquire(modelFile, sha);
      const b = await cache.acquire(modelFile2, sha2);
      // Over budget, but both are in use.
      expect(cache.loaded).toEqual([sha, sha2]);
      a.release();
      await new Promise((r) => setTimeout(r, 50));
      expect(cache.loaded).toEqual([sha2]);
      const again = await cache.acquire(modelFile2, sha2);
      expect(again.model).toBe(b.model);
      b.release();
      again.release();
      await expect(cache.acquire(modelFile, 'c'.repeat(64))).rejects.toSatisfy((e: unknown) => isPartscanError(e, 'QUEUE'));
    } finally {
      await cache.dispose();
    }
  });
});

describe('CLI with --queue', () => {
  it('score --queue writes the same run directory as a local score (exports included)', async () => {
    const files = good.slice(30, 36);
    const local = path.join(tmp, 'cli-local');
    const queued = path.join(tmp, 'cli-queued');
    const c1 = capture();
    expect(await runCli(['node', 'partscan', 'score', modelFile, ...files, '--out', local, '--json'], c1.io)).toBe(0);
    const c2 = capture();
    const code = await runCli(['node', 'partscan', 'score', modelFile, ...files, '--out', queued, '--queue', redis.url, '--queue-name', 'jobs', '--json'], c2.io);
    expect(code, c2.err.join('')).toBe(0);
    expect((await fs.readdir(queued)).sort()).toEqual((await fs.readdir(local)).sort());
    const [a, b] = [await readRunManifest(local), await readRunManifest(queued)];
    expect(b.results.map((r) => r.file)).toEqual(a.results.map((r) => r.file));
    b.results.forEach((r, i) => {
      expect(Math.abs(r.imageScore - a.results[i]!.imageScore) / a.results[i]!.imageScore).toBeLessThan(1e-6);
      expect(r.outputs).toEqual(a.results[i]!.outputs);
    });
    expect(JSON.parse(c2.out.join('')).counts).toEqual(JSON.parse(c1.out.join('')).counts);
  });

  it('fit --queue writes the model on a worker, atomically, and reports its sha256', async () => {
    const out = path.join(tmp, 'queued-fit.partscan');
    const c = capture();
    const args = ['node', 'partscan', 'fit', ...good.slice(40, 46), '--out', out, '--queue', redis.url, '--queue-name', 'jobs'];
    const code = await runCli([...args, '--backbone', 'resnet50', '--weights', REF_WEIGHTS, '--channels', '8', '--image-size', '64', '--calibration-split', '0', '--json'], c.io);
    expect(code, c.err.join('')).toBe(0);
    const summary = JSON.parse(c.out.join(''));
    expect(summary.sha256).toBe(await fileSha256(out));
    expect(summary.images).toBe(6);
    expect((await fs.readdir(tmp)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const m = await Model.load(out);
    expect(m.header.embedding.channels).toBe(8);
    await m.dispose();
  });
});
