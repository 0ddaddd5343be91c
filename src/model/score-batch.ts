/**
 * Score inputs → one preprocessed batch [N,3,S,S]: paths and encoded bytes are decoded and resized as
 * the model header says; tensors are checked (shape, finite values) and copied in.
 */

import { PartscanError } from '../errors.js';
import { preprocessBatch } from '../preprocess/preprocess.js';
import type { ImageInfo, PreprocessOptions, Tensor4D } from '../types.js';
import type { ScoreInput } from './types.js';

/** A preprocessed batch with, per image, its original facts (absent for tensors) and its source. */
export interface PreparedBatch {
  tensor: Tensor4D;
  infos: (ImageInfo | undefined)[];
  sources: string[];
}

/** Preprocesses a batch of score inputs for a model of input side `S`. */
export async function prepareBatch(part: ScoreInput[], preprocess: PreprocessOptions, S: number): Promise<PreparedBatch> {
  const per = 3 * S * S;
  if (part.every((p) => typeof p === 'string' || Buffer.isBuffer(p))) {
    const b = await preprocessBatch(part as (string | Buffer)[], preprocess);
    return {
      tensor: { data: b.tensor, dims: [part.length, 3, S, S] },
      infos: b.images.map((im) => im.info),
      sources: b.images.map((im) => im.info.source),
    };
  }
  const data = new Float32Array(per * part.length);
  const infos: (ImageInfo | undefined)[] = [];
  const sources: string[] = [];
  for (let k = 0; k < part.length; k++) {
    const p = part[k]!;
    if (typeof p === 'string' || Buffer.isBuffer(p)) {
      const b = await preprocessBatch([p], preprocess);
      data.set(b.tensor, k * per);
      infos.push(b.images[0]!.info);
      sources.push(b.images[0]!.info.source);
    } else {
      checkTensor(p, S);
      data.set(p.data.subarray(0, per), k * per);
      infos.push(undefined);
      sources.push('<tensor>');
    }
  }
  return { tensor: { data, dims: [part.length, 3, S, S] }, infos, sources };
}

function checkTensor(t: Tensor4D, size: number): void {
  const [n, c, h, w] = t.dims;
  if (n !== 1 || c !== 3 || h !== size || w !== size || t.data.length < 3 * size * size) {
    throw new PartscanError('INVALID_TENSOR', `Tensor input must be [1,3,${size},${size}], got [${t.dims.join(',')}].`, {
      remedy: 'preprocess with the model header\'s preprocess options',
    });
  }
  for (let i = 0; i < t.data.length; i++) {
    if (!Number.isFinite(t.data[i]!)) {
      throw new PartscanError('INVALID_TENSOR', `Tensor input holds a non-finite value (${t.data[i]}) at index ${i}.`, {
        remedy: 'check the preprocessing: NaN/Inf usually come from a division by a zero std or a corrupt decode',
      });
    }
  }
}
