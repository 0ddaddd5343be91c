/**
 * Code in the docs runs as written: the Node.js snippet of docs/EXPORT.md (plain onnxruntime-node,
 * sharp and onnx-proto; the input side read from the model, not hard-coded) on an exported 224-px
 * model, giving the verdict partscan gives.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { exportModelOnnx } from '../src/export/onnx-export.js';
import { fit } from '../src/model/fit.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS, REPO } from './helpers/shared.js';

const run = promisify(execFile);
// Inside the repository so that the snippet's imports resolve from its node_modules (ignored by git).
const dir = path.join(REPO, 'node_modules', '.partscan-test', `docs-${process.pid}`);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** The fenced ```js block that follows `marker` in a markdown file. */
async function snippetAfter(file: string, marker: string): Promise<string> {
  const md = await fs.readFile(path.join(REPO, file), 'utf8');
  const from = md.indexOf(marker);
  expect(from, `${marker} in ${file}`).toBeGreaterThanOrEqual(0);
  const block = /```js\n([\s\S]*?)```/.exec(md.slice(from));
  expect(block, `a js block after ${marker}`).not.toBeNull();
  return block![1]!;
}

describe('docs/EXPORT.md', () => {
  it('the Node.js snippet reads the input size from the model and agrees with partscan on a 224-px model', async () => {
    await fs.mkdir(dir, { recursive: true });
    const train = (await listImages(path.join(BOTTLE, 'train', 'good'))).slice(0, 12);
    const model = await fit(train, { backbone: { name: 'resnet50', weights: REF_WEIGHTS }, imageSize: 224, channels: 20, calibrationSplit: 0.25, contaminationCheck: false });
    const onnxFile = path.join(dir, 'model.onnx');
    const part = path.join(BOTTLE, 'test', 'broken_large', '000.png');
    try {
      await exportModelOnnx(model, onnxFile);
      const code = (await snippetAfter('docs/EXPORT.md', 'Node.js (bit-identical'))
        .replaceAll("'model.onnx'", JSON.stringify(onnxFile))
        .replaceAll("'part.png'", JSON.stringify(part));
      expect(code).not.toMatch(/\b256\b/); // nothing hard-coded
      const script = path.join(dir, 'snippet.mjs');
      await fs.writeFile(script, code);
      const { stdout } = await run(process.execPath, [script], { cwd: dir, timeout: 120_000 });
      const expected = (await model.score(part)).verdict;
      expect(stdout.trim()).toBe(`${expected} [ 1, 1, 224, 224 ]`);
    } finally {
      await model.dispose();
    }
  }, 240_000);
});
