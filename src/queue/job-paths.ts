/**
 * The paths a queue job names, checked against the folders a worker serves (`--allow-root`). A job is
 * hostile input: a lexical check of its strings is not enough, because a symlink inside a root can lead
 * out of it (`run.dir` = /shared/runs/link/… with link → /etc) and a relative path can climb out
 * (`../../elsewhere/x.onnx`). Every path is therefore resolved to its real path — the deepest part that
 * exists resolved through symlinks by the kernel, the missing rest appended — and the job then works on
 * the resolved paths, not on the strings it sent.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PartscanError } from '../errors.js';

/**
 * The real path of `p` (relative paths from the working directory, as a reader would open them): its
 * deepest existing ancestor through realpath(3), then the components that do not exist yet. `..` is
 * left to the kernel wherever the path exists (after a symlink it means the target's parent), and
 * normalised lexically only in the missing rest.
 */
export async function realPathOf(p: string): Promise<string> {
  let cur = path.isAbsolute(p) ? p : `${process.cwd()}${path.sep}${p}`;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(await fs.realpath(cur), ...rest.reverse());
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        throw new PartscanError('QUEUE', `Cannot resolve ${p} (${code ?? String(e)}).`, { remedy: 'name paths without symlink loops or unreadable folders' });
      }
      const parent = path.dirname(cur);
      if (parent === cur) return path.join(cur, ...rest.reverse());
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/** The allowed roots as real paths (resolved once, when the worker starts). */
export async function realRoots(roots: readonly string[] | undefined): Promise<string[] | undefined> {
  return roots ? Promise.all(roots.map((r) => realPathOf(path.resolve(r)))) : undefined;
}

function inside(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/**
 * Resolves every path of a job (see {@link realPathOf}) and, when the worker has roots, checks each
 * against them; returns the resolved paths under the same keys. Throws a typed 'QUEUE' error naming
 * the path (and where it really leads) otherwise.
 */
export async function resolveJobPaths<K extends string>(
  jobId: string,
  roots: readonly string[] | undefined,
  paths: Partial<Record<K, string>>,
): Promise<Partial<Record<K, string>>> {
  const out: Partial<Record<K, string>> = {};
  for (const [key, p] of Object.entries(paths) as [K, string | undefined][]) {
    if (p === undefined) continue;
    const real = await realPathOf(p);
    if (roots && !roots.some((r) => inside(real, r))) {
      const via = real === path.resolve(p) ? '' : ` (it leads to ${real})`;
      throw new PartscanError('QUEUE', `Job ${jobId} names ${p}${via}, outside the folders this worker serves.`, {
        remedy: 'put models, images and runs under a folder given to the worker with --allow-root (symlinks out of it are not followed)',
      });
    }
    out[key] = real;
  }
  return out;
}
