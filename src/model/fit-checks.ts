/**
 * What {@link fit} checks before any image goes through the backbone, beyond its options schema: the
 * combinations of options and the files they name, so that a mistake costs no minutes of fitting.
 */
import { promises as fs } from 'node:fs';
import { PartscanError } from '../errors.js';
import { defaultPreprocessOptions, validatePreprocessOptions } from '../preprocess/options.js';
import type { FitOptions } from './fit-options.js';

/** Throws the typed error a fit would otherwise raise only after fitting. */
export async function checkFitInputs(opts: FitOptions): Promise<void> {
  if (opts.roi && opts.tile) {
    throw new PartscanError('OPTIONS', 'A ROI mask cannot be combined with tiling yet.', { file: opts.roi, remedy: 'leave out --roi or --tile' });
  }
  if (opts.roi) {
    const stat = await fs.stat(opts.roi).catch(() => undefined);
    if (!stat?.isFile()) {
      throw new PartscanError('MASK', `The ROI mask ${opts.roi} ${stat ? 'is not a file' : 'does not exist'}.`, {
        file: opts.roi,
        remedy: 'give a PNG the size of the training images: white = inspect, black = ignore',
      });
    }
  }
  // Cross-field preprocessing rules (a crop larger than the input...) when the input side is known now.
  const imageSize = opts.imageSize ?? opts.tile?.size ?? opts.preprocess?.imageSize;
  if (opts.preprocess && imageSize !== undefined) validatePreprocessOptions(defaultPreprocessOptions({ ...opts.preprocess, imageSize }));
  opts.defects?.forEach((s, i) => {
    if (typeof s !== 'object' || s === null || typeof s.path !== 'string') {
      throw new PartscanError('OPTIONS', `Invalid fit option defects.${i}: expected a sample { path, label, anomalous, maskPath? }.`, {
        remedy: 'pass the defective samples of a loaded dataset (loadDataset(root).test filtered on anomalous)',
      });
    }
  });
}
