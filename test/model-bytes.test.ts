/**
 * Refactoring guard: for the same inputs, the model file is byte-identical to the one recorded below,
 * so moving code (the redesign of issue 16 and later ones) provably changes no result. A deliberate
 * change of the format or of the maths updates GOLDEN in the same commit, with the reason.
 *
 * ONNX Runtime picks kernels by instruction set, so float results (and the file) may legitimately
 * differ on another CPU: the golden hash is kept per ISA signature, and on a CPU without one the test
 * still requires two fits to give identical bytes and prints the hash to record.
 */
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fit } from '../src/model/fit.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

/** sha256 of the model file per ISA signature (see isaSignature). */
const GOLDEN: Record<string, string> = {
  'avx2 avx512f avx512_vnni avx_vnni amx_int8': 'c986990b4191f4064a62ac218a23b10718968940266d6ef661efdded55ef5a9b',
};

function isaSignature(): string {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/));
  return ['avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8'].filter((f) => flags.has(f)).join(' ');
}

async function fittedModelSha256(dir: string, name: string): Promise<string> {
  const train = (await fs.readdir(path.join(BOTTLE, 'train', 'good'))).filter((n) => n.endsWith('.png')).sort().slice(0, 10);
  const model = await fit(
    train.map((n) => path.join(BOTTLE, 'train', 'good', n)),
    { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, imageSize: 128, channels: 30, seed: 3, calibrationSplit: 0.3, threads: 2 },
  );
  const file = path.join(dir, name);
  await model.save(file);
  await model.dispose();
  return createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

describe('model file bytes', () => {
  it('are identical to the recorded ones for the same inputs (on this CPU family), and deterministic', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-bytes-'));
    try {
      const a = await fittedModelSha256(dir, 'a.partscan');
      const b = await fittedModelSha256(dir, 'b.partscan');
      expect(b).toBe(a);
      const isa = isaSignature();
      const golden = GOLDEN[isa];
      if (golden === undefined) console.log(`model-bytes: no golden hash for ISA "${isa}"; this CPU gives ${a}`);
      else expect(a, `ISA "${isa}"`).toBe(golden);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
