/** Image decoding and preprocessing: the identical recipe used at fit and score time. */
export {
  IMAGENET_MEAN,
  IMAGENET_STD,
  DEFAULT_MAX_PIXELS,
  MIN_IMAGE_SIZE,
  MAX_IMAGE_SIZE,
  preprocessOptionsSchema,
  defaultPreprocessOptions,
  validatePreprocessOptions,
} from './options.js';
export { BUFFER_SOURCE, DECODE_FAIL_ON, readImageInfo, readImageBytes, sniffUnsupportedFormat } from './decode.js';
export type { ImageBytes } from './decode.js';
export { preprocessImage, preprocessBatch, loadRgb, loadMask } from './preprocess.js';
export type { ImageInput } from './preprocess.js';
