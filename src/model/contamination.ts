/**
 * Contaminated "good" images: training images that score like defects when each is scored
 * leave-one-out against the fitted model, and calibration images that score like defects.
 */
import { PartscanError } from '../errors.js';
import { preprocessBatch } from '../preprocess/preprocess.js';
import { scoreOutliers } from '../guards/robust-stats.js';
import type { Model } from './model.js';

/** A training image that scores like an outlier leave-one-out. */
export interface ContaminationSuspect {
  /** The training image. */
  file: string;
  /** Its leave-one-out anomaly score. */
  score: number;
  /** Robust z of that score, on the log scale, among the training images. */
  z: number;
}

/**
 * The leave-one-out rescaling of an in-sample squared distance m, for a model fitted on n images.
 * Removing x (δ = x − μ) from n samples moves the mean by −δ/(n−1) and gives
 * Σ₋ ≈ ((n−1)/(n−2))·(Σ − c·δδᵀ) with c = n/(n−1)² (ε·I rescaled alongside, a slight
 * over-regularisation), so by Sherman–Morrison d²_loo = (n/(n−1))²·((n−2)/(n−1))·m / (1 − c·m). c·m < 1
 * always (m is below the leverage bound (n−1)²/n); an image that explains its own outlying features
 * (a defect among the "good" set) has c·m → 1.
 */
function looTransform(n: number): (m: number) => number {
  const c = n / (n - 1) ** 2;
  const k = (n / (n - 1)) ** 2 * ((n - 2) / (n - 1));
  return (m: number): number => (k * m) / Math.max(1e-6, 1 - c * m);
}

/** Image score (map maximum) of each map. */
function mapMaxima(maps: Float32Array[]): number[] {
  return maps.map((map) => {
    let max = -Infinity;
    for (let j = 0; j < map.length; j++) if (map[j]! > max) max = map[j]!;
    return max;
  });
}

/**
 * Leave-one-out image scores of the training images against the freshly fitted model (fitted on
 * exactly `files`). In-sample scores would hide defects, since each image is part of its own Gaussian.
 * This runs the backbone over every file again; {@link leaveOneOutScoresFromEmbeddings} gives the same
 * scores from the embeddings the fit kept.
 */
export async function leaveOneOutScores(model: Model, files: string[]): Promise<number[]> {
  const loo = looTransform(model.header.gaussian.images);
  const scores: number[] = [];
  const S = model.size;
  for (let i = 0; i < files.length; i += 16) {
    const part = files.slice(i, i + 16);
    const b = await preprocessBatch(part, model.header.preprocess);
    scores.push(...mapMaxima(await model.anomalyMaps({ data: b.tensor, dims: [part.length, 3, S, S] }, loo)));
  }
  return scores;
}

/**
 * {@link leaveOneOutScores} from the training embeddings the fit kept ([P, n, d], image order of the
 * fit), with no second backbone pass: per chunk of images, in-sample distances, then the same
 * rescaling, upsampling and blur.
 */
export async function leaveOneOutScoresFromEmbeddings(model: Model, embeddings: Float32Array, n: number): Promise<number[]> {
  const P = model.positions;
  if (embeddings.length !== P * n * model.dim) {
    throw new PartscanError('INVALID_TENSOR', `Kept embeddings hold ${embeddings.length} values, expected ${P}×${n}×${model.dim}.`, {
      remedy: 'pass the [P, n, d] embeddings of the n images the model was fitted on',
    });
  }
  const loo = looTransform(model.header.gaussian.images);
  const d = model.dim;
  const scores: number[] = [];
  // Chunks of images, as the second pass had: ORT's intermediates stay the size of one chunk's embeddings.
  const chunk = 16;
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const c = Math.min(chunk, n - i0);
    const part = new Float32Array(P * c * d);
    for (let p = 0; p < P; p++) part.set(embeddings.subarray((p * n + i0) * d, (p * n + i0 + c) * d), p * c * d);
    scores.push(...mapMaxima(await model.mapsFromDistances(await model.embeddingDistances(part, c), c, loo)));
  }
  return scores;
}

/**
 * The likely contaminated "good" training images: those whose leave-one-out score (from
 * {@link leaveOneOutScores}, in the order of `files`) is an outlier by {@link scoreOutliers}; highest
 * score first.
 */
export function contaminationSuspects(files: readonly string[], looScores: readonly number[]): ContaminationSuspect[] {
  const { z, outlier } = scoreOutliers(looScores);
  return files
    .map((file, i) => ({ file, score: looScores[i]!, z: z[i]! }))
    .filter((_, i) => outlier[i])
    .sort((a, b) => b.score - a.score);
}
