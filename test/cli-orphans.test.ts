/**
 * SIGKILL to the CLI launcher, as a supervisor escalates: the pid of `bin/partscan.js` only, never the
 * process group. SIGKILL cannot be caught or forwarded, so the relaunched child (huge pages, forced with
 * PARTSCAN_HUGE_PAGES=1) must notice by itself that its parent is gone: within 3 s no process of the
 * command remains, and it left no output — for fit (mid-computation and mid-write), score and a queue
 * worker (which must take no further job). Also: the launcher's exit status is
 * its child's, for a failing child too. Needs the compiled CLI (dist/).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs, watch } from 'node:fs';
import path from 'node:path';
import { scoreOnQueue } from '../src/queue/producer.js';
import { REF_WEIGHTS, REPO } from './helpers/shared.js';
import { useCliFixture } from './helpers/cli-fixture.js';
import { alive, childrenOf, listAll, within } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';

const BIN = path.join(REPO, 'bin', 'partscan.js');
const ENV = { ...process.env, PARTSCAN_HUGE_PAGES: '1', PARTSCAN_NO_PROGRESS: '1', GLIBC_TUNABLES: '' };
const fx = useCliFixture('partscan-orphans-');

interface Launched {
  proc: ChildProcess;
  stderr: () => string;
  /** Every pid seen as a child of the launcher. */
  children: Set<number>;
  exited: Promise<void>;
}

function launch(args: string[]): Launched {
  const proc = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'], env: ENV });
  let err = '';
  proc.stderr!.on('data', (b) => (err += b));
  const children = new Set<number>();
  const poll = setInterval(() => {
    for (const c of childrenOf(proc.pid!)) children.add(c);
  }, 20);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => (clearInterval(poll), resolve())));
  return { proc, stderr: () => err, children, exited };
}

/** Resolves when a name passing `test` appears in `dir`, or after `ms` (then 'timer'). */
function appears(dir: string, test: (name: string) => boolean, ms: number): Promise<'file' | 'timer'> {
  return new Promise((resolve) => {
    const w = watch(dir, (_e, name) => {
      if (name && test(String(name))) done('file');
    });
    const t = setTimeout(() => done('timer'), ms);
    const done = (why: 'file' | 'timer') => {
      w.close();
      clearTimeout(t);
      resolve(why);
    };
  });
}

/** SIGKILLs the launcher (its pid only) and checks that its child ends within 3 s. */
async function killParent(l: Launched): Promise<number[]> {
  for (const c of childrenOf(l.proc.pid!)) l.children.add(c);
  const children = [...l.children];
  expect(children.length, `the launcher did not relaunch itself: ${l.stderr()}`).toBeGreaterThan(0);
  expect(l.proc.exitCode, `the command ended before the kill: ${l.stderr()}`).toBeNull();
  l.proc.kill('SIGKILL');
  await l.exited;
  const gone = await within(3000, () => children.every((c) => !alive(c)));
  expect(gone, `child ${children.filter(alive).join(', ')} outlived its SIGKILLed parent by 3 s`).toBe(true);
  return children;
}

