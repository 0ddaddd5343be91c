/**
 * A raw frame is checked once, against the caller's pixel cap (maxPixels), like a file: the pipeline does
 * not check it a second time against the default cap. The default cap is lowered here (module mock) so
 * that small frames stand for frames above 100 M pixels without allocating them.
 */
import { describe, expect, it, vi } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import { defaultPreprocessOptions } from '../src/preprocess/options.js';
import { loadRgb, preprocessImage } from '../src/preprocess/preprocess.js';
import type { RawFrame } from '../src/preprocess/raw-frame.js';
import { thrown } from './helpers/errors.js';

// The default cap as the frame code sees it: 100 pixels, below the 16×16 frames used here (vi.mock is
// hoisted above the imports, so the number is written in place).
vi.mock('../src/preprocess/options.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../src/preprocess/options.js')>()),
  DEFAULT_MAX_PIXELS: 100,
}));

function frame(): RawFrame {
  const width = 16;
  const height = 16;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256;
  return { data, width, height, channels: 3, order: 'bgr' };
}

describe('raw frame pixel cap', () => {
  it('a frame above the caller’s maxPixels is refused with that cap named', async () => {
    const opts = defaultPreprocessOptions({ imageSize: 32, maxPixels: 200 });
    for (const e of [await thrown(() => preprocessImage(frame(), opts)), await thrown(() => loadRgb(frame(), { maxPixels: 200 }))]) {
      expect(isPartscanError(e, 'IMAGE_TOO_LARGE'), String(e)).toBe(true);
      expect((e as Error).message).toContain('above the limit of 200');
    }
  });

  it('a frame above the default cap but within a raised maxPixels is accepted (no second check with the default)', async () => {
    const opts = defaultPreprocessOptions({ imageSize: 32, maxPixels: 1000 });
    const pre = await preprocessImage(frame(), opts);
    expect(pre.info).toMatchObject({ width: 16, height: 16, format: 'raw' });
    expect(pre.tensor.length).toBe(3 * 32 * 32);
    const rgb = await loadRgb(frame(), { maxPixels: 1000 });
    expect([rgb.width, rgb.height]).toEqual([16, 16]);
    // BGR swapped to RGB: the first pixel's bytes 0, 7, 14 come out as 14, 7, 0.
    expect(Array.from(rgb.data.subarray(0, 3))).toEqual([14, 7, 0]);
  });
});
