/**
 * The result records of score jobs: what a worker writes to `<run dir>/.partscan-queue/<job id>.json`
 * and the producer reads back. The run folder is shared storage, so a record is input like any other:
 * a garbled or forged one must fail only its own image, never the run, and must not be taken for a
 * result.
 *
 * - Authenticity: the producer draws a secret per run and keeps it; each job carries only its own key,
 *   HMAC-SHA256(secret, job id). The worker signs the record (job id, result or failure, worker) with
 *   that key; the producer recomputes the key from its secret and the job id it expects and compares in
 *   constant time. Someone who can write the run folder but does not know a job's key cannot forge its
 *   record, nor move one job's record to another job (the id is signed, and the key differs).
 * - Shape: the record is then validated with zod: a result with finite scores, a known verdict and
 *   output names that stay inside the run folder, or a failure with a typed code.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { imageResultSchema } from '../export/results.js';
import { PartscanError } from '../errors.js';
import { readRegularFile } from '../util/regular-file.js';
import type { ScoreJobRecord } from './jobs.js';

/** A record file larger than this is refused unread (a record is a few KB; regions are capped by the scorer). */
export const MAX_RECORD_BYTES = 4 * 1024 * 1024;

/** The key a job signs its record with: HMAC-SHA256(run secret, job id), hex. */
export function recordKey(runSecret: Uint8Array, jobId: string): string {
  return createHmac('sha256', runSecret).update(jobId).digest('hex');
}

/** The signed part of a record, in a fixed key order. */
function signedText(r: { jobId: unknown; result?: unknown; failure?: unknown; worker: unknown }): string {
  return JSON.stringify({ jobId: r.jobId, ...(r.result !== undefined ? { result: r.result } : {}), ...(r.failure !== undefined ? { failure: r.failure } : {}), worker: r.worker });
}

function mac(key: string, text: string): Buffer {
  return createHmac('sha256', Buffer.from(key, 'hex')).update(text).digest();
}

/** The record file's text: the record and its `mac` under `key`. */
export function signRecord(record: ScoreJobRecord, key: string): string {
  return JSON.stringify({ ...JSON.parse(signedText(record)), mac: mac(key, signedText(record)).toString('hex') });
}

/** An output file name inside the run folder: no separators' escape, no parent, not absolute. */
const outputName = z
  .string()
  .max(300)
  .refine((p) => !p.startsWith('/') && !p.includes('\\') && !p.split('/').some((s) => s === '..' || s === '') && !p.includes('\0'), 'must be a file name inside the run folder');

const recordSchema = z.strictObject({
  jobId: z.string().max(200),
  worker: z.string().max(300),
  mac: z.string().regex(/^[0-9a-f]{64}$/),
  result: imageResultSchema
    .extend({
      outputs: z.strictObject({ overlay: outputName.optional(), heatmap: outputName.optional(), mask: outputName.optional(), original: outputName.optional() }).optional(),
    })
    .optional(),
  failure: z.strictObject({ file: z.string().max(4096), code: z.string().regex(/^[A-Z_]{3,40}$/), message: z.string().max(10_000) }).optional(),
});

/**
 * Reads, authenticates and validates the record of job `jobId` (signed with `key`). Returns the record,
 * or throws a typed 'QUEUE' error saying why it was rejected (for the run's failures).
 */
export async function readRecord(file: string, jobId: string, key: string): Promise<ScoreJobRecord> {
  const reject = (why: string) =>
    new PartscanError('QUEUE', `The result record of job ${jobId} was rejected: ${why}.`, {
      file,
      remedy: 'score the image again; if records keep being rejected, check who else writes into the run folder',
    });
  let raw: unknown;
  try {
    const bytes = await readRegularFile(file, (kind) => reject(`it is ${kind}`));
    if (bytes.length > MAX_RECORD_BYTES) throw reject(`${bytes.length} bytes (at most ${MAX_RECORD_BYTES})`);
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw e instanceof PartscanError ? e : reject(`it is not readable JSON (${(e as Error).message.slice(0, 80)})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw reject('it is not a JSON object');
  const r = raw as Record<string, unknown>;
  let expected: Buffer;
  try {
    expected = mac(key, signedText(r as never));
  } catch {
    throw reject('it cannot be serialised');
  }
  const given = typeof r.mac === 'string' && /^[0-9a-f]{64}$/.test(r.mac) ? Buffer.from(r.mac, 'hex') : Buffer.alloc(0);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw reject('its signature does not match (forged, altered, or another job\'s record)');
  if (r.jobId !== jobId) throw reject(`it names job ${String(r.jobId).slice(0, 60)}`);
  const parsed = recordSchema.safeParse(r);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw reject(`${i.path.join('.') || '(record)'}: ${i.message}`);
  }
  if ((r.result === undefined) === (r.failure === undefined)) throw reject('it must hold a result or a failure');
  const { mac: _m, ...record } = r;
  return record as unknown as ScoreJobRecord;
}
