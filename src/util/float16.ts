/**
 * IEEE 754 binary16 (half precision) conversion for arrays: float32 → float16 bits with round to
 * nearest, ties to even (the rounding hardware conversions use), and float16 bits → float32 (exact:
 * every half value is a float32). Node 20 has no Float16Array; these work on Uint16Array bit patterns.
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** float16 bits of one number (round to nearest even; overflow → ±Infinity; NaN stays NaN). */
export function toHalfBits(v: number): number {
  F32[0] = v;
  return halfFromFloatBits(U32[0]!);
}

function halfFromFloatBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit bit into place, rounding.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Decodes one IEEE half-precision value (bits in the low 16 bits of `h`). */
export function float16ToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Every half value as float32, indexed by its bits (256 KiB, built on first use). */
let table: Float32Array | undefined;

function halfTable(): Float32Array {
  if (table) return table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = float16ToFloat32(h);
  table = t;
  return t;
}

/** float32 value of float16 bits `h`. */
export function fromHalfBits(h: number): number {
  return halfTable()[h & 0xffff]!;
}

/** Largest scaled magnitude a row may reach: the largest half below 2^15 (see {@link toScaledHalfRow}). */
const SCALED_MAX = 32752;

/**
 * Stores `n` float32 values `src[offset …]` as float16 bits `out[outOffset …]`, all multiplied by one
 * power of two 2^k, and returns the factor that decodes them (2^−k, exact). k is the largest for which
 * the row's largest finite magnitude, rounded to half, stays ≤ 32752 (the largest half below 2^15):
 * far from float16's overflow (65504) and from its subnormals whatever the data's magnitude (inverse
 * covariances reach 1/ε). Choosing k on the rounded maximum makes the encoding idempotent: encoding the
 * decoded values again gives the same k and the same bits, so a loaded model saves to the same bytes.
 */
export function toScaledHalfRow(src: Float32Array, offset: number, n: number, out: Uint16Array, outOffset: number): number {
  const bits = new Uint32Array(src.buffer, src.byteOffset + offset * 4, n);
  // Largest finite magnitude: for non-negative floats, bit patterns order like values.
  let maxBits = 0;
  for (let i = 0; i < n; i++) {
    const a = bits[i]! & 0x7fffffff;
    if (a > maxBits && a < 0x7f800000) maxBits = a;
  }
  U32[0] = maxBits;
  const max = F32[0]!;
  // Both factors stay normal float32 numbers: k within [-113, 100] (an all-zero row: 100, as any k fits).
  const fits = (e: number): boolean => fromHalfBits(toHalfBits(max * 2 ** e)) <= SCALED_MAX;
  let k = max > 0 ? Math.min(100, Math.max(-113, Math.floor(Math.log2(SCALED_MAX / max)))) : 100;
  while (k > -113 && !fits(k)) k--;
  while (k < 100 && fits(k + 1)) k++;
  const up = 2 ** k;
  const shift = k * 0x800000;
  for (let i = 0; i < n; i++) {
    const u = bits[i]!;
    const a = u & 0x7fffffff;
    const scaled = a + shift;
    // A normal float32 scaled into half's normal range: rebias the exponent and round the mantissa
    // to 10 bits, to nearest even, by integer arithmetic. (≤ 32752 by the choice of k: no overflow.)
    if (a >= 0x800000 && a < 0x7f800000 && scaled >= 0x38800000) {
      out[outOffset + i] = ((u >>> 16) & 0x8000) | ((scaled - 0x38000000 + 0xfff + ((scaled >>> 13) & 1)) >>> 13);
    } else {
      out[outOffset + i] = toHalfBits(src[offset + i]! * up);
    }
  }
  return 2 ** -k;
}

/** Decodes `n` half values of one scaled row (see {@link toScaledHalfRow}) into `out` at `outOffset`. */
export function fromScaledHalfRow(half: Uint16Array, offset: number, n: number, scale: number, out: Float32Array, outOffset = 0): void {
  const t = halfTable();
  for (let i = 0; i < n; i++) out[outOffset + i] = t[half[offset + i]!]! * scale;
}
