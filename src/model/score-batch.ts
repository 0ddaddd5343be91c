/**
 * Score inputs → one preprocessed batch [N,3,S,S]: paths and encoded bytes are decoded and resized as
 * the model header says, raw frames are read in place and resized the same way; tensors are checked
 * (shape, finite values) and copied in.
 */

import { PartscanError } from '../errors.js';
import { preprocessImageInto, type ImageInput } from '../preprocess/preprocess.js';
import { isRawFrame } from '../preprocess/raw-frame.js';
import type { ImageInfo, PreprocessOptions, Tensor4D } from '../types.js';
import type { ScoreInput } from './types.js';

/** A preprocessed batch with, per image, its original facts (absent for tensors) and its source. */
export interface PreparedBatch {
  tensor: Tensor4D;
  infos: (ImageInfo | undefined)[];
  sources: string[];
}

/** How many images are decoded at once; sharp parallelises inside each decode as well. */
const DECODE_CONCURRENCY = 4;

/** A score input, sorted by kind: a tensor, or an image that preprocessing reads (path, bytes, frame). */
export function classifyInput(input: ScoreInput): { tensor: Tensor4D } | { image: ImageInput } {
  if (typeof input === 'string' || input instanceof Uint8Array) return { image: input };
  if ((input as unknown) instanceof Uint8ClampedArray) {
    const c = input as unknown as Uint8ClampedArray;
    return { image: new Uint8Array(c.buffer, c.byteOffset, c.byteLength) };
  }
  if (typeof input === 'object' && input !== null && 'dims' in input) return { tensor: input };
  if (isRawFrame(input)) return { image: input };
  const what = input === null ? 'null' : ArrayBuffer.isView(input) ? (input as object).constructor.name : typeof input;
  throw new PartscanError('OPTIONS', `Cannot score a ${what}: not an image input.`, {
    remedy: 'pass a file path, encoded bytes (Buffer / Uint8Array), a raw frame { data, width, height, channels } or a tensor { data, dims }',
  });
}

/** Preprocesses a batch of score inputs for a model of input side `S`. The first failure rejects the batch. */
export async function prepareBatch(part: ScoreInput[], preprocess: PreprocessOptions, S: number): Promise<PreparedBatch> {
  const per = 3 * S * S;
  const kinds = part.map(classifyInput);
  const data = new Float32Array(per * part.length);
  const infos: (ImageInfo | undefined)[] = new Array(part.length);
  const sources: string[] = new Array(part.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < part.length) {
      const k = next++;
      const kind = kinds[k]!;
      const out = data.subarray(k * per, (k + 1) * per);
      if ('tensor' in kind) {
        checkTensor(kind.tensor, S);
        out.set(kind.tensor.data.subarray(0, per));
        sources[k] = '<tensor>';
      } else {
        const info = (await preprocessImageInto(kind.image, preprocess, out)).info;
        infos[k] = info;
        sources[k] = info.source;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DECODE_CONCURRENCY, part.length) }, worker));
  return { tensor: { data, dims: [part.length, 3, S, S] }, infos, sources };
}

function checkTensor(t: Tensor4D, size: number): void {
  const dims = Array.isArray(t.dims) ? t.dims : [];
  const [n, c, h, w] = dims;
  if (!(t.data instanceof Float32Array) || n !== 1 || c !== 3 || h !== size || w !== size || t.data.length < 3 * size * size) {
    throw new PartscanError('INVALID_TENSOR', `Tensor input must be a Float32Array [1,3,${size},${size}], got [${dims.join(',')}].`, {
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
