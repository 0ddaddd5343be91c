/**
 * The per-position inverse covariances in the form scoring uses them: symmetric, so only about half of
 * each d×d matrix is kept, in row stripes that ONNX Runtime multiplies with plain batched MatMuls.
 *
 * The d rows are cut into k blocks [r0, r1). Stripe a holds, for every position p, the r1 × (r1 − r0)
 * matrix S_a[p] with S_a[p][j][i − r0] = 2·A_ij for columns j < r0 (the block's share of the
 * off-diagonal blocks, counted twice for the mirrored half) and A_ij for j in the block itself (its
 * diagonal block, full). Then, with Δ = x − μ,
 *
 *   Δᵀ A Δ = Σ_a Σ_{i in a} Δ_i · (Δ[0, r1) · S_a)_{i − r0}
 *
 * — k MatMuls of the Δ prefix with the stripes, one concatenation, then the same Mul + ReduceSum as the
 * dense form. Storage: (k + 1)/(2k) of the dense d² floats (k = 10: 0.55; d=152 at 56×56 positions:
 * 153 MB instead of 290 MB), and the MatMuls do about half the dense multiply-adds. The factor 2 is exact
 * in float32, so the packed lower triangle comes back bit for bit ({@link StripedInverse.packPosition}).
 *
 * The stripes are plain Float32Arrays, handed to ONNX Runtime as graph inputs, which it reads in place:
 * the one copy of the big tensors a loaded model keeps (no packed copy, no initializer copy in ORT).
 */

import type { GraphSink } from '../onnx/graph-sink.js';

/** Rows [r0, r1) of one stripe. */
export interface Stripe {
  /** First row of the block. */
  r0: number;
  /** One past its last row (and the number of columns of Δ the stripe multiplies). */
  r1: number;
}

/** Most stripes per matrix: more save little memory ((k+1)/2k) and add a MatMul (and a Δ prefix copy) each. */
export const MAX_STRIPES = 10;
/** Smallest block height: MLAS's float GEMM kernels work on 16-column panels. */
const MIN_BLOCK = 16;

/** The stripes of a d×d matrix: k = min(10, ⌈d/16⌉) blocks of ⌈d/k⌉ rows (the last may be shorter). */
export function stripeLayout(d: number): Stripe[] {
  if (!Number.isInteger(d) || d < 1) throw new RangeError(`stripeLayout: d must be a positive integer, got ${d}`);
  const k = Math.min(MAX_STRIPES, Math.ceil(d / MIN_BLOCK));
  const b = Math.ceil(d / k);
  const out: Stripe[] = [];
  for (let r0 = 0; r0 < d; r0 += b) out.push({ r0, r1: Math.min(d, r0 + b) });
  return out;
}

/** Floats one position occupies in stripe `s`. */
export function stripeSize(s: Stripe): number {
  return s.r1 * (s.r1 - s.r0);
}

/** The per-position inverse covariances of a model as stripes (see the file comment). */
export class StripedInverse {
  /** The row blocks. */
  readonly stripes: readonly Stripe[];
  /** One array per stripe, [P, r1, r1 − r0] each, position-major. */
  readonly data: readonly Float32Array[];
  /** The same memory as bit patterns (for {@link setPositionFromHalf}). */
  private readonly bits: readonly Uint32Array[];
  /** Bumped by every write, so that copies derived from the stripes (packed triangles) know they are stale. */
  revision = 0;

  /** Empty (zero) stripes for `positions` matrices of size `dim`; fill them with {@link setPosition}. */
  constructor(
    /** Grid positions P. */
    readonly positions: number,
    /** Embedding size d. */
    readonly dim: number,
  ) {
    this.stripes = stripeLayout(dim);
    // One allocation for all stripes: large enough that malloc maps it on its own, so an evicted
    // model's memory goes back to the system when the array is collected (separate ~15 MB blocks
    // would stay in the heap).
    const all = new Float32Array(positions * this.stripes.reduce((n, s) => n + stripeSize(s), 0));
    let offset = 0;
    this.data = this.stripes.map((s) => {
      const view = all.subarray(offset, offset + positions * stripeSize(s));
      offset += view.length;
      return view;
    });
    this.bits = this.data.map((x) => new Uint32Array(x.buffer, x.byteOffset, x.length));
  }

