/**
 * Expanding the image arguments of `partscan score`: files, folders (their images, not recursive) and
 * glob patterns. Node 20 has no `fs.glob`, and Windows shells do not expand globs, so partscan expands
 * quoted patterns itself: `*`, `?`, `[abc]`, `{a,b}` within one path segment and `**` for any depth.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { IMAGE_EXTENSIONS, listImages } from '../data/loaders.js';
import { PartscanError } from '../errors.js';

const GLOB_CHARS = /[*?[{]/;

/** True when `arg` contains glob syntax (and so is expanded rather than opened). */
export function isGlob(arg: string): boolean {
  return GLOB_CHARS.test(arg);
}

/** Regular expression matching one path segment against a glob segment. */
export function globSegmentRegExp(segment: string): RegExp {
  let re = '';
  let braces = 0;
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = segment.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        const body = segment.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\');
        re += `[${body}]`;
        i = end;
      }
    } else if (c === '{') {
      braces++;
      re += '(?:';
    } else if (c === '}' && braces > 0) {
      braces--;
      re += ')';
    } else if (c === ',' && braces > 0) re += '|';
    else re += c.replace(/[.+^$()|\\\]]/g, '\\$&');
  }
  // Hidden files only match patterns that name the dot explicitly, like shells do.
  return new RegExp(`^${segment.startsWith('.') ? '' : '(?!\\.)'}${re}$`, process.platform === 'win32' ? 'i' : '');
}

/** Files matching a glob pattern (relative patterns resolve against the working directory), sorted. */
export async function expandGlob(pattern: string): Promise<string[]> {
  const abs = path.resolve(pattern);
  const parts = abs.split(path.sep);
  const first = parts.findIndex((p) => isGlob(p));
  const base = parts.slice(0, first).join(path.sep) || path.sep;
  const rest = parts.slice(first);
  const out: string[] = [];
  const walk = async (dir: string, segs: string[]): Promise<void> => {
    if (segs.length === 0) return;
    const [seg, ...tail] = segs as [string, ...string[]];
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    if (seg === '**') {
      await walk(dir, tail); // zero directories
      for (const e of entries) if (e.isDirectory() && !e.name.startsWith('.')) await walk(path.join(dir, e.name), segs);
      return;
    }
    const re = globSegmentRegExp(seg);
    for (const e of entries) {
      if (!re.test(e.name)) continue;
      const full = path.join(dir, e.name);
      if (tail.length === 0) {
        if (e.isFile() || (e.isSymbolicLink() && (await fs.stat(full).catch(() => undefined))?.isFile())) out.push(full);
      } else if (e.isDirectory() || e.isSymbolicLink()) await walk(full, tail);
    }
  };
  await walk(base, rest);
  return [...new Set(out)].sort();
}

/**
 * Image paths from CLI arguments, in argument order without duplicates: a folder gives its images,
 * a glob its matching image files (by extension), a plain path itself (even if it is not an image,
 * so a bad file is reported by the scorer rather than silently skipped).
 * @throws PartscanError 'OPTIONS' for a path that does not exist, a glob matching no image, or no images at all.
 */
export async function expandImageArgs(args: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const arg of args) {
    if (isGlob(arg)) {
      const st = await fs.stat(arg).catch(() => undefined); // a real file whose name has glob characters
      if (st?.isFile()) {
        out.push(path.resolve(arg));
        continue;
      }
      const matches = (await expandGlob(arg)).filter((f) => IMAGE_EXTENSIONS.includes(path.extname(f).toLowerCase()));
      if (matches.length === 0) {
        throw new PartscanError('OPTIONS', `The pattern ${arg} matches no image files.`, {
          remedy: `check the pattern; image extensions are ${IMAGE_EXTENSIONS.join(', ')}`,
        });
      }
      out.push(...matches);
      continue;
    }
    const st = await fs.stat(arg).catch(() => undefined);
    if (!st) {
      // A symlink that leads nowhere (dangling, or a loop) is an image that cannot be read: the
      // scorer records it as that image's failure, the other images are scored.
      if ((await fs.lstat(arg).catch(() => undefined))?.isSymbolicLink()) {
        out.push(path.resolve(arg));
        continue;
      }
      throw new PartscanError('OPTIONS', `No such file or folder: ${arg}.`, { file: arg, remedy: 'check the path' });
    }
    if (st.isDirectory()) out.push(...(await listImages(arg)));
    else out.push(path.resolve(arg));
  }
  const unique = [...new Set(out)];
  if (unique.length === 0) {
    throw new PartscanError('OPTIONS', `No images found in ${args.join(' ')}.`, {
      remedy: 'pass image files, folders holding images, or a quoted glob such as "parts/*.png"',
    });
  }
  return unique;
}
