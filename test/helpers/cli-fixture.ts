/**
 * The fixture of the tests that signal or kill the CLI: a small training folder (16 bottle images), a
 * large one (120, a fit that cannot finish within seconds), a small model with its backbone embedded
 * (score and export need no weights), and 20 test images. Needs the compiled CLI (dist/).
 */
import { afterAll, beforeAll } from 'vitest';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit } from '../../src/model/fit.js';
import { listImages } from '../../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS, REPO } from './shared.js';

export interface CliFixture {
  tmp: string;
  train: string;
  bigTrain: string;
  modelFile: string;
  images: string[];
}

export async function cliFixture(prefix: string): Promise<CliFixture> {
  if (!existsSync(path.join(REPO, 'dist', 'cli', 'main.js'))) throw new Error('the compiled CLI is missing: run `npm run build` first');
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  const link = async (name: string, files: string[]) => {
    const dir = path.join(tmp, name);
    await fs.mkdir(dir);
    for (const f of files) await fs.symlink(f, path.join(dir, path.basename(f)));
    return dir;
  };
  const train = await link('train', all.slice(0, 16));
  const bigTrain = await link('big-train', all.slice(0, 120));
  const model = await fit(all.slice(0, 6), { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, channels: 16, imageSize: 64, calibration: all.slice(6, 8), contaminationCheck: false });
  const modelFile = path.join(tmp, 'm.partscan');
  await model.save(modelFile);
  await model.dispose();
  const images = (await listImages(path.join(BOTTLE, 'test', 'good'))).slice(0, 20);
  return { tmp, train, bigTrain, modelFile, images };
}

/** Registers the fixture's creation (beforeAll) and removal (afterAll); its fields are set once the suite starts. */
export function useCliFixture(prefix: string): CliFixture {
  const fx = {} as CliFixture;
  beforeAll(async () => {
    Object.assign(fx, await cliFixture(prefix));
  }, 180_000);
  afterAll(async () => {
    if (fx.tmp) await fs.rm(fx.tmp, { recursive: true, force: true });
  });
  return fx;
}