  /** Stripes from packed lower triangles [P, d(d+1)/2] (row-major: entry (i, j ≤ i) at i(i+1)/2 + j). */
  static fromPacked(packed: Float32Array, positions: number, dim: number): StripedInverse {
    const tri = (dim * (dim + 1)) / 2;
    if (packed.length !== positions * tri) throw new RangeError(`fromPacked: ${packed.length} values for ${positions} packed ${dim}×${dim} matrices`);
    const s = new StripedInverse(positions, dim);
    for (let p = 0; p < positions; p++) s.setPosition(p, packed, p * tri);
    return s;
  }

  /** Bytes held. */
  get byteLength(): number {
    return this.data.reduce((a, x) => a + x.byteLength, 0);
  }

  /** Writes position `p` from one packed lower triangle starting at `packed[offset]`. */
  setPosition(p: number, packed: Float32Array, offset: number): void {
    this.revision++;
    this.stripes.forEach((s, a) => {
      const b = s.r1 - s.r0;
      const dst = this.data[a]!;
      const base = p * s.r1 * b;
      for (let i = s.r0; i < s.r1; i++) {
        const row = offset + (i * (i + 1)) / 2;
        const c = base + (i - s.r0);
        for (let j = 0; j < s.r0; j++) dst[c + j * b] = 2 * packed[row + j]!;
        for (let j = s.r0; j <= i; j++) {
          const v = packed[row + j]!;
          dst[c + j * b] = v;
          dst[base + i * b + (j - s.r0)] = v;
        }
      }
    });
  }

  /**
   * {@link setPosition} from one packed triangle of float16 bits `half[offset …]` whose values are
   * `decode(bits) · scale` (a power of two: see util/float16.ts). Normal halves — all but zeros and
   * tiny values — become float32 bits by integer arithmetic alone (mantissa shifted, exponent rebased
   * by the scale, +1 for the doubled off-diagonal entries), which makes loading a model several times
   * faster than decoding and scattering in two passes; the rest go through `decode`.
   */
  setPositionFromHalf(p: number, half: Uint16Array, offset: number, scale: number, decode: (bits: number) => number): void {
    this.revision++;
    const k = Math.log2(scale);
    // Fast path only for exact powers of two that keep every result a normal float32 (always, for files partscan writes).
    if (!Number.isInteger(k) || k < -100 || k > 100) {
      const row = new Float32Array((this.dim * (this.dim + 1)) / 2);
      for (let i = 0; i < row.length; i++) row[i] = decode(half[offset + i]!) * scale;
      this.setPosition(p, row, 0);
      return;
    }
    // float32 exponent = half exponent − 15 + 127 + k.
    const bias = (112 + k) << 23;
    const twice = bias + (1 << 23);
    for (let a = 0; a < this.stripes.length; a++) {
      const s = this.stripes[a]!;
      const b = s.r1 - s.r0;
      const dst = this.bits[a]!;
      const dstF = this.data[a]!;
      const base = p * s.r1 * b;
      for (let i = s.r0; i < s.r1; i++) {
        const row = offset + (i * (i + 1)) / 2;
        const c = base + (i - s.r0);
        for (let j = 0; j < s.r0; j++) {
          const x = half[row + j]!;
          const e = x & 0x7c00;
          if (e !== 0 && e !== 0x7c00) dst[c + j * b] = ((x & 0x8000) << 16) | (((x & 0x7fff) << 13) + twice);
          else dstF[c + j * b] = 2 * decode(x) * scale;
        }
        for (let j = s.r0; j <= i; j++) {
          const x = half[row + j]!;
          const e = x & 0x7c00;
          if (e !== 0 && e !== 0x7c00) {
            const v = ((x & 0x8000) << 16) | (((x & 0x7fff) << 13) + bias);
            dst[c + j * b] = v;
            dst[base + i * b + (j - s.r0)] = v;
          } else {
            const v = decode(x) * scale;
            dstF[c + j * b] = v;
            dstF[base + i * b + (j - s.r0)] = v;
          }
        }
      }
    }
  }

