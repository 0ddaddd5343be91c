import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PartscanError } from '../errors.js';
import { throwIfCancelled, trackTempFile, untrackTempFile } from './cancellation.js';

/** Translates file-system errors into actionable {@link PartscanError}s ('OUTPUT'). */
export function outputError(file: string, e: unknown): PartscanError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const why =
    code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
      ? 'the location is not writable'
      : code === 'ENOSPC'
        ? 'the disk is full'
        : code === 'ENOTDIR' || code === 'EEXIST'
          ? 'a path component is a file, not a directory'
          : code === 'EISDIR'
            ? 'the path is a directory'
            : `the write failed (${code ?? String(e)})`;
  return new PartscanError('OUTPUT', `Cannot write ${file}: ${why}.`, {
    file,
    remedy: 'choose another output location, or fix its permissions / free space',
    cause: e,
  });
}

/**
 * Writes `data` to `file` atomically: a temp file in the same directory, fsync, then rename.
 * Readers see the old file or the complete new one, never a partial file; on failure the temp
 * file is removed and a typed 'OUTPUT' error is thrown.
 */
export async function writeFileAtomic(
  file: string,
  data: Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let handle: fs.FileHandle | undefined;
  try {
    trackTempFile(tmp); // before it exists: a signal may come while the open is under way
    handle = await fs.open(tmp, 'wx');
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await handle.writeFile(data);
    } else {
      for await (const chunk of data as AsyncIterable<Uint8Array>) {
        // One write(2) may take fewer bytes than asked (a disk filling up does that before it answers
        // ENOSPC): loop until the whole chunk is out, or the file would be silently truncated.
        for (let o = 0; o < chunk.byteLength; ) {
          const { bytesWritten } = await handle.write(chunk, o, chunk.byteLength - o);
          if (bytesWritten <= 0) throw new Error(`no progress writing ${tmp}`);
          o += bytesWritten;
        }
      }
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    throwIfCancelled(file); // a cancelled command puts nothing into place
    await fs.rename(tmp, file);
  } catch (e) {
    await handle?.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw e instanceof PartscanError ? e : outputError(file, e);
  } finally {
    untrackTempFile(tmp);
  }
}

/**
 * Makes sure `dir` exists and is a writable directory; throws a typed 'OUTPUT' error if it is a file
 * or cannot be written.
 */
export async function ensureOutputDir(dir: string): Promise<void> {
  try {
    const st = await fs.stat(dir).catch(() => undefined);
    if (st && !st.isDirectory()) {
      throw new PartscanError('OUTPUT', `Output directory ${dir} is a file.`, {
        file: dir,
        remedy: 'give a directory path (it is created if missing)',
      });
    }
    await fs.mkdir(dir, { recursive: true });
    await fs.access(dir, (await import('node:fs')).constants.W_OK);
  } catch (e) {
    throw e instanceof PartscanError ? e : outputError(dir, e);
  }
}
