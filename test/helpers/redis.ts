/**
 * A real redis-server for queue tests: a free 127.0.0.1 port, a temp directory, append-only file with
 * fsync on every write (so a kill loses nothing), stopped at the end. Needs /usr/bin/redis-server
 * (Debian package redis-server; .ci/run installs it).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestRedis {
  url: string;
  port: number;
  dir: string;
  /** Process id of the running server. */
  pid(): number | undefined;
  /** SIGKILLs the server (a crash) and leaves it down. */
  crash(): Promise<void>;
  /** SIGKILLs the server (a crash), then starts it again on the same port and data directory. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.end();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`redis-server did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * @param opts.appendfsync 'always' (default: a crash loses nothing, what the fault tests need) or
 *   'everysec' (the production setting, for benchmarks).
 * @param opts.persist false: no append-only file, so a restart comes back empty (jobs lost).
 */
export async function startRedis(opts: { appendfsync?: 'always' | 'everysec'; persist?: boolean } = {}): Promise<TestRedis> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const launch = async () => {
    proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', opts.persist === false ? 'no' : 'yes', '--appendfsync', opts.appendfsync ?? 'always', '--save', '', '--protected-mode', 'no'],
      { stdio: 'ignore' },
    );
    await waitForPort(port);
  };
  const kill = async (signal: NodeJS.Signals) => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    pid: () => proc?.pid,
    crash: () => kill('SIGKILL'),
    restart: async (downMs = 500) => {
      await kill('SIGKILL');
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    stop: async () => {
      await kill('SIGTERM');
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
