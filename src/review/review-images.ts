/**
 * The image files a review names, made safe to use: each path is resolved to its real path (symlinks
 * followed by the kernel, util/real-path.ts) and must lie inside an allowed root — `imageRoots`
 * (`--image-root`), by default the working directory — so that a review cannot make partscan read
 * `/etc/shadow` or climb out with `../..`. Each file must then be a readable regular file: its bytes'
 * sha256 is the key its row takes in the model's calibration pool. Files outside the roots and missing
 * files are collected and reported in one typed 'REVIEW' error that lists them by name. Finally the
 * labels must agree: one file, or two files with the same bytes, cannot be both good and defective.
 */

import path from 'node:path';
import { PartscanError } from '../errors.js';
import { isInside, leadsTo, realPathOf } from '../util/real-path.js';
import { regularFileSha256 } from '../util/regular-file.js';
import { throwIfAborted } from '../util/abort.js';
import type { ReviewFile, ReviewItem } from './review-file.js';

/** A reviewed part whose file was found inside the allowed roots. */
export interface ResolvedReviewItem extends ReviewItem {
  /** The file's real path (what is read, scored or fitted). */
  path: string;
  /** sha256 (hex) of the file's bytes: the part's key in the calibration pool. */
  key: string;
}

/** Names shown in one error message; the rest are counted. */
const LISTED = 20;

function listed(names: readonly string[]): string {
  const shown = names.slice(0, LISTED).join(', ');
  return names.length > LISTED ? `${shown}, and ${names.length - LISTED} more` : shown;
}

function resolveError(p: string, code: string): PartscanError {
  return new PartscanError('REVIEW', `Cannot resolve ${p} (${code}).`, { remedy: 'name files without symlink loops or unreadable folders' });
}

/** sha256 of a regular file's bytes, or why it cannot be read ('missing', 'a FIFO (named pipe)', 'a directory', …). */
async function hashRegularFile(file: string): Promise<{ key: string } | { why: string }> {
  try {
    return { key: await regularFileSha256(file, (kind) => Object.assign(new Error(kind), { code: 'SPECIAL', kind })) };
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { kind?: string };
    if (err.kind) return { why: err.kind };
    if (err.code === 'EISDIR') return { why: 'a directory' };
    return { why: err.code === 'ENOENT' || err.code === 'ENOTDIR' ? 'missing' : `unreadable: ${err.code ?? String(e)}` };
  }
}

/** The items with one entry per file and per image content; throws 'REVIEW' when labels disagree. */
function withoutDuplicates(items: readonly ResolvedReviewItem[], source: string): ResolvedReviewItem[] {
  const byKey = new Map<string, ResolvedReviewItem>();
  const conflicts: string[] = [];
  for (const item of items) {
    const seen = byKey.get(item.key);
    if (!seen) byKey.set(item.key, item);
    else if (seen.label !== item.label) {
      conflicts.push(seen.file === item.file ? `${item.file} (labelled both good and defect)` : `${seen.file} (${seen.label}) and ${item.file} (${item.label}) hold the same image`);
    } else if ((item.reviewedAt ?? '') > (seen.reviewedAt ?? '')) byKey.set(item.key, item);
  }
  if (conflicts.length) {
    throw new PartscanError('REVIEW', `${source}: contradictory labels: ${listed(conflicts)}.`, { remedy: 'give each part one label in the report and export the review again' });
  }
  return [...byKey.values()];
}

/**
 * Resolves and hashes every file a review names (see the module comment). `roots` defaults to the
 * working directory; relative paths resolve from the working directory, as the scoring run opened them.
 * Throws 'REVIEW' listing the files outside the roots, then the missing or unreadable ones, then
 * contradictory labels; 'CANCELLED' when `signal` aborts.
 */
export async function resolveReviewImages(review: ReviewFile, opts: { roots?: readonly string[]; source: string; signal?: AbortSignal }): Promise<ResolvedReviewItem[]> {
  const roots = await Promise.all((opts.roots?.length ? opts.roots : [process.cwd()]).map((r) => realPathOf(path.resolve(r), (code) => resolveError(r, code))));
  const outside: string[] = [];
  const real: string[] = [];
  for (const item of review.items) {
    const p = await realPathOf(item.file, (code) => resolveError(item.file, code));
    if (!roots.some((r) => isInside(p, r))) outside.push(`${item.file}${leadsTo(item.file, p)}`);
    real.push(p);
  }
  if (outside.length) {
    throw new PartscanError('REVIEW', `${opts.source} names ${outside.length} file(s) outside the allowed image folders (${roots.join(', ')}): ${listed(outside)}.`, {
      remedy: 'pass the folder that holds the reviewed images with --image-root <dir> (API: imageRoots); symlinks out of it are not followed',
    });
  }
  const out: ResolvedReviewItem[] = [];
  const missing: string[] = [];
  for (let i = 0; i < review.items.length; i += 16) {
    throwIfAborted(opts.signal, 'Reading the reviewed images');
    const part = review.items.slice(i, i + 16);
    const hashed = await Promise.all(part.map((_, k) => hashRegularFile(real[i + k]!)));
    hashed.forEach((h, k) => {
      const item = part[k]!;
      if ('why' in h) missing.push(h.why === 'missing' ? item.file : `${item.file} (${h.why})`);
      else out.push({ ...item, path: real[i + k]!, key: h.key });
    });
  }
  if (missing.length) {
    throw new PartscanError('REVIEW', `${opts.source}: ${missing.length} reviewed image(s) cannot be read: ${listed(missing)}.`, {
      remedy: 'the review needs the reviewed images: run it where they are, or remove the parts whose images are gone from the review',
    });
  }
  return withoutDuplicates(out, opts.source);
}