describe('SIGKILL to the launcher (parent pid only) leaves no process and no output within 3 s', () => {
  it('fit, mid-computation', async () => {
    const dir = path.join(fx.tmp, 'fit-compute');
    await fs.mkdir(dir);
    const l = launch(['fit', fx.bigTrain, '--out', path.join(dir, 'model.partscan'), '--weights', REF_WEIGHTS, '--image-size', '224', '--channels', '100']);
    await within(20_000, () => childrenOf(l.proc.pid!).length > 0);
    await new Promise((r) => setTimeout(r, 3000));
    await killParent(l);
    expect(listAll(dir)).toEqual([]);
    // The orphan of the old launcher wrote its model seconds later: nothing may appear afterwards.
    await new Promise((r) => setTimeout(r, 2000));
    expect(listAll(dir)).toEqual([]);
  }, 120_000);

  it('fit, while the model file is being written', async () => {
    const dir = path.join(fx.tmp, 'fit-write');
    await fs.mkdir(dir);
    const l = launch(['fit', fx.train, '--out', path.join(dir, 'model.partscan'), '--weights', REF_WEIGHTS, '--image-size', '64', '--channels', '16']);
    expect(await appears(dir, (n) => n.endsWith('.tmp'), 90_000)).toBe('file');
    await killParent(l);
    expect(listAll(dir)).toEqual([]);
  }, 120_000);

  it('score, as the run folder fills', async () => {
    const parent = path.join(fx.tmp, 'score');
    await fs.mkdir(parent);
    const out = path.join(parent, 'run');
    const l = launch(['score', fx.modelFile, ...fx.images, '--out', out, '--batch-size', '1']);
    expect(await appears(parent, (n) => n === 'run', 90_000)).toBe('file');
    await within(60_000, () => listAll(out).some((n) => n.endsWith('.png')));
    await killParent(l);
    expect(listAll(parent)).toEqual([]);
    await new Promise((r) => setTimeout(r, 2000));
    expect(listAll(parent)).toEqual([]);
  }, 120_000);

  describe('a queue worker', () => {
    let redis: TestRedis;
    beforeAll(async () => {
      redis = await startRedis();
    });
    afterAll(async () => {
      await redis?.stop();
    });

    it('ends and takes no further job', async () => {
      const run = path.join(fx.tmp, 'queue-run');
      const queue = 'orphans';
      const l = launch(['worker', '--redis', redis.url, '--queue', queue, '--concurrency', '1', '--threads', '1', '--verbose']);
      await within(60_000, () => l.stderr().includes('on queue'));
      const inputs = Array.from({ length: 40 }, (_, i) => fx.images[i % fx.images.length]!);
      const producer = scoreOnQueue(fx.modelFile, inputs, run, { redis: redis.url, queue, idleTimeoutMs: 6000 }).then(
        () => 'finished',
        (e: Error) => e.message,
      );
      await within(60_000, () => /^done score /m.test(l.stderr()));
      await killParent(l);
      const atKill = listAll(run);
      expect(atKill.filter((n) => n.endsWith('.tmp'))).toEqual([]);
      // The jobs left over stay undone: the producer gives up on them (no worker), no file changes meanwhile.
      expect(await producer).toMatch(/No queue job finished/);
      const left = listAll(run).filter((n) => !n.startsWith('.partscan-queue'));
      expect(left).toEqual(atKill.filter((n) => !n.startsWith('.partscan-queue')));
    }, 180_000);
  });
});

describe('the launcher ends as its child ended', () => {
  function exitOf(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; children: number }> {
    const l = launch(args);
    return l.exited.then(() => ({ code: l.proc.exitCode, signal: l.proc.signalCode, stderr: l.stderr(), children: l.children.size }));
  }

  it('a typed error in the child: exit 2 from the launcher', async () => {
    const r = await exitOf(['info', path.join(fx.tmp, 'missing.partscan')]);
    expect(r.children, 'no relaunch happened').toBeGreaterThan(0);
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/MODEL|Cannot open/);
  });

  it('a partial run in the child: exit 3 from the launcher', async () => {
    const bad = path.join(fx.tmp, 'not-an-image.png');
    await fs.writeFile(bad, 'not a png');
    const r = await exitOf(['score', fx.modelFile, fx.images[0]!, bad, '--out', path.join(fx.tmp, 'partial-run')]);
    expect(r.children).toBeGreaterThan(0);
    expect(r.code, r.stderr).toBe(3);
  }, 120_000);

  it('a child killed by a signal: the launcher ends by the same signal', async () => {
    const l = launch(['worker', '--redis', 'redis://127.0.0.1:1', '--queue', 'none']);
    await within(20_000, () => childrenOf(l.proc.pid!).length > 0);
    const [child] = childrenOf(l.proc.pid!);
    process.kill(child!, 'SIGKILL');
    await l.exited;
    expect(l.proc.signalCode).toBe('SIGKILL');
  }, 60_000);
});
