/**
 * Preprocessing options: defaults and validation. The same options object is used at fit and at score
 * time and is stored in the model file, so every field is explicit and validated.
 */
import { z } from 'zod';
import { PartscanError } from '../errors.js';
import type { PreprocessOptions } from '../types.js';

/** ImageNet per-channel mean (RGB, on 0..1 values): what torchvision's pretrained backbones expect. */
export const IMAGENET_MEAN: readonly [number, number, number] = Object.freeze([0.485, 0.456, 0.406]) as readonly [
  number,
  number,
  number,
];

/** ImageNet per-channel standard deviation (RGB, on 0..1 values). */
export const IMAGENET_STD: readonly [number, number, number] = Object.freeze([0.229, 0.224, 0.225]) as readonly [
  number,
  number,
  number,
];

/**
 * Default decoded-pixel cap (width·height): 100 megapixels. Above the largest industrial cameras in
 * common use, far below what a decompression bomb decodes to.
 */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/** Smallest accepted network input side: ResNet layer3 has stride 16, so 32 px gives a 2×2 map. */
export const MIN_IMAGE_SIZE = 32;

/** Largest accepted network input side; larger inputs make PaDiM's per-position statistics huge. */
export const MAX_IMAGE_SIZE = 2048;

const rgbTuple = (label: string) =>
  z.tuple([z.number(), z.number(), z.number()], {
    error: `${label} must be an array of three finite numbers (R, G, B)`,
  });

const byteValue = z
  .number()
  .int('background values must be integers')
  .min(0, 'background values must be 0..255')
  .max(255, 'background values must be 0..255');

/** Zod schema of {@link PreprocessOptions}; strict, so a misspelt key is reported instead of silently ignored. */
export const preprocessOptionsSchema = z
  .strictObject({
    /** Side of the square network input, in pixels. */
    imageSize: z
      .number({ error: 'imageSize must be a number' })
      .int('imageSize must be an integer')
      .min(MIN_IMAGE_SIZE, `imageSize must be at least ${MIN_IMAGE_SIZE}`)
      .max(MAX_IMAGE_SIZE, `imageSize must be at most ${MAX_IMAGE_SIZE}`),
    /** Centre crop after the resize, in pixels (at most imageSize). */
    cropSize: z
      .number({ error: 'cropSize must be a number' })
      .int('cropSize must be an integer')
      .min(MIN_IMAGE_SIZE, `cropSize must be at least ${MIN_IMAGE_SIZE}`)
      .optional(),
    // On 0..1 pixel values. A mean far outside, or a std near 0, turns every image into overflowing
    // activations (non-finite scores): refused here, for options and model files alike.
    /** Per-channel mean, RGB order, on 0..1 values. */
    mean: rgbTuple('mean').refine((m) => m.every((v) => v >= -10 && v <= 10), 'mean values must lie in [-10, 10]'),
    /** Per-channel std, RGB order, on 0..1 values. */
    std: rgbTuple('std').refine((s) => s.every((v) => v >= 1e-3 && v <= 100), 'std values must lie in [0.001, 100] (and be > 0)'),
    /** Background that alpha is flattened onto, 0..255 RGB. */
    background: z.tuple([byteValue, byteValue, byteValue], {
      error: 'background must be an array of three integers 0..255 (R, G, B)',
    }),
    /** Resize kernel (sharp's names). */
    kernel: z.enum(['nearest', 'linear', 'cubic', 'lanczos3'], {
      error: "kernel must be one of 'nearest', 'linear', 'cubic', 'lanczos3'",
    }),
    /** Decoded pixel cap (width·height); larger images are refused as possible decompression bombs. */
    maxPixels: z
      .number({ error: 'maxPixels must be a number' })
      .int('maxPixels must be an integer')
      .positive('maxPixels must be > 0')
      .max(Number.MAX_SAFE_INTEGER),
  })
  .refine((o) => o.cropSize === undefined || o.cropSize <= o.imageSize, {
    message: 'cropSize must not exceed imageSize',
    path: ['cropSize'],
  });

/**
 * Checks an options object (from code, the CLI or a model file) and returns a typed copy.
 * @throws PartscanError 'OPTIONS' listing every problem found.
 */
export function validatePreprocessOptions(o: unknown): PreprocessOptions {
  const parsed = preprocessOptionsSchema.safeParse(o);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
      .join('; ');
    throw new PartscanError('OPTIONS', `Invalid preprocessing options: ${problems}.`, {
      remedy: 'fix the listed fields (see PreprocessOptions for their meaning and ranges)',
    });
  }
  const v = parsed.data;
  const out: PreprocessOptions = {
    imageSize: v.imageSize,
    mean: [v.mean[0], v.mean[1], v.mean[2]],
    std: [v.std[0], v.std[1], v.std[2]],
    background: [v.background[0], v.background[1], v.background[2]],
    kernel: v.kernel,
    maxPixels: v.maxPixels,
  };
  if (v.cropSize !== undefined) out.cropSize = v.cropSize;
  return out;
}

/**
 * The default recipe, with optional overrides (validated):
 * - imageSize 256, no centre crop (cropping can cut off defects at the border);
 * - ImageNet mean/std, as the pretrained backbones expect;
 * - kernel 'linear': sharp's antialiased bilinear, the closest match to torchvision's PIL bilinear resize
 *   (within one 8-bit grey level on MVTec images, see test/preprocess.test.ts);
 * - background white [255, 255, 255] for flattening alpha: transparent regions then look the way image
 *   viewers and the HTML report show them, so what the operator sees is what the model saw. Cut-out
 *   product photos are usually prepared on white. Black would be just as valid; what matters is that fit
 *   and score agree, which recording the options in the model file guarantees;
 * - maxPixels {@link DEFAULT_MAX_PIXELS}.
 * @throws PartscanError 'OPTIONS' when an override is invalid.
 */
export function defaultPreprocessOptions(overrides: Partial<PreprocessOptions> = {}): PreprocessOptions {
  const defaults: PreprocessOptions = {
    imageSize: 256,
    mean: [IMAGENET_MEAN[0], IMAGENET_MEAN[1], IMAGENET_MEAN[2]],
    std: [IMAGENET_STD[0], IMAGENET_STD[1], IMAGENET_STD[2]],
    background: [255, 255, 255],
    kernel: 'linear',
    maxPixels: DEFAULT_MAX_PIXELS,
  };
  const merged: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;
  return validatePreprocessOptions(merged);
}
