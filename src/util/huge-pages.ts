import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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

/** Opt-out: set to 0 to keep the process's memory settings untouched. */
export const HUGE_PAGES_ENV = 'PARTSCAN_HUGE_PAGES';

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
  if (!kernelOffersHugePages() || !isGlibcLinux()) return undefined;
  const tunables = env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${HUGE_PAGES_TUNABLE}` : HUGE_PAGES_TUNABLE;
  // The marker stops a second relaunch even if glibc drops the variable (e.g. for setuid binaries).
  return { ...env, GLIBC_TUNABLES: tunables, [HUGE_PAGES_ENV]: '0' };
}

/**
 * Re-runs the current Node.js command once with huge pages enabled, forwarding stdio and the exit
 * status, and exits; returns without doing anything when they are already on, unavailable, or turned
 * off with `PARTSCAN_HUGE_PAGES=0`. For command-line entry points only: call it before any work.
 */
export function relaunchWithHugePages(): void {
  const env = hugePagesEnvironment();
  if (!env) return;
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env, stdio: 'inherit' });
  if (child.error) return; // could not spawn: run here, without huge pages
  if (child.signal) process.kill(process.pid, child.signal);
  process.exit(child.status ?? 1);
}
