/**
 * The QA review file (`review.json`, format `partscan-review/1`): the labels a reviewer gave the parts of
 * one scored run in the HTML report, for `calibrate --review` and `fit --resume --review`. The report
 * writes it (src/report/review-controls.ts); integrators may write it too ({@link buildReview}).
 *
 * A review file is hostile input: it comes from a browser's downloads, a mail, a USB stick. It is read
 * as a regular file of bounded size, parsed as JSON, and validated by one zod schema with caps on every
 * array and string; every violation is a typed 'REVIEW' error naming the field. What it names (image
 * files, the model) is checked where it is used (review-images.ts, model/review-join.ts).
 *
 * The schema is documented in docs/REVIEW.md; docs/schemas/review.schema.json is its JSON Schema, generated from
 * {@link reviewFileSchema} (a test keeps the two equal).
 */

import { z } from 'zod';
import { PartscanError } from '../errors.js';
import { openRegular } from '../util/regular-file.js';

/** The format tag of this version. Readers refuse other tags. */
export const REVIEW_FORMAT = 'partscan-review/1';

/** Caps on a review file: its bytes, its items, a path's length. */
export const REVIEW_LIMITS = {
  /** Bytes of a review file (64 MiB: 100 000 items of long paths fit). */
  bytes: 64 * 2 ** 20,
  /** Items of one review. */
  items: 100_000,
  /** Characters of one image path. */
  path: 4096,
} as const;

/** A QA label. */
export type ReviewLabel = 'good' | 'defect';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 in lowercase hex');
const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const isoTime = z.string().max(64).refine((t) => !Number.isNaN(Date.parse(t)), 'expected an ISO 8601 time');

/** One reviewed part. */
export const reviewItemSchema = z.object({
  file: z
    .string()
    .min(1)
    .max(REVIEW_LIMITS.path)
    .refine((f) => !f.includes('\0'), 'must not hold a NUL character')
    .describe("The part's source path, as the run recorded it (results.json → results[].file)."),
  label: z.enum(['good', 'defect']).describe("The reviewer's label."),
  verdict: z.enum(['OK', 'NG', 'UNCERTAIN']).optional().describe('The verdict the run gave the part.'),
  imageScore: finite.optional().describe('The image score the run recorded; with mapMax and mapMin, the part is not scored again.'),
  mapMax: finite.optional().describe("The raw anomaly map's maximum the run recorded."),
  mapMin: finite.optional().describe("The raw anomaly map's minimum the run recorded."),
  reviewedAt: isoTime.optional().describe('When the label was given (ISO 8601).'),
});

/** The whole file. Unknown keys are ignored (later minor additions), known ones are checked. */
export const reviewFileSchema = z.object({
  format: z.literal(REVIEW_FORMAT).describe('Format tag and version.'),
  model: z
    .object({
      sha256: sha256Hex.nullable().describe("The scoring identity of the model that scored the run (results.json → model.sha256); null for runs that did not record it: every part is then scored again."),
      path: z.string().max(REVIEW_LIMITS.path).optional().describe('The model file the run named, for messages.'),
    })
    .describe('The model that scored the reviewed run.'),
  run: z
    .object({
      id: z.string().min(1).max(128).describe('The run: a digest of its results, the key the report stores decisions under.'),
      createdAt: z.string().max(64).optional().describe('When the run was scored.'),
      parts: z.number().int().min(0).optional().describe('Parts in the run.'),
    })
    .nullable()
    .describe('The reviewed run.'),
  exportedAt: isoTime.optional().describe('When the review was exported.'),
  items: z.array(reviewItemSchema).max(REVIEW_LIMITS.items).describe('One entry per reviewed part.'),
});

/**
 * The JSON Schema (draft 2020-12) of a review file, from {@link reviewFileSchema}: what
 * docs/schemas/review.schema.json holds. Checks the schema cannot express (finite numbers, parseable times, no
 * NUL in paths) are in the zod schema only.
 */
export function reviewJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(reviewFileSchema, { target: 'draft-2020-12', io: 'input' }) as Record<string, unknown>;
  const { $schema, ...rest } = schema;
  return { $schema, $id: 'urn:partscan:schema:review-1', title: `partscan QA review (${REVIEW_FORMAT})`, ...rest };
}

/** A reviewed part (see {@link reviewItemSchema}). */
export type ReviewItem = z.infer<typeof reviewItemSchema>;
/** A QA review (see {@link reviewFileSchema} and docs/REVIEW.md). */
export type ReviewFile = z.infer<typeof reviewFileSchema>;

function reviewError(source: string, what: string, remedy = 'export the review again from the report (the "Export review.json" button)'): PartscanError {
  return new PartscanError('REVIEW', `${source}: ${what}.`, { ...(source.startsWith('<') ? {} : { file: source }), remedy });
}

/** The field path of a zod issue, as `items[3].label`. */
function fieldOf(path: readonly PropertyKey[]): string {
  return path.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)), '') || '(root)';
}

