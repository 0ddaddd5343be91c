/**
 * The words of line monitoring: one reason per chart that crossed its limit, saying what changed (in
 * per cent, NG rates and percentiles the line knows) and what to check.
 */

/** What to check when a drift descriptor moved, by descriptor. */
const HINTS: Record<string, string> = {
  brightness: 'check the lighting, exposure and gain',
  contrast: 'check the lighting, exposure and lens (glare, haze, dirt)',
  r_b_ratio: "check the light's colour and the camera's white balance (a grayscale image on a colour model reads as this too)",
  sharpness: 'check the focus, the lens and vibration or motion blur',
};

/** The quantity a descriptor reads: the channel means read brightness, the channel spreads contrast. */
export function descriptorFamily(feature: string): string {
  if (feature.startsWith('mean_')) return 'brightness';
  if (feature.startsWith('std_')) return 'contrast';
  return feature;
}

/** What to check for a descriptor (per-channel means read like brightness, spreads like contrast). */
export function descriptorHint(feature: string): string {
  return HINTS[descriptorFamily(feature)] ?? 'check the imaging set-up';
}

const REFIT = 'or re-fit with images of the new condition if it is intended';

/** A signed number with a proper minus sign. */
export function signed(x: number, digits: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;
}

/** A share as a percentage, one decimal. */
export function percent(x: number): string {
  return `${(x * 100).toFixed(1)} %`;
}

/** 1st, 2nd, 3rd, 4th... */
export function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${s}`;
}

/** A change of a descriptor in its own units: per cent for log descriptors, a difference otherwise. */
export function change(delta: number, transform: 'log' | 'linear'): string {
  return transform === 'log' ? `${signed(Math.expm1(delta) * 100, 0)} %` : signed(delta, 3);
}

/** Why the score chart (or the window test) alarmed. */
export function scoreReason(r: {
  images: number;
  percentile: number;
  predicted: number;
  expected: number;
  hasThreshold: boolean;
  how: string;
}): string {
  const against = r.hasThreshold ? 'of good parts would be NG' : "would score above the reference's 99th percentile";
  return (
    `image scores above the out-of-sample reference: median of the last ${r.images} images at the ${ordinal(Math.round(r.percentile * 100))} ` +
    `percentile; at this level about ${percent(r.predicted)} ${against} (expected ${percent(r.expected)}) — ` +
    `look for a change of material, process or imaging, ${REFIT} (${r.how})`
  );
}

/** Why an envelope chart alarmed. */
export function envelopeReason(r: {
  feature: string;
  transform: 'log' | 'linear';
  images: number;
  beyond: number;
  expected: number;
  offset: number;
  how: string;
}): string {
  const shift = change(r.offset, r.transform);
  return (
    `${r.feature} beyond the fitted range: ${r.beyond} of the last ${r.images} images (about ${Math.round(r.expected * r.images)} expected), ` +
    `a median ${shift} from the nearest training images — ${descriptorHint(r.feature)}, ${REFIT} (${r.how})`
  );
}

/** Why a chart against the training median (models without an envelope) alarmed. */
export function medianReason(r: { feature: string; transform: 'log' | 'linear'; images: number; delta: number; how: string }): string {
  return `${r.feature} ${change(r.delta, r.transform)} over the last ${r.images} images vs training — ${descriptorHint(r.feature)} (${r.how})`;
}

/** Note for models without an envelope (format < 1.4). */
export const NO_ENVELOPE_NOTE =
  'The model file has no envelope of its training images (written before model format 1.4): the drift charts compare each image with the median of all training images, so a stream from one part of a varied training set (one setup, lot or shift) can raise an alarm. Re-fit with this partscan version to monitor against the fitted envelope.';
/** Note for models without a score reference (format < 1.2, or no out-of-sample scores). */
export const NO_REFERENCE_NOTE =
  'The model has no monitoring reference (model format < 1.2 or no out-of-sample scores): image scores are not monitored, only drift descriptors. Re-fit with this partscan version to monitor scores.';
/** Note for models without a drift model. */
export const NO_DRIFT_NOTE = 'The model has no drift model (tiled or fitted on fewer than 5 images): drift descriptors are not monitored.';
