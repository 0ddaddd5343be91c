import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { constants } from 'node:os';
import { PartscanError } from '../errors.js';

/**
 * Cancellation of a command by signal (SIGINT, SIGTERM, SIGHUP), for command-line entry points.
 *
 * A supervisor stops a program by signalling one pid. The command must then leave nothing behind:
 * no temp file of an atomic write, no output the command created, and no rename into place after the
 * signal. {@link runCancellable} installs the handlers for the duration of one command; on a signal it
 * removes the temp files in flight ({@link trackTempFile}) and the outputs the command created, then
 * re-raises the signal with the default action restored, so the process ends *by* that signal (a shell
 * reports 128 + n: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP) exactly as an unhandled signal would.
 *
 * Library calls made outside {@link runCancellable} are unaffected: no handler is installed and the
 * process's own signal handling applies.
 */

/** The signals a command is cancelled by. */
export const CANCEL_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

const tempFiles = new Set<string>();
let cancelledBy: NodeJS.Signals | undefined;

/** Registers a temp file being written, so a cancellation removes it. */
export function trackTempFile(file: string): void {
  tempFiles.add(file);
}

/** Forgets a temp file (renamed into place or removed). */
export function untrackTempFile(file: string): void {
  tempFiles.delete(file);
}

/** The signal that cancelled the running command, if one did. */
export function cancelledSignal(): NodeJS.Signals | undefined {
  return cancelledBy;
}

/**
 * Throws a typed 'CANCELLED' error when the running command was cancelled: called before an atomic
 * write renames its temp file into place, so nothing appears after the signal.
 */
export function throwIfCancelled(file?: string): void {
  if (!cancelledBy) return;
  throw new PartscanError('CANCELLED', `Cancelled by ${cancelledBy}${file ? `: ${file} was not written` : ''}.`, {
    ...(file !== undefined ? { file } : {}),
    remedy: 'run the command again to produce the output',
  });
}

/** Throws a typed 'CANCELLED' error when an API caller's `signal` has aborted (checked between batches). */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw new PartscanError('CANCELLED', 'Cancelled by the caller (AbortSignal).', { remedy: 'call again to produce the result' });
}

/**
 * The topmost path that does not exist yet on the way down to `p` (what `mkdir -p` + write would
 * create), or undefined when `p` exists.
 */
function firstMissing(p: string): string | undefined {
  let missing: string | undefined;
  for (let cur = path.resolve(p); !existsSync(cur); cur = path.dirname(cur)) {
    missing = cur;
    if (path.dirname(cur) === cur) break;
  }
  return missing;
}

/** What an output path was before the command: removed, or trimmed back to, on cancellation. */
interface OutputSnapshot {
  /** Created by the command (with any missing parent folders): removed whole. */
  created?: string;
  /** A folder that existed: entries that were not there before are removed. */
  dir?: string;
  entries?: Set<string>;
}

function snapshot(p: string): OutputSnapshot {
  const created = firstMissing(p);
  if (created) return { created };
  const abs = path.resolve(p);
  if (statSync(abs).isDirectory()) return { dir: abs, entries: new Set(readdirSync(abs)) };
  return {}; // an existing file: it is replaced only by a complete file (atomic rename), never removed
}

/** Removes temp files in flight and what the command created. Synchronous: it runs inside the signal handler. */
function cleanUp(snapshots: OutputSnapshot[]): void {
  for (const t of tempFiles) rmSync(t, { force: true });
  for (const s of snapshots) {
    if (s.created) rmSync(s.created, { recursive: true, force: true });
    else if (s.dir && s.entries) {
      let now: string[] = [];
      try {
        now = readdirSync(s.dir);
      } catch {
        continue;
      }
      for (const name of now) if (!s.entries.has(name)) rmSync(path.join(s.dir, name), { recursive: true, force: true });
    }
  }
}

const outputs: OutputSnapshot[] = [];
let installed = false;

function onSignal(signal: NodeJS.Signals): void {
  cancelledBy = signal;
  try {
    cleanUp(outputs);
    // File operations already handed to libuv's threads (an open creating a temp file, a rename) still
    // complete while this thread waits; none started after the signal can (their callbacks never run).
    // Clean up once more after them.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    cleanUp(outputs);
  } finally {
    for (const s of CANCEL_SIGNALS) process.removeListener(s, onSignal);
    // No listener left: the default action is back, so this ends the process by the signal.
    process.kill(process.pid, signal);
    // The signal may be taken by another thread a moment later: block here meanwhile, so that no other
    // callback (a rename, a write) runs; should it still not end the process, exit with the shell's code.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
    process.exit(128 + (constants.signals[signal] ?? 0));
  }
}

/**
 * Ends this process as soon as its parent ends, whatever ended the parent (SIGKILL included): for a
 * process started with an IPC channel (`stdio: [..., 'ipc']`), whose closing the kernel guarantees when
 * the parent goes. The running command is cancelled as by a signal — temp files in flight and the
 * outputs it created are removed, nothing more is renamed into place — and the process then kills
 * itself (SIGKILL: no handler, no queue job, no timer runs after it). The channel does not keep the
 * process alive by itself.
 */
export function endWithParent(): void {
  const channel = process.channel;
  if (!channel) return;
  channel.unref();
  process.once('disconnect', () => {
    cancelledBy = 'SIGKILL';
    try {
      cleanUp(outputs);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
      cleanUp(outputs);
    } finally {
      process.kill(process.pid, 'SIGKILL');
    }
  });
}

/**
 * Runs one command so that SIGINT, SIGTERM or SIGHUP cancel it cleanly: temp files in flight and the
 * outputs it created under `outputs` (files or folders; missing parent folders included; new entries of
 * a folder that already existed) are removed, and the process then ends by the same signal. Files that
 * existed before are never removed (an atomic write replaces them only with a complete file).
 *
 * The handlers stay until the process ends: a signal that comes after the command's work, while the
 * process shuts down, still ends it by the signal, so it removes the outputs too — a process that ends by
 * a signal never leaves output behind, whenever the signal came.
 */
export async function runCancellable<T>(paths: readonly string[], fn: () => Promise<T>): Promise<T> {
  outputs.push(...paths.map(snapshot));
  if (!installed) {
    installed = true;
    for (const s of CANCEL_SIGNALS) process.on(s, onSignal);
  }
  return fn();
}
