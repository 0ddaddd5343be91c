/**
 * A model's scoring identity: one sha256 that changes exactly when the scores it gives could change.
 * A scored run records it (`results.json` → `model.sha256`), the report copies it into the QA review it
 * exports (`review.json` → `model.sha256`), and `calibrate --review` / `fit --resume --review` recompute
 * it from the model they are given: a review of a run scored by another model is refused, and a review
 * of this model's run may reuse the scores the run recorded.
 *
 * What it covers (docs/REVIEW.md): the sha256 of the bytes of the channel choice, the per-position
 * means, the inverse covariances (as scoring holds them: stripes of the values decoded from the file's
 * float16), the image score's standardisation and the region of interest, plus
 * the header fields that shape a score — the backbone's identity (name, weights sha256, layers,
 * strides, channels, seed, precision), preprocessing, embedding, ε, post-processing, tiling and the
 * image-score kind. What it leaves out: thresholds, the calibration pool, the drift and monitor
 * references, and how the file is packaged (embedded backbone, resume statistics, format version). So
 * `partscan calibrate`, which moves only thresholds, keeps the identity; a re-fit or `fit --resume`
 * changes it; saving and loading a model keeps it.
 */

import { createHash } from 'node:crypto';
import type { Model } from './model.js';

/** Version tag hashed first: a different definition gives different digests. */
export const MODEL_IDENTITY_VERSION = 'partscan-scoring-identity/1';

/** The sha256 (hex) of typed arrays' bytes, one after the other. */
function bytesSha256(...arrays: (ArrayBufferView | undefined)[]): string | null {
  if (arrays.some((a) => !a)) return null;
  const h = createHash('sha256');
  for (const a of arrays) h.update(new Uint8Array(a!.buffer, a!.byteOffset, a!.byteLength));
  return h.digest('hex');
}

/** JSON with object keys sorted at every level and undefined members left out: one text per value. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What the digest was computed from, so a cached digest is recomputed when a part is replaced. */
interface Cached {
  parts: readonly unknown[];
  digest: string;
}

const cache = new WeakMap<Model, Cached>();

function partsOf(model: Model): unknown[] {
  return [model.channelIndices, model.mean, model.inverse, model.inverse.revision, model.standardization, model.roi, model.header.imageScore?.kind, model.header.tiling];
}

/**
 * The model's scoring identity (see the module comment): a sha256 in lowercase hex. Hashes the model's
 * arrays once per model object (about 160 MB for the bundled backbone at its defaults: a tenth of a
 * second on an idle machine) and caches the digest.
 *
 * @example
 * const model = await Model.load('bottle.partscan');
 * console.log(modelScoringSha256(model)); // what results.json and review.json record
 */
export function modelScoringSha256(model: Model): string {
  const parts = partsOf(model);
  const hit = cache.get(model);
  if (hit && hit.parts.every((p, i) => p === parts[i])) return hit.digest;
  const h = model.header;
  const { embedded: _e, inputName: _i, graphSha256: _g, ...backbone } = h.backbone;
  const std = model.standardization;
  const described = {
    identity: MODEL_IDENTITY_VERSION,
    backbone: { ...backbone, precision: backbone.precision ?? 'fp32' },
    preprocess: h.preprocess,
    embedding: h.embedding,
    epsilon: h.gaussian.epsilon,
    postprocess: h.postprocess,
    tiling: h.tiling ?? null,
    imageScore: h.imageScore?.kind ?? 'max',
    sections: {
      channels: bytesSha256(model.channelIndices),
      mean: bytesSha256(model.mean),
      // As scoring holds them: the stripes of the float32 values decoded from the stored float16 (a fit
      // holds the same values, decoded from what it saves).
      inverseStripes: bytesSha256(...model.inverse.data),
      standardizeCentre: bytesSha256(std?.centre),
      standardizeSpread: bytesSha256(std?.spread),
      roi: bytesSha256(model.roi),
    },
  };
  const digest = createHash('sha256').update(canonicalJson(described)).digest('hex');
  cache.set(model, { parts, digest });
  return digest;
}
