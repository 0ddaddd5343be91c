/**
 * Queue workers against a real redis-server: 200 score jobs over 2–3 `partscan worker` processes, with
 * a worker SIGKILLed mid-run, another stopped with SIGTERM, a Redis crash and restart, and a corrupt
 * image among the jobs. The run directory must hold every result exactly once, equal to local scoring.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listImages } from '../src/data/loaders.js';
import { scoreToRunDir, type ScoredRunManifest } from '../src/export/score-run.js';
import { fit } from '../src/model/fit.js';
import { scoreOnQueue } from '../src/queue/producer.js';
import { BOTTLE, REF_WEIGHTS, REPO } from './helpers/shared.js';
import { startRedis, type TestRedis } from './helpers/redis.js';

const NO_EXPORTS = { overlay: false, heatmap: false, mask: false, original: false };
const N = 200;

let redis: TestRedis;
let tmp: string;
let modelFile: string;
let images: string[];
let local: ScoredRunManifest;
const CORRUPT_AT = 101;

interface WorkerProc {
  proc: ChildProcess;
  log: string[];
  exited: Promise<number | null>;
}

function spawnWorker(queue: string): WorkerProc {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'worker', '--redis', redis.url, '--queue', queue, '--concurrency', '8', '--threads', '1', '--lock-ms', '2000', '--verbose'],
    { cwd: REPO, env: { ...process.env, PARTSCAN_NO_PROGRESS: '1', PARTSCAN_HUGE_PAGES: '0' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log: string[] = [];
  proc.stderr!.on('data', (b: Buffer) => log.push(...b.toString().split('\n').filter(Boolean)));
  proc.stdout!.on('data', () => undefined);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, log, exited };
}

/** Job ids a worker logged with `prefix` ('start' or 'done'). */
function logged(w: WorkerProc, prefix: string): Set<string> {
  const ids = new Set<string>();
  for (const line of w.log) {
    const m = new RegExp(`^${prefix} score (\\S+)`).exec(line);
    if (m) ids.add(m[1]!);
  }
  return ids;
}

/** How often each job id was reported done, all workers together (more than once: finished again after a fault). */
function executions(workers: WorkerProc[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const w of workers) for (const line of w.log) {
    const m = /^done score (\S+)/.exec(line);
    if (m) n.set(m[1]!, (n.get(m[1]!) ?? 0) + 1);
  }
  return n;
}

/** Duplicates and losses in a run's results against the inputs (both must be 0). */
function tally(m: ScoredRunManifest): string {
  const seen = m.results.map((r) => r.file).concat(m.failures.map((f) => f.file));
  const duplicates = seen.length - new Set(seen).size;
  const lost = images.filter((f) => !seen.includes(f)).length;
  return `${N} jobs, ${m.results.length} results, ${m.failures.length} failure (${m.failures.map((f) => f.code).join(',')}), duplicates ${duplicates}, lost ${lost}`;
}

function expectSameAsLocal(m: ScoredRunManifest): void {
  // Every good image exactly once, in input order; the corrupt one only in failures.
  expect(m.results.map((r) => r.file)).toEqual(local.results.map((r) => r.file));
  expect(new Set(m.results.map((r) => r.file)).size).toBe(N - 1);
  expect(m.failures).toHaveLength(1);
  expect(m.failures[0]!.file).toBe(images[CORRUPT_AT]);
  expect(m.failures[0]!.code).toBe('IMAGE_DECODE');
  m.results.forEach((r, i) => {
    const l = local.results[i]!;
    // Batches form differently on each worker; float32 inference agrees to rounding.
    expect(Math.abs(r.imageScore - l.imageScore) / l.imageScore).toBeLessThan(1e-6);
    expect(Math.abs(r.normalizedScore - l.normalizedScore)).toBeLessThan(1e-6);
    expect(r.verdict).toBe(l.verdict);
    expect(r.regions.length).toBe(l.regions.length);
  });
  // The run's line monitor saw the same stream in input order, whichever worker did which image.
  expect(m.monitor).toBeDefined();
  expect(m.monitor!.images).toBe(local.monitor!.images);
  expect(m.monitor!.alarm).toBe(local.monitor!.alarm);
  expect(m.monitor!.firstAlarmAt).toBe(local.monitor!.firstAlarmAt);
  expect(m.monitor!.features).toEqual(local.monitor!.features);
  expect(m.monitor!.points.map((p) => p.index)).toEqual(local.monitor!.points.map((p) => p.index));
  m.monitor!.points.forEach((p, i) => {
    const q = local.monitor!.points[i]!;
    expect(Math.abs(p.score - q.score) / q.score).toBeLessThan(1e-6);
    expect(p.driftEwma).toHaveLength(q.driftEwma.length);
    p.driftEwma.forEach((v, j) => expect(Math.abs(v - q.driftEwma[j]!)).toBeLessThan(1e-4));
  });
}

