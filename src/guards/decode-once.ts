/**
 * The fit's single decode: each training image is read and decoded once, and that decode feeds both
 * the training-set guards (fingerprint: hashes, perceptual hash, thumbnail, image statistics) and the
 * backbone (the preprocessed tensor). Only images whose decode the preprocessing would convert
 * differently (16-bit, alpha, CMYK or other colour spaces, an ICC profile, EXIF rotation) are
 * preprocessed from their bytes again.
 */
import { preprocessBatch, preprocessPixelsInto } from '../preprocess/preprocess.js';
import type { PreprocessOptions } from '../types.js';
import { decodeAndFingerprint, type DecodedFingerprint, type ImageFingerprint } from './fingerprint.js';
import { checkTrainingSet, type TrainingSetReport } from './training-set.js';

/** Images decoded at once; sharp parallelises inside each decode as well. */
const CONCURRENCY = 4;

/** Whether the preprocessing of these decoded pixels equals the preprocessing of the file. */
export function preprocessFromPixels(d: Pick<DecodedFingerprint, 'info' | 'hasProfile' | 'pixels'>): boolean {
  const { info, pixels } = d;
  // sharp's raw output of a gray file may already be three identical channels: both are plain.
  const plainColour = (pixels.channels === 3 && (info.space === 'srgb' || info.space === 'b-w')) || (pixels.channels === 1 && info.space === 'b-w');
  return plainColour && info.bitDepth === 8 && !info.hasAlpha && !d.hasProfile && (info.orientation ?? 1) === 1;
}

/**
 * Fingerprints `files` and writes their preprocessed tensors into `tensor` ([N, 3, S, S], S = crop or
 * image size), decoding each file once. Returns the fingerprints in input order, and how many images
 * needed a second decode. Decode errors are thrown as by `preprocessBatch`.
 */
export async function fingerprintAndPreprocess(
  files: readonly string[],
  opts: PreprocessOptions,
  tensor: Float32Array,
): Promise<{ fingerprints: ImageFingerprint[]; redecoded: number }> {
  const size = opts.cropSize ?? opts.imageSize;
  const per = 3 * size * size;
  const fingerprints: ImageFingerprint[] = new Array(files.length);
  let redecoded = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      const d = await decodeAndFingerprint(files[i]!, { maxPixels: opts.maxPixels });
      fingerprints[i] = d.fingerprint;
      const out = tensor.subarray(i * per, (i + 1) * per);
      if (preprocessFromPixels(d)) {
        await preprocessPixelsInto({ ...d.pixels, channels: d.pixels.channels as 1 | 3 }, opts, out);
      } else {
        redecoded++;
        out.set((await preprocessBatch([d.bytes.data], opts)).tensor);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
  return { fingerprints, redecoded };
}

/**
 * The training-set guards applied batch by batch while the fit runs (images fingerprinted by
 * {@link fingerprintAndPreprocess}). Rejections — constant images, later copies of exact duplicates —
 * depend only on the images before, so each batch's are final when it arrives; they are decided by
 * `checkTrainingSet` itself on the images so far. {@link LoopGuards.report} is the full check
 * (near-duplicates, size and colour-mode outliers) once all images are in.
 */
export class LoopGuards {
  private readonly fingerprints: ImageFingerprint[] = [];

  /** Adds a batch's fingerprints (in `files` order); returns the indices of its images that stay. */
  admit(files: readonly string[], fingerprints: readonly ImageFingerprint[]): number[] {
    this.fingerprints.push(...fingerprints);
    const out = new Set(checkTrainingSet(this.fingerprints, { nearDuplicateDistance: 0 }).rejected.map((r) => r.file));
    return files.map((f, k) => (out.has(f) ? -1 : k)).filter((k) => k >= 0);
  }

  /** The full check over every image admitted so far. */
  report(): TrainingSetReport {
    return checkTrainingSet(this.fingerprints);
  }

  /** The sha256 of each fingerprinted file's bytes, by file. */
  fileHashes(): Map<string, string> {
    return new Map(this.fingerprints.map((f) => [f.file, f.sha256]));
  }
}

/** The images `keep` (indices) of a batch tensor of `per` values per image, as a new tensor. */
export function keepImages(tensor: Float32Array, keep: readonly number[], per: number): Float32Array {
  const out = new Float32Array(keep.length * per);
  keep.forEach((k, i) => out.set(tensor.subarray(k * per, (k + 1) * per), i * per));
  return out;
}
