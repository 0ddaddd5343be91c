/**
 * A small bottle model for API tests: 12 good training images, 128 px, d=30 on the ResNet-50 fixture
 * weights, a quarter held out for calibration, in a temp folder of its own.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit } from '../../src/model/fit.js';
import type { Model } from '../../src/model/model.js';
import { listImages } from '../../src/data/index.js';
import { BOTTLE, REF_WEIGHTS } from './shared.js';

/** The fixture backbone: ResNet-50 with the seeded random weights of ../shared/reference. */
export const FIXTURE_BACKBONE = { name: 'resnet50', weights: REF_WEIGHTS };

/** Fits the small bottle model; `tmp` is a new temp folder (prefix `partscan-<name>-`) the caller removes. */
export async function smallBottleModel(name: string): Promise<{ tmp: string; train: string[]; model: Model }> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), `partscan-${name}-`));
  const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 12);
  const model = await fit(train, { backbone: FIXTURE_BACKBONE, imageSize: 128, channels: 30, calibrationSplit: 0.25 });
  return { tmp, train, model };
}
