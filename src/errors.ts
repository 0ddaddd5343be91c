/**
 * Typed errors. Every error partscan throws on purpose is a {@link PartscanError}: it carries a stable
 * `code` (for programs), the offending `file` where there is one, and a `remedy` (for people).
 * Messages follow one shape: what was wrong, with which file, and what to do.
 */

/** Stable machine-readable error codes. */
export type PartscanErrorCode =
  | 'IMAGE_DECODE' // corrupt, truncated, empty or non-image file
  | 'IMAGE_UNSUPPORTED' // a format sharp cannot read
  | 'IMAGE_TOO_LARGE' // decoded pixel count above the cap (decompression bomb guard)
  | 'IMAGE_TOO_SMALL'
  | 'INVALID_TENSOR' // NaN/Inf or wrong shape in a user-supplied tensor
  | 'INVALID_FRAME' // a raw frame whose fields disagree (data too short for width × height × channels, bad stride)
  | 'WEIGHTS_FORMAT' // bad safetensors header, dtype, offsets
  | 'WEIGHTS_MISSING_KEY'
  | 'WEIGHTS_DOWNLOAD'
  | 'WEIGHTS_CHECKSUM'
  | 'ONNX_FORMAT'
  | 'ONNX_TENSOR_NOT_FOUND'
  | 'BACKBONE_UNKNOWN'
  | 'BACKBONE_MISMATCH'
  | 'MODEL_FORMAT' // wrong magic, truncated, corrupted model file
  | 'MODEL_VERSION' // other major version
  | 'MODEL_CHECKSUM'
  | 'DATASET' // empty or malformed dataset
  | 'TRAINING_SET' // unusable training images (constant, too few)
  | 'MASK' // ROI or ground-truth mask problems
  | 'OUTPUT' // output path not writable, is a file, disk full
  | 'OPTIONS' // invalid options
  | 'CANCELLED' // cancelled by an AbortSignal (API) or by SIGINT, SIGTERM, SIGHUP (CLI)
  | 'QUEUE' // job queue: Redis unreachable, malformed job, job failed on a worker, bullmq/ioredis not installed
  | 'THRESHOLD'
  | 'REVIEW'; // a QA review file (review.json) that is malformed, too large, of another model, or names files outside the allowed roots or missing

/** Optional details of a {@link PartscanError}, given to its constructor. */
export interface PartscanErrorInit {
  /** The file (or directory) the problem is about, when there is one. */
  file?: string;
  /** What the user should do about it. */
  remedy?: string;
  /** The underlying error. */
  cause?: unknown;
}

/** Base class of all errors partscan throws deliberately. */
export class PartscanError extends Error {
  /** Stable code, for programs. */
  readonly code: PartscanErrorCode;
  /** The file the problem is about, if any. */
  readonly file: string | undefined;
  /** What to do about it. */
  readonly remedy: string | undefined;

  constructor(code: PartscanErrorCode, message: string, init: PartscanErrorInit = {}) {
    const parts = [message];
    if (init.file !== undefined && !message.includes(init.file)) parts.push(`(file: ${init.file})`);
    if (init.remedy) parts.push(`— ${init.remedy}`);
    super(parts.join(' '), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = 'PartscanError';
    this.code = code;
    this.file = init.file;
    this.remedy = init.remedy;
  }
}

/** A non-fatal finding (duplicate training image, drift, few images...). */
export interface PartscanWarning {
  /** Stable code, for programs. */
  code: string;
  /** Human-readable explanation including what to do. */
  message: string;
  /** The file the warning is about, if any. */
  file?: string;
}

/**
 * True when `e` is a {@link PartscanError}, optionally with the given code.
 *
 * @example
 * try {
 *   await model.score('part.png');
 * } catch (e) {
 *   if (isPartscanError(e, 'IMAGE_DECODE')) console.warn(e.message, e.remedy);
 *   else throw e;
 * }
 */
export function isPartscanError(e: unknown, code?: PartscanErrorCode): e is PartscanError {
  return e instanceof PartscanError && (code === undefined || e.code === code);
}