async function runFiles(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}

beforeAll(async () => {
  redis = await startRedis();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-queue-'));
  const good = await listImages(path.join(BOTTLE, 'train', 'good'));
  const model = await fit(good.slice(0, 10), {
    backbone: { backbone: 'resnet50', weights: REF_WEIGHTS },
    channels: 24,
    imageSize: 128,
    seed: 3,
    calibration: good.slice(10, 14),
  });
  modelFile = path.join(tmp, 'small.partscan');
  await model.save(modelFile);
  const pool = [...good.slice(14), ...(await listImages(path.join(BOTTLE, 'test', 'good')))];
  images = pool.slice(0, N - 1);
  const bytes = await fs.readFile(images[0]!);
  const corrupt = path.join(tmp, 'corrupt.png');
  await fs.writeFile(corrupt, bytes.subarray(0, bytes.length >> 2));
  images.splice(CORRUPT_AT, 0, corrupt);
  local = await scoreToRunDir(model, images, path.join(tmp, 'local'), { exports: NO_EXPORTS });
  await model.dispose();
  expect(local.results).toHaveLength(N - 1);
}, 600_000);

afterAll(async () => {
  await redis?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('queue workers (real Redis, worker processes)', () => {
  it('one of 3 workers SIGKILLed and one SIGTERMed mid-run: all 200 jobs accounted for exactly once, equal to local scoring', async () => {
    const workers = [0, 1, 2].map(() => spawnWorker('kill'));
    const out = path.join(tmp, 'run-kill');
    let killed: WorkerProc | undefined;
    let termed = false;
    let termCode: Promise<number | null> | undefined;
    try {
      const m = await scoreOnQueue(modelFile, images, out, {
        redis: redis.url,
        queue: 'kill',
        exports: NO_EXPORTS,
        idleTimeoutMs: 120_000,
        onProgress: (e) => {
          if (!killed && e.done >= 50) {
            // The busiest worker: it certainly holds jobs in progress.
            killed = [...workers].sort((a, b) => logged(b, 'done').size - logged(a, 'done').size)[0]!;
            killed.proc.kill('SIGKILL');
          }
          if (killed && !termed && e.done >= 110) {
            termed = true;
            const other = workers.find((w) => w !== killed && w.proc.exitCode === null)!;
            other.proc.kill('SIGTERM');
            termCode = other.exited;
          }
        },
      });
      expect(killed !== undefined && termed).toBe(true);
      expectSameAsLocal(m);
      // Jobs the killed worker had started but not finished were redone by the others (stalled-job recovery).
      const done = logged(killed!, 'done');
      const inFlight = [...logged(killed!, 'start')].filter((id) => !done.has(id));
      expect(inFlight.length).toBeGreaterThan(0);
      const doneElsewhere = new Set(workers.filter((w) => w !== killed).flatMap((w) => [...logged(w, 'done')]));
      for (const id of inFlight) expect(doneElsewhere.has(id), id).toBe(true);
      // The worker stopped with SIGTERM finished its jobs and exited cleanly.
      expect(await termCode).toBe(0);
      // Exactly the files of a local run: no records folder, no temp files left.
      expect(await runFiles(out)).toEqual(await runFiles(path.join(tmp, 'local')));
      const runs = executions(workers);
      console.log(`kill run: ${tally(m)}; ${inFlight.length} jobs in flight on the SIGKILLed worker, redone by the others; ${[...runs.values()].filter((k) => k > 1).length} jobs finished twice, jobs per worker ${workers.map((w) => w.log.filter((l) => l.startsWith('done score')).length).join('/')}`);
    } finally {
      for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    }
  }, 300_000);

  it('Redis crashes and restarts mid-run (append-only file on): the run completes with every result', async () => {
    const workers = [0, 1].map(() => spawnWorker('restart'));
    const out = path.join(tmp, 'run-restart');
    let restarted: Promise<void> | undefined;
    try {
      const m = await scoreOnQueue(modelFile, images, out, {
        redis: redis.url,
        queue: 'restart',
        exports: NO_EXPORTS,
        idleTimeoutMs: 120_000,
        onProgress: (e) => {
          if (!restarted && e.done >= 60) restarted = redis.restart(1000);
        },
      });
      expect(restarted).toBeDefined();
      await restarted;
      expectSameAsLocal(m);
      console.log(`restart run: ${tally(m)}`);
      expect(await runFiles(out)).toEqual(await runFiles(path.join(tmp, 'local')));
    } finally {
      for (const w of workers) {
        w.proc.kill('SIGTERM');
        await w.exited;
      }
    }
  }, 300_000);
});
