/**
 * The queue modules load BullMQ and ioredis, which are optional peer dependencies of partscan: a site
 * that never uses a queue does not install them. This is the one way the queue modules are loaded, so
 * a missing package is a typed 'QUEUE' error naming the install command, not a bare module error.
 */
import { PartscanError } from '../errors.js';

/** The packages the queue needs beside partscan. */
export const QUEUE_PACKAGES = ['bullmq', 'ioredis'] as const;

/** Runs `load` (a dynamic import of a queue module), turning a missing bullmq / ioredis into a typed error. */
export async function loadQueueModule<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const missing = QUEUE_PACKAGES.find((p) => new RegExp(`['"]${p}['"]`).test((e as Error).message ?? ''));
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && missing) {
      throw new PartscanError('QUEUE', `The queue commands need the packages bullmq and ioredis, and ${missing} is not installed.`, {
        remedy: 'npm install bullmq ioredis (in the project that uses partscan)',
        cause: e,
      });
    }
    throw e;
  }
}
