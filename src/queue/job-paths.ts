/**
 * The paths a queue job names, checked against the folders a worker serves (`--allow-root`). A job is
 * hostile input: a lexical check of its strings is not enough, because a symlink inside a root can lead
 * out of it (`run.dir` = /shared/runs/link/… with link → /etc) and a relative path can climb out
 * (`../../elsewhere/x.onnx`). Every path is therefore resolved to its real path — the deepest part that
 * exists resolved through symlinks by the kernel, the missing rest appended — and the job then works on
 * the resolved paths, not on the strings it sent.
 */

import path from 'node:path';
import { PartscanError } from '../errors.js';
import { isInside, leadsTo, realPathOf } from '../util/real-path.js';

/** {@link realPathOf} with the queue's typed error. */
function realJobPath(p: string): Promise<string> {
  return realPathOf(p, (code) => new PartscanError('QUEUE', `Cannot resolve ${p} (${code}).`, { remedy: 'name paths without symlink loops or unreadable folders' }));
}

/** The allowed roots as real paths (resolved once, when the worker starts). */
export async function realRoots(roots: readonly string[] | undefined): Promise<string[] | undefined> {
  return roots ? Promise.all(roots.map((r) => realJobPath(path.resolve(r)))) : undefined;
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
    const real = await realJobPath(p);
    if (roots && !roots.some((r) => isInside(real, r))) {
      throw new PartscanError('QUEUE', `Job ${jobId} names ${p}${leadsTo(p, real)}, outside the folders this worker serves.`, {
        remedy: 'put models, images and runs under a folder given to the worker with --allow-root (symlinks out of it are not followed)',
      });
    }
    out[key] = real;
  }
  return out;
}
