/**
 * Memory budget for the training embeddings the fit keeps so that the leave-one-out contamination
 * check needs no second backbone pass (see `leaveOneOutScoresFromEmbeddings`).
 */
import os from 'node:os';
import { z } from 'zod';
import { PartscanError } from '../errors.js';

/** Share of the machine's RAM the kept embeddings may take by default. */
export const KEPT_EMBEDDING_RAM_SHARE = 1 / 8;

const budgetSchema = z.number().finite().nonnegative();

/**
 * Bytes the fit may spend on keeping the training embeddings for the leave-one-out check:
 * `requested` (bytes; 0 = never keep them, always the second pass) or {@link KEPT_EMBEDDING_RAM_SHARE}
 * of total RAM. An invalid value is an 'OPTIONS' error naming `contaminationMemory`.
 */
export function keptEmbeddingBudget(requested: number | undefined): number {
  if (requested === undefined) return Math.floor(os.totalmem() * KEPT_EMBEDDING_RAM_SHARE);
  const parsed = budgetSchema.safeParse(requested);
  if (!parsed.success) {
    throw new PartscanError('OPTIONS', `contaminationMemory must be a number of bytes ≥ 0, got ${String(requested)}.`, {
      remedy: 'give e.g. 2e9 (2 GB), or 0 to always run the leave-one-out check as a second backbone pass',
    });
  }
  return parsed.data;
}
