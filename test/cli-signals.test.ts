/**
 * Signals to the CLI, as a supervisor sends them: to the pid of `bin/partscan.js` only, never to the
 * process group. The launcher relaunches itself for huge pages (forced with PARTSCAN_HUGE_PAGES=1, so the
 * relaunch happens even where the kernel offers no transparent huge pages), so the signalled process is
 * the parent and the work runs in its child. For fit, score and export: the parent ends by the same
 * signal, no child survives it, and neither the output nor a temp file remains.
 *
 * Each command is signalled at the moment its first temp file appears (inotify on the output folder),
 * i.e. mid-write, the worst moment; a second fit is signalled mid-computation. Needs the compiled CLI
 * (dist/, built by `npm install` / `npm run build`).
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { promises as fs, watch } from 'node:fs';
import path from 'node:path';
import { REF_WEIGHTS, REPO } from './helpers/shared.js';
import { useCliFixture } from './helpers/cli-fixture.js';
import { alive, childrenOf, listAll } from './helpers/processes.js';

const BIN = path.join(REPO, 'bin', 'partscan.js');
const fx = useCliFixture('partscan-signals-');

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  children: number[];
  stderr: string;
  signalledAt: 'file' | 'timer' | 'never';
}

/** When to send the signal: when a file or folder whose name passes the test appears in the watched folder, or after a delay (ms). */
type Trigger = ((name: string) => boolean) | number;
const tempFile: Trigger = (name) => name.endsWith('.tmp');

/** Runs `partscan <args>` through bin/partscan.js and sends `signal` to that pid only, at `trigger`. */
function runAndSignal(args: string[], signal: NodeJS.Signals, watchDir: string, trigger: Trigger = tempFile): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      cwd: REPO,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PARTSCAN_HUGE_PAGES: '1', PARTSCAN_NO_PROGRESS: '1', GLIBC_TUNABLES: '' },
    });
    let stderr = '';
    p.stderr!.on('data', (b) => (stderr += b));
    const children = new Set<number>();
    let signalledAt: Outcome['signalledAt'] = 'never';
    const fire = (why: Outcome['signalledAt']) => {
      if (signalledAt !== 'never' || p.exitCode !== null) return;
      for (const c of childrenOf(p.pid!)) children.add(c);
      signalledAt = why;
      p.kill(signal);
    };
    const poll = setInterval(() => {
      for (const c of childrenOf(p.pid!)) children.add(c);
    }, 20);
    const watcher = watch(watchDir, (_e, name) => {
      if (typeof trigger === 'function' && name && trigger(String(name))) fire('file');
    });
    const timer = typeof trigger === 'number' ? setTimeout(() => fire('timer'), trigger) : undefined;
    p.on('error', reject);
    p.on('exit', (code, sig) => {
      clearInterval(poll);
      clearTimeout(timer);
      watcher.close();
      resolve({ code, signal: sig, children: [...children], stderr, signalledAt });
    });
  });
}

function expectCleanEnd(o: Outcome, signal: NodeJS.Signals): void {
  expect(o.signalledAt, `never signalled (the command ended first): ${o.stderr}`).not.toBe('never');
  expect(o.children.length, 'the launcher did not relaunch itself').toBeGreaterThan(0);
  expect(o.signal, `exit code ${o.code}, stderr: ${o.stderr}`).toBe(signal);
  for (const c of o.children) expect(alive(c), `child ${c} outlived the parent`).toBe(false);
}

describe('signals to the CLI launcher (parent pid only)', () => {
  it('fit: SIGINT mid-computation ends parent and child, no model file', async () => {
    const dir = path.join(fx.tmp, 'fit-compute');
    await fs.mkdir(dir);
    const out = path.join(dir, 'model.partscan');
    const o = await runAndSignal(['fit', fx.bigTrain, '--out', out, '--weights', REF_WEIGHTS, '--image-size', '224', '--channels', '100'], 'SIGINT', dir, 3000);
    expect(o.signalledAt).toBe('timer');
    expectCleanEnd(o, 'SIGINT');
    expect(listAll(dir)).toEqual([]);
  }, 120_000);

  it('fit: SIGINT while the model file is being written leaves neither it nor its temp file', async () => {
    const dir = path.join(fx.tmp, 'fit-write');
    await fs.mkdir(dir);
    const out = path.join(dir, 'model.partscan');
    const o = await runAndSignal(['fit', fx.train, '--out', out, '--weights', REF_WEIGHTS, '--image-size', '64', '--channels', '16'], 'SIGINT', dir);
    expectCleanEnd(o, 'SIGINT');
    expect(listAll(dir)).toEqual([]);
  }, 120_000);

  it('score: SIGTERM as the run folder appears removes the folder it created', async () => {
    const parent = path.join(fx.tmp, 'score-parent');
    await fs.mkdir(parent);
    const out = path.join(parent, 'run');
    const o = await runAndSignal(['score', fx.modelFile, ...fx.images, '--out', out], 'SIGTERM', parent, (name) => name === 'run');
    expectCleanEnd(o, 'SIGTERM');
    expect(listAll(parent)).toEqual([]);
  }, 120_000);

  it('score into an existing folder: SIGTERM removes only what the run added', async () => {
    const out = path.join(fx.tmp, 'score-existing');
    await fs.mkdir(out);
    await fs.writeFile(path.join(out, 'keep.txt'), 'not the run\'s');
    const o = await runAndSignal(['score', fx.modelFile, ...fx.images, '--out', out], 'SIGTERM', out);
    expectCleanEnd(o, 'SIGTERM');
    expect(listAll(out)).toEqual(['keep.txt']);
  }, 120_000);

  it('export: SIGHUP while the ONNX file is being written leaves no .onnx, .data or temp file', async () => {
    const dir = path.join(fx.tmp, 'export');
    await fs.mkdir(dir);
    const o = await runAndSignal(['export', fx.modelFile, '--onnx', path.join(dir, 'm.onnx')], 'SIGHUP', dir);
    expectCleanEnd(o, 'SIGHUP');
    expect(listAll(dir)).toEqual([]);
  }, 120_000);

  it('without the relaunch (PARTSCAN_HUGE_PAGES=0) the CLI cleans up and ends by the signal itself', async () => {
    const dir = path.join(fx.tmp, 'direct');
    await fs.mkdir(dir);
    const p = spawn(process.execPath, [BIN, 'export', fx.modelFile, '--onnx', path.join(dir, 'm.onnx')], {
      cwd: REPO,
      stdio: 'ignore',
      env: { ...process.env, PARTSCAN_HUGE_PAGES: '0' },
    });
    const w = watch(dir, (_e, name) => {
      if (name && String(name).endsWith('.tmp')) p.kill('SIGINT');
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => p.on('exit', (c, s) => r([c, s])));
    w.close();
    expect(childrenOf(p.pid!)).toEqual([]);
    expect(signal, `exit code ${code}`).toBe('SIGINT');
    expect(listAll(dir)).toEqual([]);
  }, 120_000);
});
