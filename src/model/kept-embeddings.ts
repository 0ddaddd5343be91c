/**
 * The training embeddings the fit keeps, within a memory budget, so that the leave-one-out contamination
 * check needs no second backbone pass (see `leaveOneOutScoresFromEmbeddings`).
 */
import os from 'node:os';
import { z } from 'zod';
import { PartscanError, type PartscanWarning } from '../errors.js';

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

/**
 * The fit's decision to keep its training embeddings for the leave-one-out check, and the warning when
 * they do not fit the budget (the check then runs the backbone a second time).
 */
export class KeptEmbeddings {
  private readonly budget: number;
  private decided = false;
  private tooLarge: number | undefined;

  /** `requested`: the fit's `contaminationMemory` option (see {@link keptEmbeddingBudget}). */
  constructor(requested: number | undefined) {
    this.budget = keptEmbeddingBudget(requested);
  }

  /** False when the budget is 0: the caller asked for the second pass, even where keeping would cost nothing. */
  get allowed(): boolean {
    return this.budget > 0;
  }

  /**
   * Once, at the first batch of a streaming fit: an empty [P, n, d] buffer when n images' embeddings
   * fit the budget, else undefined (and the fit will warn). Later calls return undefined.
   */
  start(P: number, n: number, d: number): { data: Float32Array; capacity: number; count: number; P: number; d: number } | undefined {
    if (this.decided) return undefined;
    this.decided = true;
    const bytes = P * n * d * 4;
    if (bytes <= this.budget) return { data: new Float32Array(P * n * d), capacity: n, count: 0, P, d };
    this.tooLarge = bytes;
    return undefined;
  }

  /** The 'LOO_SECOND_PASS' warning, when the embeddings were too large to keep. */
  secondPassWarning(): PartscanWarning | undefined {
    if (this.tooLarge === undefined) return undefined;
    const gib = (b: number): string => (b / 2 ** 30).toFixed(2);
    return {
      code: 'LOO_SECOND_PASS',
      message: `The training embeddings (${gib(this.tooLarge)} GiB) exceed the leave-one-out memory budget (${gib(this.budget)} GiB): the contamination check ran the backbone over the training images a second time (slower). Raise the budget (contaminationMemory / --loo-memory) if the machine has the memory.`,
    };
  }
}
