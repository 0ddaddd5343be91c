/**
 * Refactoring guard: for the same inputs, the model file is the one recorded below, so moving code (the
 * redesign of issue 16 and later ones) provably changes no result. A deliberate change of the format or
 * of the maths updates the records in the same commit, with the reason.
 *
 * ONNX Runtime picks kernels by instruction set, so float results (and the file's bytes) may
 * legitimately differ in the last bits on another CPU. The test therefore checks on every CPU:
 * - two fits give identical bytes (determinism);
 * - the file's content matches the recorded summary: every header field other than floats exactly,
 *   the channel indices exactly, and the float sections' sums, sums of squares and sampled values, and
 *   the thresholds, within 1e-4 relative — a changed result fails here on any CPU;
 * - on a CPU whose ISA signature has a recorded hash, the bytes exactly.
 * After a deliberate change, PARTSCAN_RECORD_MODEL_BYTES=1 rewrites the summary and prints the hash.
 */
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fit } from '../src/model/fit.js';
import { readModelFile } from '../src/model/model-file.js';
import { fromHalfBits } from '../src/util/float16.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

/**
 * sha256 of the model file per ISA signature (see isaSignature). Recorded on an AMD EPYC (AVX-512,
 * no AMX) for format 1.6 (1.5: float16 inverse covariances; 1.6: the calibration pool's row flags); the older AMX record went with format 1.2.
 */
const GOLDEN: Record<string, string> = {
  'avx2 avx512f avx512_vnni avx_vnni': '2f2eeecb1b4993218177565900864fa30595b298be90dd79a1e366f541ef4c92',
};

/** The ISA-independent summary of the same file (see summarise), recorded with the hash above. */
const SUMMARY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'model-bytes-summary.json');

function isaSignature(): string {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/));
  return ['avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8'].filter((f) => flags.has(f)).join(' ');
}

async function fittedModel(dir: string, name: string): Promise<{ file: string; sha256: string }> {
  const train = (await fs.readdir(path.join(BOTTLE, 'train', 'good'))).filter((n) => n.endsWith('.png')).sort().slice(0, 10);
  const model = await fit(
    train.map((n) => path.join(BOTTLE, 'train', 'good', n)),
    { backbone: { backbone: 'resnet50', weights: REF_WEIGHTS }, imageSize: 128, channels: 30, seed: 3, calibrationSplit: 0.3, threads: 2 },
  );
  const file = path.join(dir, name);
  await model.save(file);
  await model.dispose();
  return { file, sha256: createHash('sha256').update(await fs.readFile(file)).digest('hex') };
}

/** Numbers of a header as [path, value] (floats compared with tolerance), everything else as text. */
function flatten(v: unknown, p = '', out: { exact: string[]; floats: [string, number][] } = { exact: [], floats: [] }) {
  if (typeof v === 'number' && !Number.isInteger(v)) out.floats.push([p, v]);
  else if (Array.isArray(v)) v.forEach((x, i) => flatten(x, `${p}[${i}]`, out));
  else if (v && typeof v === 'object') {
    // A section's checksum depends on the last bits of its floats: the sections are compared below.
    for (const [k, x] of Object.entries(v)) if (!(k === 'sha256' && p.startsWith('sections'))) flatten(x, p ? `${p}.${k}` : k, out);
  } else out.exact.push(`${p}=${JSON.stringify(v)}`);
  return out;
}

/** The content of a model file, independent of the last bits of its floats. */
async function summarise(file: string): Promise<{ exact: string[]; floats: [string, number][] }> {
  const { header, sections } = await readModelFile(file);
  const { sections: table, ...rest } = header;
  const out = flatten({ ...rest, sections: table.filter((t) => t.name !== 'backbone.onnx') });
  for (const [name, raw] of sections) {
    if (name === 'backbone.onnx') continue;
    // float16 sections (format 1.5) are summarised by value, like the others.
    const data = raw instanceof Uint16Array ? Float32Array.from(raw, fromHalfBits) : raw;
    if (name === 'channels') {
      out.exact.push(`channels=${Array.from(data).join(',')}`);
      continue;
    }
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < data.length; i++) {
      sum += data[i]!;
      sq += data[i]! * data[i]!;
    }
    out.floats.push([`${name}.sum`, sum], [`${name}.sumSq`, sq]);
    for (let k = 0; k < 8; k++) out.floats.push([`${name}[${Math.floor((k * data.length) / 8)}]`, data[Math.floor((k * data.length) / 8)]!]);
  }
  return out;
}

describe('model file bytes', () => {
  it('match the recorded content on every CPU (bytes exactly on a recorded one), and are deterministic', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-bytes-'));
    try {
      const a = await fittedModel(dir, 'a.partscan');
      const b = await fittedModel(dir, 'b.partscan');
      expect(b.sha256).toBe(a.sha256);
      const summary = await summarise(a.file);
      if (process.env.PARTSCAN_RECORD_MODEL_BYTES === '1') {
        // A deliberate change: rewrite the record, and print the hash to put into GOLDEN.
        await fs.writeFile(SUMMARY, JSON.stringify(summary, null, 1) + '\n');
        console.log(`model-bytes: recorded; ISA "${isaSignature()}" gives ${a.sha256}`);
      }
      const recorded = JSON.parse(readFileSync(SUMMARY, 'utf8')) as typeof summary;
      expect(summary.exact).toEqual(recorded.exact);
      expect(summary.floats.map(([k]) => k)).toEqual(recorded.floats.map(([k]) => k));
      summary.floats.forEach(([k, v], i) => {
        const want = recorded.floats[i]![1];
        expect(Math.abs(v - want), `${k}: ${v} vs ${want}`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(want)));
      });
      const isa = isaSignature();
      const golden = GOLDEN[isa];
      if (golden !== undefined) expect(a.sha256, `ISA "${isa}"`).toBe(golden);
      else console.log(`model-bytes: no byte-exact record for ISA "${isa}" (content checked above); this CPU gives ${a.sha256}`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
