/**
 * Real paths and allowed roots, for paths that come from hostile input (queue jobs, review files). A
 * lexical check of a path string is not enough: a symlink inside a root can lead out of it
 * (`/shared/runs/link/…` with link → /etc) and a relative path can climb out (`../../elsewhere/x`).
 * Such a path is therefore resolved to its real path — the deepest part that exists resolved through
 * symlinks by the kernel, the missing rest appended — and checked, and then used, as resolved.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * The real path of `p` (relative paths from the working directory, as a reader would open them): its
 * deepest existing ancestor through realpath(3), then the components that do not exist yet. `..` is
 * left to the kernel wherever the path exists (after a symlink it means the target's parent), and
 * normalised lexically only in the missing rest. A path that cannot be resolved for another reason
 * than a missing component (a symlink loop, an unreadable folder) is given to `refuse` with the errno
 * code, and what it returns is thrown.
 */
export async function realPathOf(p: string, refuse: (code: string) => Error): Promise<string> {
  let cur = path.isAbsolute(p) ? p : `${process.cwd()}${path.sep}${p}`;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(await fs.realpath(cur), ...rest.reverse());
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw refuse(code ?? String(e));
      const parent = path.dirname(cur);
      if (parent === cur) return path.join(cur, ...rest.reverse());
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * Why a path is refused when it lies outside every root: '' when the path already says where it is,
 * else ' (it leads to <real path>)' — a symlink or `..` took it somewhere else.
 */
export function leadsTo(p: string, real: string): string {
  return real === path.resolve(p) ? '' : ` (it leads to ${real})`;
}

/** Whether the real path `p` is `root` or lies below it (both real paths). */
export function isInside(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}
