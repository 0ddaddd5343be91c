/**
 * Line monitoring on MVTec bottle (issue 23), fitted on train/good with the bundled MobileNetV2-int8
 * backbone at its defaults: quiet on test/good, an alarm on a real imaging change (25 % brighter, a
 * grayscale camera on a colour model), none on a change too small to matter. Each image is scored once.
 */

import path from 'node:path';
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fit } from '../src/model/fit.js';
import type { Model, ScoreResult } from '../src/model/model.js';
import { GLOBAL_STATS_FEATURES } from '../src/guards/image-stats.js';
import { monitorFitOptions } from './helpers/magnetic-tile-setups.js';
import { brighter, grayscale, replay, scoreOnce } from './helpers/monitor-streams.js';
import { BOTTLE } from './helpers/shared.js';

const images = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.png'))
    .sort()
    .map((f) => path.join(dir, f));

let model: Model;
let good: ScoreResult[];
const changed: Record<'brighter25' | 'brighter10' | 'gray', ScoreResult[]> = { brighter25: [], brighter10: [], gray: [] };

beforeAll(async () => {
  model = await fit(images(path.join(BOTTLE, 'train', 'good')), monitorFitOptions());
  const files = images(path.join(BOTTLE, 'test', 'good'));
  good = await scoreOnce(model, files);
  changed.brighter25 = await scoreOnce(model, await Promise.all(files.map((f) => brighter(f, 1.25))));
  changed.brighter10 = await scoreOnce(model, await Promise.all(files.map((f) => brighter(f, 1.1))));
  changed.gray = await scoreOnce(model, await Promise.all(files.map(grayscale)));
}, 600_000);

afterAll(async () => {
  await model?.dispose();
});

describe('line monitor on bottle', () => {
  it('test/good in file order does not alarm', () => {
    const r = replay(model, good);
    expect(r.alarm, r.reasons.join('; ')).toBe(false);
    expect(r.descriptorCharts).toBe('envelope');
  });

  it('test/good, then the same images 25 % brighter: an alarm within 20 images, naming the brightness change in per cent', () => {
    const r = replay(model, [...good, ...changed.brighter25]);
    expect(r.firstAlarmAt!).toBeGreaterThanOrEqual(good.length);
    expect(r.firstAlarmAt!).toBeLessThan(good.length + 20);
    // Brightness and the channel means move together: the first of them to cross says it.
    expect(r.reasons.join('\n')).toMatch(/^(brightness|mean_[rgb]) beyond the fitted range: .* a median \+\d+ % from the nearest training images/m);
  });

  it('test/good, then the same images in grayscale (a colour model): an alarm within 20 images, the scores above the reference', () => {
    const r = replay(model, [...good, ...changed.gray]);
    expect(r.firstAlarmAt!).toBeGreaterThanOrEqual(good.length);
    expect(r.firstAlarmAt!).toBeLessThan(good.length + 20);
    expect(r.reasons.join('\n')).toMatch(/^image scores above the out-of-sample reference: .* about \d+\.\d % of good parts would be NG \(expected \d+\.\d %\)/m);
  });

  it('a change of about 2 % (sharp modulate 1.1) is beyond the training images but below the floor: no alarm, unless the floor is lowered', () => {
    const stream = [...good, ...changed.brighter10];
    const r = replay(model, stream);
    expect(r.alarm, r.reasons.join('; ')).toBe(false);
    const noFloor = replay(model, stream, { minShift: Object.fromEntries(GLOBAL_STATS_FEATURES.map((f) => [f, 0])) });
    expect(noFloor.firstAlarmAt!).toBeGreaterThanOrEqual(good.length);
  });
});
