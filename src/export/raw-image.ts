/**
 * The pixel-to-encoder steps shared by the file exports (images.ts) and renderResult's in-memory
 * pictures (render.ts), so a mask or an image encodes to the same bytes either way. Internal: not part
 * of the advanced entry's `export *` of images.ts.
 */

import sharp, { type Sharp } from 'sharp';

/** A binary mask (non-zero = defect) as 8-bit grey samples: 255 where set, else 0. */
export function maskBytes(mask: ArrayLike<number>, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = mask[i] ? 255 : 0;
  return bytes;
}

/**
 * A sharp pipeline on interleaved 8-bit pixels, ready for `.png()` or `.jpeg()`: one channel is tagged
 * 'b-w' so it encodes as a greyscale image; three or four channels are taken as RGB(A).
 */
export function rawImage(data: Uint8Array, width: number, height: number, channels: 1 | 3 | 4): Sharp {
  const s = sharp(data, { raw: { width, height, channels } });
  return channels === 1 ? s.toColourspace('b-w') : s;
}
