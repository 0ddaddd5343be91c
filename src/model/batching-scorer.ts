import type { Model, ScoreInput, ScoreOptions, ScoreResult } from './model.js';
import { parseOptions } from '../options/parse.js';
import { batchingScoreOptionsSchema, batchingScorerOptionsSchema } from '../options/schemas.js';
import { cancelledError } from '../util/abort.js';

/** Options of {@link BatchingScorer}. */
export interface BatchingScorerOptions {
  /** Most images per batch (default: the model's {@link Model.defaultScoreBatchSize}). */
  maxBatch?: number;
}

interface PendingRequest {
  input: ScoreInput;
  opts: ScoreOptions;
  /** Requests batch together only with the same post-processing options. */
  key: string;
  resolve: (r: ScoreResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Scores single images for many concurrent callers (an inspection service, several cameras) by
 * batching the requests that wait while a batch runs.
 *
 * `model.score(oneImage)` runs the backbone and the Mahalanobis distances for one image; per image,
 * batches are much cheaper (the Mahalanobis step streams every inverse covariance once per batch:
 * 125 MB at d=100, 3.8 GB at d=550). A scorer keeps one batch running at a time: a request that
 * arrives when it is idle starts at once (no added latency), and those that arrive meanwhile go out
 * together as the next batch, up to `maxBatch`. Each caller gets its own result or its own error: when
 * a batch fails (one undecodable image rejects a whole batch), its images are scored one by one so
 * the failure reaches only the request it belongs to.
 */
export class BatchingScorer {
  /** Most images per batch. */
  readonly maxBatch: number;
  private queue: PendingRequest[] = [];
  private running = false;
  /** Batches started so far (for monitoring). */
  batches = 0;

  constructor(
    /** The model every request is scored with. */
    readonly model: Model,
    opts: BatchingScorerOptions = {},
  ) {
    parseOptions(batchingScorerOptionsSchema, opts, 'BatchingScorer');
    this.maxBatch = opts.maxBatch ?? model.defaultScoreBatchSize;
  }

  /**
   * Scores one image; resolves with the same result as `model.score(input, opts)`.
   *
   * @example
   * const scorer = new BatchingScorer(model, { maxBatch: 8 });
   * // Concurrent requests (e.g. from an HTTP handler) share backbone batches.
   * const [a, b] = await Promise.all([scorer.score(bytesA), scorer.score(bytesB)]);
   */
  score(input: ScoreInput, opts: Omit<ScoreOptions, 'onProgress'> = {}): Promise<ScoreResult> {
    // Checked here, not when the batch runs, so a bad option rejects only its own request.
    try {
      parseOptions(batchingScoreOptionsSchema, opts, 'BatchingScorer.score');
    } catch (e) {
      return Promise.reject(e);
    }
    const { batchSize: _ignored, signal, ...post } = opts;
    if (signal?.aborted) return Promise.reject(cancelledError(signal, 'Scoring'));
    return new Promise<ScoreResult>((resolve, reject) => {
      // A cancelled request leaves the queue at once; one already in a batch is answered at once and
      // its result dropped (the other callers' batch runs on). The listener goes when the request settles,
      // so one signal can serve many requests.
      const onAbort = (): void => {
        this.queue = this.queue.filter((r) => r !== request);
        reject(cancelledError(signal!, 'Scoring'));
      };
      const settle = <T>(f: (v: T) => void) => (v: T): void => {
        signal?.removeEventListener('abort', onAbort);
        f(v);
      };
      const request: PendingRequest = { input, opts: post, key: JSON.stringify(post), resolve: settle(resolve), reject: settle(reject) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(request);
      this.startNext();
    });
  }

  /** Requests waiting for a batch. */
  get waiting(): number {
    return this.queue.length;
  }

  private startNext(): void {
    if (this.running || this.queue.length === 0) return;
    // The oldest request and the next ones with the same options, in arrival order.
    const key = this.queue[0]!.key;
    const batch: PendingRequest[] = [];
    const rest: PendingRequest[] = [];
    for (const r of this.queue) (r.key === key && batch.length < this.maxBatch ? batch : rest).push(r);
    this.queue = rest;
    this.running = true;
    this.batches++;
    void this.run(batch).finally(() => {
      this.running = false;
      this.startNext();
    });
  }

  private async run(batch: PendingRequest[]): Promise<void> {
    const opts = { ...batch[0]!.opts, batchSize: batch.length };
    try {
      const results = await this.model.score(
        batch.map((r) => r.input),
        opts,
      );
      batch.forEach((r, i) => r.resolve(results[i]!));
    } catch (e) {
      if (batch.length === 1) {
        batch[0]!.reject(e);
        return;
      }
      for (const r of batch) {
        try {
          r.resolve(await this.model.score(r.input, r.opts));
        } catch (err) {
          r.reject(err);
        }
      }
    }
  }
}
