/**
 * The job payloads that travel through Redis between a producer and `partscan worker`s, their zod
 * schemas, and the record a worker writes per finished job. A payload is hostile input like an image
 * or a model file (anyone who can write to the Redis instance can enqueue), so a worker validates
 * every job against these schemas before it touches a file, and rejects it with a typed 'QUEUE' error.
 */

import path from 'node:path';
import { z } from 'zod';
import { PartscanError } from '../errors.js';
import type { ImageResult } from '../export/results.js';
import type { ScoreRunFailure } from '../export/score-run.js';

/** Queue name used when none is given. */
export const DEFAULT_QUEUE_NAME = 'partscan';

/** Largest encoded image a job may carry inline (bytes); larger images go by path on shared storage. */
export const MAX_INLINE_IMAGE_BYTES = 32 * 1024 * 1024;

/** Job names (BullMQ's `job.name`), one per kind of work. */
export const JOB_SCORE = 'score';
export const JOB_FIT = 'fit';

/** Name of the folder inside a run directory where workers drop one result record per job. */
export const RECORDS_DIR = '.partscan-queue';

const absPath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => path.isAbsolute(p) && !p.includes('\0'), { message: 'must be an absolute path' });

/** A file name stem: no separators, no '..', nothing a shell or file system treats specially. */
const stem = z
  .string()
  .regex(/^[\w.-]{1,200}$/, { message: 'must be a plain file-name stem' })
  .refine((s) => s !== '.' && s !== '..', { message: 'must be a plain file-name stem' });