  /** Writes the packed lower triangle of position `p` to `out[offset …]` (exactly what {@link setPosition} took). */
  packPosition(p: number, out: Float32Array, offset: number): void {
    this.stripes.forEach((s, a) => {
      const b = s.r1 - s.r0;
      const src = this.data[a]!;
      const base = p * s.r1 * b;
      for (let i = s.r0; i < s.r1; i++) {
        const row = offset + (i * (i + 1)) / 2;
        const c = base + (i - s.r0);
        for (let j = 0; j < s.r0; j++) out[row + j] = 0.5 * src[c + j * b]!;
        for (let j = s.r0; j <= i; j++) out[row + j] = src[c + j * b]!;
      }
    });
  }

  /** All positions as packed lower triangles [P, d(d+1)/2] (a new array). */
  toPacked(): Float32Array {
    const tri = (this.dim * (this.dim + 1)) / 2;
    const out = new Float32Array(this.positions * tri);
    for (let p = 0; p < this.positions; p++) this.packPosition(p, out, p * tri);
    return out;
  }

  /** Writes the full symmetric d×d matrix of position `p` to `out[offset …]` (row-major). */
  writeDense(p: number, out: Float32Array, offset: number): void {
    const d = this.dim;
    this.stripes.forEach((s, a) => {
      const b = s.r1 - s.r0;
      const src = this.data[a]!;
      const base = p * s.r1 * b;
      for (let i = s.r0; i < s.r1; i++) {
        const c = base + (i - s.r0);
        for (let j = 0; j < s.r0; j++) {
          const v = 0.5 * src[c + j * b]!;
          out[offset + i * d + j] = v;
          out[offset + j * d + i] = v;
        }
        for (let j = s.r0; j < s.r1; j++) out[offset + i * d + j] = src[c + j * b]!;
      }
    });
  }

  /** Views of the stripes for positions [p0, p0 + count) (no copy), each [count, r1, r1 − r0]. */
  positionRange(p0: number, count: number): { data: Float32Array; dims: [number, number, number] }[] {
    return this.stripes.map((s, a) => {
      const size = stripeSize(s);
      return { data: this.data[a]!.subarray(p0 * size, (p0 + count) * size), dims: [count, s.r1, s.r1 - s.r0] };
    });
  }
}

/**
 * Nodes from Δ `diff` [P, N, d] and stripe tensors `stripeNames` ([P, r1, r1 − r0] each, graph inputs
 * or initializers) to the squared distances `out` [P, N]: Δᵀ A Δ per position and image (file comment).
 */
export function stripedMahalanobisNodes(sink: GraphSink, diff: string, out: string, stripes: readonly Stripe[], stripeNames: readonly string[], prefix: string): void {
  const d = stripes.at(-1)!.r1;
  sink.int64(`${prefix}/axis2`, [1], [2]);
  if (stripes.length > 1) sink.int64(`${prefix}/zero`, [1], [0]);
  const parts = stripes.map((s, a) => {
    let x = diff;
    if (s.r1 < d) {
      sink.int64(`${prefix}/end${a}`, [1], [s.r1]);
      x = `${prefix}/diff${a}`;
      sink.node('Slice', [diff, `${prefix}/zero`, `${prefix}/end${a}`, `${prefix}/axis2`], [x]);
    }
    const y = `${prefix}/y${a}`;
    sink.node('MatMul', [x, stripeNames[a]!], [y]);
    return y;
  });
  let y = parts[0]!;
  if (parts.length > 1) {
    y = `${prefix}/y`;
    sink.node('Concat', parts, [y], { axis: 2 });
  }
  sink.node('Mul', [y, diff], [`${prefix}/terms`]);
  sink.node('ReduceSum', [`${prefix}/terms`, `${prefix}/axis2`], [out], { keepdims: 0 });
}
