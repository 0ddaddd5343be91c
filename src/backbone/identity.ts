/**
 * Backbone identity checks at the model's edge: whether an option is a backbone object or a spec, the
 * ORT thread option of a `threads` setting, and the refusal of a backbone other than the fitted one.
 */
import { PartscanError } from '../errors.js';
import type { BackboneSpec } from './registry.js';
import type { Backbone, BackboneIdentity } from './types.js';

/** @internal Whether a fit/load option is a backbone object (not a spec). */
export function isBackbone(b: string | BackboneSpec | Backbone): b is Backbone {
  return typeof b === 'object' && typeof (b as Backbone).extract === 'function';
}

/** @internal ORT thread option from a `threads` setting. */
export function threadOpt(threads: number | undefined): { intraOpNumThreads?: number } {
  return threads === undefined ? {} : { intraOpNumThreads: threads };
}

/** Throws 'BACKBONE_MISMATCH' unless `got` is the backbone `expected` describes (name, weights, layers, channels, precision). */
export function assertSameBackbone(expected: BackboneIdentity, got: BackboneIdentity, file: string): void {
  const same =
    expected.name === got.name &&
    expected.sha256 === got.sha256 &&
    expected.layers.join(',') === got.layers.join(',') &&
    expected.channels.join(',') === got.channels.join(',') &&
    (expected.precision ?? 'fp32') === (got.precision ?? 'fp32');
  if (!same) {
    throw new PartscanError(
      'BACKBONE_MISMATCH',
      `${file} was fitted with backbone ${expected.name} (weights sha256 ${expected.sha256.slice(0, 12)}…, layers ${expected.layers.join(',')}, ${expected.precision ?? 'fp32'}), ` +
        `but ${got.name} (sha256 ${got.sha256.slice(0, 12)}…, layers ${got.layers.join(',')}, ${got.precision ?? 'fp32'}) was supplied.`,
      { file, remedy: 'score with the same backbone and weights the model was fitted with, or re-fit' },
    );
  }
}
