import { createHash } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';

/**
 * Reading a path that may name a special file. Opening a FIFO for reading blocks until a writer comes
 * (for ever, usually), and a device such as /dev/zero never ends: a path from a user, a list file or a
 * queue job that names one would hang the command. Every file partscan reads by path (images, models,
 * lists, weights, ONNX graphs) is therefore opened without blocking (O_NONBLOCK: an open FIFO returns
 * at once) and checked with fstat on the open descriptor — no window between a check and the open in
 * which the path could be swapped — and anything but a regular file or a directory is refused with the
 * caller's typed error before a byte is read.
 */

/** What a special file is, in words ('a FIFO (named pipe)'...), or undefined for a regular file or a directory. */
export function specialFileKind(st: Stats): string | undefined {
  if (st.isFile() || st.isDirectory()) return undefined;
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Opens `file` for reading without blocking and returns the handle with its fstat; a special file is
 * closed again and `refuse(kind)` thrown. Errors of the open itself (ENOENT, EACCES, ELOOP…) are thrown
 * as they are, for the caller to translate.
 */
export async function openRegular(file: string, refuse: (kind: string) => Error): Promise<{ handle: fs.FileHandle; stat: Stats }> {
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    const kind = specialFileKind(stat);
    if (kind) throw refuse(kind);
    return { handle, stat };
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw e;
  }
}

function isDirectoryError(file: string): Error {
  return Object.assign(new Error(`EISDIR: illegal operation on a directory, read '${file}'`), { code: 'EISDIR' });
}

/** Reads a whole regular file (see {@link openRegular}); a directory gives EISDIR as fs.readFile does. */
export async function readRegularFile(file: string, refuse: (kind: string) => Error): Promise<Buffer> {
  const { handle, stat } = await openRegular(file, refuse);
  try {
    if (stat.isDirectory()) throw isDirectoryError(file);
    return await handle.readFile();
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** sha256 (hex) of a whole regular file's bytes, streamed (see {@link openRegular}); a directory gives EISDIR. */
export async function regularFileSha256(file: string, refuse: (kind: string) => Error): Promise<string> {
  const { handle, stat } = await openRegular(file, refuse);
  try {
    if (stat.isDirectory()) throw isDirectoryError(file);
    const hash = createHash('sha256');
    for await (const chunk of handle.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
    return hash.digest('hex');
  } finally {
    await handle.close().catch(() => undefined);
  }
}