/**
 * Validates a parsed review against {@link reviewFileSchema}. Throws a typed 'REVIEW' error naming the
 * first offending fields (`items[3].label: …`), or saying which format a file of another version is.
 * `source` names the review in messages (a file path, or e.g. '<review>').
 */
export function parseReview(json: unknown, source = '<review>'): ReviewFile {
  const format = (json as { format?: unknown } | null)?.format;
  if (json && typeof json === 'object' && typeof format === 'string' && format !== REVIEW_FORMAT && format.startsWith('partscan-review/')) {
    throw reviewError(source, `the review is in format ${format.slice(0, 40)}; this partscan reads ${REVIEW_FORMAT}`, 'use the partscan version that wrote the report, or export the review again from a report of this version');
  }
  if (Array.isArray((json as { items?: unknown } | null)?.items) && (json as { items: unknown[] }).items.length > REVIEW_LIMITS.items) {
    throw reviewError(source, `the review has ${(json as { items: unknown[] }).items.length} items, more than the ${REVIEW_LIMITS.items} allowed`, 'split the review into several files');
  }
  const parsed = reviewFileSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${fieldOf(i.path)}: ${i.message}`);
    throw reviewError(source, `not a valid ${REVIEW_FORMAT} review (${issues.join('; ')}${parsed.error.issues.length > 3 ? `; ${parsed.error.issues.length - 3} more` : ''})`);
  }
  return parsed.data;
}

/**
 * Reads and validates a review file: a regular file (a FIFO or device is refused unread) of at most
 * {@link REVIEW_LIMITS}.bytes, JSON, {@link parseReview}. Every failure is a typed 'REVIEW' error.
 *
 * @example
 * const review = await readReviewFile('review.json');
 * console.log(review.items.filter((i) => i.label === 'defect').length);
 */
export async function readReviewFile(file: string): Promise<ReviewFile> {
  let text: string;
  try {
    const { handle, stat } = await openRegular(file, (kind) => reviewError(file, `it is ${kind}, not a review file`, 'give the path of the review.json the report exported'));
    try {
      if (stat.isDirectory()) throw reviewError(file, 'it is a directory', 'give the path of the review.json the report exported');
      if (stat.size > REVIEW_LIMITS.bytes) throw reviewError(file, `the file is ${stat.size} bytes, more than the ${REVIEW_LIMITS.bytes} allowed`, 'split the review into several files');
      const bytes = Buffer.alloc(stat.size);
      let off = 0;
      while (off < bytes.length) {
        const { bytesRead } = await handle.read(bytes, off, bytes.length - off, off);
        if (bytesRead <= 0) break;
        off += bytesRead;
      }
      text = bytes.subarray(0, off).toString('utf8');
    } finally {
      await handle.close().catch(() => undefined);
    }
  } catch (e) {
    if (e instanceof PartscanError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw reviewError(file, `cannot read the review (${code ?? String(e)})`, 'check the path of the review.json');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw reviewError(file, 'the file is not JSON');
  }
  return parseReview(json, file);
}

/** What {@link buildReview} takes about one part of a run (an ImageResult of results.json has it all). */
export interface ReviewedPart {
  /** The part's source path, as the run recorded it. */
  file: string;
  /** The run's verdict. */
  verdict?: 'OK' | 'NG' | 'UNCERTAIN';
  /** The run's image score. */
  imageScore?: number;
  /** The run's raw map maximum. */
  mapMax?: number;
  /** The run's raw map minimum. */
  mapMin?: number;
}

/**
 * A review of a run in code, as the report's export button writes it: the parts given labels, with what
 * the run recorded about them. `model` is the run manifest's model (`sha256` as recorded, or null).
 *
 * @example
 * const run = await readRunManifest('runs/0042');
 * const labels = new Map([[run.results[0].file, 'defect' as const]]);
 * const review = buildReview(run.model, { id: 'run-0042' }, run.results, labels);
 * await calibrate(model, { review });
 */
export function buildReview(
  model: { sha256?: string | null; path?: string },
  run: ReviewFile['run'],
  parts: readonly ReviewedPart[],
  labels: ReadonlyMap<string, ReviewLabel>,
  reviewedAt = new Date().toISOString(),
): ReviewFile {
  const items: ReviewItem[] = [];
  for (const p of parts) {
    const label = labels.get(p.file);
    if (!label) continue;
    items.push({
      file: p.file,
      label,
      ...(p.verdict ? { verdict: p.verdict } : {}),
      ...(p.imageScore !== undefined ? { imageScore: p.imageScore } : {}),
      ...(p.mapMax !== undefined ? { mapMax: p.mapMax } : {}),
      ...(p.mapMin !== undefined ? { mapMin: p.mapMin } : {}),
      reviewedAt,
    });
  }
  return parseReview({ format: REVIEW_FORMAT, model: { sha256: model.sha256 ?? null, ...(model.path ? { path: model.path } : {}) }, run, exportedAt: reviewedAt, items });
}
