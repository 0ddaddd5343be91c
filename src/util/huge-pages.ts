import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { endWithParent } from './cancellation.js';

/**
 * Transparent huge pages for the process's large buffers (Linux with glibc).
 *
 * partscan moves big arrays: backbone feature maps (5.6 MB per image at 224 px), embedding buffers,
 * per-position scatter and inverse-covariance matrices (1.9 GB each at d=550). Every fresh 4 KiB page
 * costs a page fault on first touch, and in virtual machines a fault can be very expensive: on the
 * reference machine (a Firecracker VM) the first write to fresh memory runs at about 4 ms per MB —
 * touching 133 MB takes 0.4 s, the arithmetic on it 10 ms. glibc's `glibc.malloc.hugetlb=1` tunable makes
 * malloc ask for transparent huge pages (2 MiB) on its large mappings (V8's array buffers, ONNX Runtime
 * and libvips all allocate through it), which cuts the faults ~500×: bottle fit at d=100 18.2 s → 9.9 s,
 * batched scoring 41.6 → 32.3 ms/image on that machine.
 *
 * The tunable is read when the process starts, so it cannot be switched on from inside: the CLI and
 * the benchmarks re-run themselves once with it set (see {@link relaunchWithHugePages}); programs that
 * embed partscan set `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` in their own environment.
 */
export const HUGE_PAGES_TUNABLE = 'glibc.malloc.hugetlb=1';

/**
 * Opt-out: set to 0 to keep the process's memory settings untouched. Set to 1 to relaunch even where
 * the kernel does not offer transparent huge pages (the tunable is then harmless; tests use it to
 * exercise the relaunch on any Linux with glibc).
 */
export const HUGE_PAGES_ENV = 'PARTSCAN_HUGE_PAGES';

/**
 * Set in the relaunched child's environment: its IPC channel (fd 3) leads to the launching parent, and
 * the child ends as soon as that channel closes (see {@link relaunchWithHugePages}).
 */
export const PARENT_CHANNEL_ENV = 'PARTSCAN_PARENT_CHANNEL';

/** True when this process was started with glibc's huge-page tunable. */
export function hugePagesEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.GLIBC_TUNABLES ?? '').split(':').includes(HUGE_PAGES_TUNABLE);
}

/** Whether the kernel grants transparent huge pages on request ('always' or 'madvise' mode). */
function kernelOffersHugePages(): boolean {
  try {
    const mode = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
    return /\[(always|madvise)\]/.test(mode);
  } catch {
    return false;
  }
}

/** True on Linux with glibc (the tunable means nothing to musl or other systems). */
function isGlibcLinux(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return typeof header?.glibcVersionRuntime === 'string';
}

/** The environment a relaunch would use, or undefined when no relaunch is useful or wanted. */
export function hugePagesEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv | undefined {
  if (env[HUGE_PAGES_ENV] === '0' || hugePagesEnabled(env)) return undefined;
  // The sysfs read first: it is cheap, the process report behind isGlibcLinux is not.
  if (env[HUGE_PAGES_ENV] !== '1' && !kernelOffersHugePages()) return undefined;
  if (!isGlibcLinux()) return undefined;
  const tunables = env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${HUGE_PAGES_TUNABLE}` : HUGE_PAGES_TUNABLE;
  // The marker stops a second relaunch even if glibc drops the variable (e.g. for setuid binaries).
  return { ...env, GLIBC_TUNABLES: tunables, [HUGE_PAGES_ENV]: '0', [PARENT_CHANNEL_ENV]: '1' };
}

/**
 * Re-runs the current Node.js command once with huge pages enabled, forwarding stdio, signals and the
 * exit status; the returned promise then never settles (the process exits when the child does). It
 * resolves at once, doing nothing, when huge pages are already on, unavailable, or turned off with
 * `PARTSCAN_HUGE_PAGES=0`. For command-line entry points only: `await` it before any work.
 *
 * Supervisors signal one pid, not a process group: SIGINT, SIGTERM and SIGHUP sent to this process are
 * passed on to the child, which does the work (and cleans up after itself, see src/util/cancellation.ts).
 * The parent ends the way the child ended: with its exit code, or, when the child was ended by a signal,
 * by re-raising that signal on itself (a shell then reports 128 + n, and a parent program sees the
 * signal), so the relaunch is invisible to whoever started the command.
 *
 * SIGKILL cannot be forwarded, so the child does not rely on signals to learn that its parent is gone:
 * the two are joined by an IPC channel, which the kernel closes when the parent ends, however it ends.
 * In the child (this same call, made first thing), the channel's 'disconnect' ends the process at once:
 * the command is cancelled as by a signal (its temp files and the outputs it created are removed,
 * nothing more is renamed into place) and the process kills itself, so an orphan never goes on
 * fitting, scoring or taking queue jobs.
 */
export function relaunchWithHugePages(): Promise<void> {
  if (process.env[PARENT_CHANNEL_ENV] === '1') {
    // The relaunched child: not passed on to processes it starts.
    delete process.env[PARENT_CHANNEL_ENV];
    if (process.channel) endWithParent();
  }
  const env = hugePagesEnvironment();
  if (!env) return Promise.resolve();
  return relaunch(env);
}

/** The relaunch itself, with the environment it runs in. */
function relaunch(env: NodeJS.ProcessEnv): Promise<void> {
  let child: ChildProcess;
  try {
    // fd 3 is the IPC channel: it closes when this process ends, even by SIGKILL, and the child then ends too.
    child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env, stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
  } catch {
    return Promise.resolve(); // could not spawn: run here, without huge pages
  }
  return new Promise<void>((resolve) => {
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    const stopForwarding = (): void => {
      for (const s of FORWARDED_SIGNALS) process.removeListener(s, forward);
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    let ranHere = false;
    child.on('error', () => {
      // Could not start (e.g. EAGAIN): run here, without huge pages. (A failed kill also reports an
      // error; the child then still runs, and this process keeps waiting for it.)
      if (child.pid !== undefined || ranHere) return;
      ranHere = true;
      stopForwarding();
      resolve();
    });
    child.once('exit', (code, signal) => {
      if (ranHere) return; // 'exit' may follow a failed start: the work runs here now
      stopForwarding();
      if (signal) {
        // No listener left for it: the default action ends this process by the same signal.
        process.kill(process.pid, signal);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
        process.exit(128 + (constants.signals[signal] ?? 0));
      }
      process.exit(code ?? 1);
    });
  });
}

/** Signals a relaunching parent passes on to its child. */
const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
