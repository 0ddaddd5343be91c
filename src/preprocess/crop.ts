/** The centre crop's geometry, shared by preprocessing (where the crop is cut) and post-processing (where maps go back). */

/**
 * Python's round() (half to even), so the centre-crop offset matches torchvision's CenterCrop, which
 * computes `int(round((size - crop) / 2))`.
 */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Offset (left and top) of a `crop`-pixel centre crop of a `size`-pixel square, as torchvision's CenterCrop cuts it. */
export function centreCropOffset(size: number, crop: number): number {
  return roundHalfEven((size - crop) / 2);
}
