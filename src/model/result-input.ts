/**
 * Which input each score result came from, so that a result can be rendered (overlay, heatmap, mask)
 * or exported later from the result alone, whatever the input kind: a path is read again, encoded
 * bytes are decoded again, a raw frame's pixels are read again. Held weakly: the input lives as long
 * as its result and no longer, and nothing is added to the result object itself (it stays plain data).
 *
 * The input is referenced, not copied: a camera buffer that the caller reuses for the next frame
 * renders the next frame's pixels. Render before reusing the buffer, or pass the pixels explicitly.
 */
import type { PreprocessOptions } from '../types.js';
import type { ScoreInput, ScoreResult } from './types.js';

/** A result's input, and the preprocessing that turned it into the network input (to show a tensor as an image). */
export interface ResultInput {
  /** What was scored. */
  input: ScoreInput;
  /** The model's preprocessing. */
  preprocess?: PreprocessOptions;
}

const inputs = new WeakMap<ScoreResult, ResultInput>();

/** Records the input a result was scored from. */
export function rememberInput(result: ScoreResult, input: ScoreInput, preprocess?: PreprocessOptions): void {
  inputs.set(result, preprocess ? { input, preprocess } : { input });
}

/** The input a result was scored from: recorded when scored, else its source path (undefined for '<…>' sources). */
export function inputOf(result: ScoreResult): ResultInput | undefined {
  const recorded = inputs.get(result);
  if (recorded !== undefined) return recorded;
  return result.source.startsWith('<') ? undefined : { input: result.source };
}
