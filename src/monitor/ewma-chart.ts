/**
 * One EWMA control chart of standardised observations (Roberts 1959): e_i = λ·u_i + (1−λ)·e_{i−1},
 * e_0 = 0, each u clipped to ±clip first (a Huber-type robust EWMA: one image moves it by at most
 * λ·clip). It alarms once, when the EWMA is beyond the limit (above it, for a one-sided chart) and
 * the change is large enough to matter (the caller's practical-significance test).
 */

/** Settings shared by every chart of a monitor. */
export interface EwmaSettings {
  lambda: number;
  clip: number;
}

/** A named EWMA chart that latches its first alarm. */
export class EwmaChart {
  /** Current EWMA value. */
  ewma = 0;
  /** Whether the chart has alarmed. */
  alarmed = false;

  constructor(
    /** What the chart watches (a descriptor's name, 'image score'). */
    readonly name: string,
    /** Whether only an upward shift alarms. */
    readonly oneSided: boolean,
  ) {}

  /**
   * Adds one observation. Returns true when this observation raised the chart's alarm: the EWMA is
   * beyond ±limit (above +limit when one-sided) and `matters()` (asked only then) says the change is
   * practically significant.
   */
  update(u: number, limit: number, s: EwmaSettings, matters: () => boolean): boolean {
    const clipped = Math.max(-s.clip, Math.min(s.clip, u));
    this.ewma = s.lambda * clipped + (1 - s.lambda) * this.ewma;
    const beyond = this.oneSided ? this.ewma > limit : Math.abs(this.ewma) > limit;
    if (this.alarmed || !beyond || !matters()) return false;
    this.alarmed = true;
    return true;
  }
}

/** Appends v to a rolling window, keeping its last `size` items. */
export function slide<T>(buf: T[], v: T, size: number): void {
  buf.push(v);
  if (buf.length > size) buf.shift();
}
