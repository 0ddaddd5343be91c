/**
 * Cancellation of library calls by an `AbortSignal` (the API's counterpart of the CLI's signal
 * handling in cancellation.ts). Long operations check their signal between batches, so an abort takes
 * effect within one batch; they write nothing until their work is done (or write atomically), so a
 * cancelled call leaves nothing half-written.
 */
import { PartscanError } from '../errors.js';

/** The typed 'CANCELLED' error of an aborted operation (`what`: e.g. 'fit', 'scoring'). */
export function cancelledError(signal: AbortSignal, what: string): PartscanError {
  const reason = signal.reason instanceof Error ? signal.reason.message : typeof signal.reason === 'string' ? signal.reason : undefined;
  return new PartscanError('CANCELLED', `${what} was cancelled${reason && reason !== 'This operation was aborted' ? ` (${reason})` : ''}: nothing was written.`, {
    remedy: 'run it again to produce the output',
    cause: signal.reason,
  });
}

/** Throws the typed 'CANCELLED' error when `signal` has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw cancelledError(signal, what);
}
