/**
 * A small pool of reusable Float32Array buffers. Large scratch arrays (embeddings: 220 MB per batch of
 * 32 at d=550) cost a page fault per 4 KiB the first time they are written, which on virtual machines
 * can cost more than the arithmetic on them; reusing them avoids that. Acquire/release pairs keep
 * concurrent users (interleaved async scoring calls) apart: a buffer is never handed out twice.
 */
export class BufferPool {
  private readonly free: Float32Array[] = [];

  /** @param keep how many released buffers to hold on to (memory bound). */
  constructor(private readonly keep = 2) {}

  /** A buffer of exactly `length` floats (contents undefined): a view of a pooled one when one is large enough. */
  acquire(length: number): Float32Array {
    const i = this.free.findIndex((b) => b.buffer.byteLength >= length * 4);
    if (i >= 0) {
      const b = this.free.splice(i, 1)[0]!;
      return new Float32Array(b.buffer, 0, length);
    }
    return new Float32Array(length);
  }

  /** Returns a buffer from {@link BufferPool.acquire}; it must not be used afterwards. */
  release(b: Float32Array): void {
    this.free.push(b);
    if (this.free.length > this.keep) {
      // Drop the smallest: the large ones are the expensive ones to fault in again.
      this.free.sort((x, y) => y.buffer.byteLength - x.buffer.byteLength);
      this.free.length = this.keep;
    }
  }

  /** Forgets every pooled buffer. */
  clear(): void {
    this.free.length = 0;
  }
}