const modelRef = z.strictObject({
  /** Model file on storage every worker can read. */
  path: absPath,
  /** sha256 (hex) of the whole model file: a worker refuses a file that differs. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, { message: 'must be 64 lowercase hex digits' }),
});

const imageRef = z.union([
  z.strictObject({ path: absPath }),
  z.strictObject({ bytes: z.base64().max(Math.ceil(MAX_INLINE_IMAGE_BYTES / 3) * 4) }),
]);

/** Payload of a score job: one image against one model, optionally exported into a run directory. */
export const scoreJobSchema = z.strictObject({
  model: modelRef,
  image: imageRef,
  /** The name recorded as the result's `file` (default: the image path, or '<buffer>'). */
  file: z.string().max(4096).optional(),
  /** Post-processing options of Model.score. */
  options: z
    .strictObject({
      minArea: z.int().min(0).max(1e9).optional(),
      openRadius: z.int().min(0).max(64).optional(),
      closeRadius: z.int().min(0).max(64).optional(),
    })
    .default({}),
  /** When present, the result record (and the exports asked for) are written into `dir`. */
  run: z
    .strictObject({
      dir: absPath,
      stem,
      exports: z
        .strictObject({
          overlay: z.boolean().optional(),
          heatmap: z.boolean().optional(),
          mask: z.boolean().optional(),
          original: z.boolean().optional(),
        })
        .default({}),
      maxSide: z.int().min(16).max(16384).optional(),
      /** This job's key for signing its result record (HMAC of the job id under the producer's run secret; see records.ts). */
      recordKey: z.string().regex(/^[0-9a-f]{64}$/, { message: 'must be 64 lowercase hex digits' }),
    })
    .optional(),
});

/** Payload of a fit job: a data set on shared storage and fit options give a model file. */
export const fitJobSchema = z.strictObject({
  /** Data set root, folder or list file; or the image files. */
  data: z.union([absPath, z.array(absPath).min(1).max(10_000_000)]),
  /** Model file to write (atomically). */
  out: absPath,
  /** The fit options a worker accepts (the rest of FitOptions are not serialisable or not for workers). */
  options: z
    .strictObject({
      /** Registry backbone name, or an absolute path to an ONNX backbone file. */
      backbone: z.string().min(1).max(4096).optional(),
      /** Feature layers of the backbone. */
      layers: z.array(z.string().min(1).max(200)).min(1).max(8).optional(),
      /** Backbone weights (.safetensors) on shared storage. */
      weights: absPath.optional(),
      /** Embedding size d (FitOptions.channels). */
      channels: z.int().min(1).max(4096).optional(),
      /** Network input side in pixels (FitOptions.imageSize). */
      imageSize: z.int().min(32).max(4096).optional(),
      /** Seed of the random channel choice and the calibration split. */
      seed: z.int().min(0).max(2 ** 31).optional(),
      /** Share of the good images held out for calibration (FitOptions.calibrationSplit). */
      calibrationSplit: z.number().min(0).lt(1).optional(),
      /** Calibration images (folder or list file) instead of a held-out share. */
      calibration: absPath.optional(),
      /** Images per backbone batch. */
      batchSize: z.int().min(1).max(1024).optional(),
      /** Region-of-interest mask image. */
      roi: absPath.optional(),
      /** Uncertainty band for verdicts, in normalised units (FitOptions.band). */
      band: z
        .strictObject({
          /** Normalised scores below are OK. */
          low: z.number().min(0).max(1),
          /** Normalised scores above are NG; between the two, UNCERTAIN. */
          high: z.number().min(0).max(1),
        })
        .optional(),
      /** Native-resolution tiling (FitOptions.tile). */
      tile: z
        .strictObject({
          /** Tile side in pixels. */
          size: z.int().min(16).max(16384),
          /** Overlap between neighbouring tiles in pixels. */
          overlap: z.int().min(0).max(16384),
        })
        .optional(),
      /** Put the backbone graph in the model file (default true). */
      embedBackbone: z.boolean().optional(),
      /** Leave out the statistics `fit --resume` needs (smaller file). */
      compact: z.boolean().optional(),
    })
    .default({}),
});

/** A score job's payload (as enqueued). */
export type ScoreJobData = z.input<typeof scoreJobSchema>;
/** A fit job's payload (as enqueued). */
export type FitJobData = z.input<typeof fitJobSchema>;

/** What a worker returns for a score job, and writes to `<run dir>/.partscan-queue/<job id>.json`. */
export interface ScoreJobRecord {
  /** The BullMQ job id. */
  jobId: string;
  /** The result, as it appears in results.json (output paths relative to the run directory). */
  result?: ImageResult;
  /** Or why the image could not be scored (a typed image error: it is not retried). */
  failure?: ScoreRunFailure;
  /** Which worker did it (host:pid), for monitoring. */
  worker: string;
}

/** What a worker returns for a fit job. */
export interface FitJobResult {
  /** The model file written. */
  model: string;
  /** sha256 of the model file, ready for score jobs. */
  sha256: string;
  /** Images the statistics were fitted on. */
  images: number;
  /** Images used for calibration. */
  calibrationImages: number;
  /** Fit warnings (messages). */
  warnings: string[];
  /** Seconds the fit and save took on the worker. */
  seconds: number;
  /** Which worker did it (host:pid). */
  worker: string;
}

/** Job ids a worker accepts: they name result files, so they must be plain names. */
export const JOB_ID_PATTERN = /^[\w.-]{1,160}$/;

/** Validates a payload; throws a typed 'QUEUE' error naming the first bad field. */
export function parseJob<S extends z.ZodType>(schema: S, data: unknown, jobId: string | undefined): z.output<S> {
  const parsed = schema.safeParse(data);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.length ? issue.path.join('.') : '(payload)';
  throw new PartscanError('QUEUE', `Job ${jobId ?? '?'} is malformed: ${field}: ${issue.message}.`, {
    remedy: 'enqueue jobs with partscan (scoreOnQueue / fitOnQueue or `partscan score|fit --queue`), which writes valid payloads',
  });
}

/** File of a job's result record inside a run directory. */
export function recordFile(runDir: string, jobId: string): string {
  return path.join(runDir, RECORDS_DIR, `${jobId}.json`);
}
