/**
 * Model-header validation (src/model/header-schema.ts): hand-made malformed headers, each with valid
 * checksums, must give a typed MODEL_FORMAT error naming the field; a fast-check fuzz test mutates a
 * valid header (written again with writeModelFile, so the checksums are recomputed) and accepts only a
 * typed error or a correct score. Model: bottle, ResNet50 (reference weights) layer1+layer2, 64 px, d 8.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { isPartscanError } from '../src/errors.js';
import { readModelFile, writeModelFile, type SectionData } from '../src/model/model-file.js';
import { loadBackbone } from '../src/backbone/registry.js';
import type { Backbone } from '../src/backbone/types.js';
import { normalizeScore } from '../src/postprocess/normalize.js';
import { imageNormalization, verdict } from '../src/postprocess/thresholds.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';
import { splitModelFile } from './helpers/model-files.js';
import { runCli } from '../src/cli/cli.js';

/** Fuzz iterations (each writes, loads and, when accepted, scores a model); PARTSCAN_FUZZ_RUNS raises it for a longer hunt. */
const FUZZ_RUNS = Number(process.env.PARTSCAN_FUZZ_RUNS ?? 250);
/** Runs of the fuzz of the backbone identity in a file with its backbone embedded (each loads an ORT session). */
const EMBEDDED_RUNS = Math.round(FUZZ_RUNS / 10);
/** fast-check seed: fixed, so every CI run tries the same cases (PARTSCAN_FUZZ_SEED for another hunt). */
const FUZZ_SEED = Number(process.env.PARTSCAN_FUZZ_SEED ?? 27);
/**
 * The codes a malformed header may give (docs/SIGNALS-AND-MODEL-HEADERS.md): MODEL_FORMAT for the
 * header itself, MODEL_CHECKSUM for an embedded graph that is not the header's, BACKBONE_MISMATCH for a
 * backbone identity that is not the one supplied or embedded.
 */
const HEADER_CODES = ['MODEL_FORMAT', 'MODEL_CHECKSUM', 'BACKBONE_MISMATCH'];

const spec = { backbone: 'resnet50', weights: REF_WEIGHTS, layers: ['layer1', 'layer2'] };
const image = path.join(BOTTLE, 'test', 'broken_large', '000.png');
let tmp: string;
let validFile: string;
let embeddedFile: string;
let header: Record<string, unknown>;
let sections: { name: string; data: SectionData; shape: number[] }[];
let shared: Backbone;
let reference: number;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-header-'));
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  const model = await fit(all.slice(0, 8), { backbone: spec, channels: 8, imageSize: 64, seed: 1, calibration: all.slice(8, 11), contaminationCheck: false });
  validFile = path.join(tmp, 'valid.partscan');
  await model.save(validFile, { embedBackbone: false });
  embeddedFile = path.join(tmp, 'embedded.partscan');
  await model.save(embeddedFile);
  reference = (await model.score(image)).imageScore;
  await model.dispose();
  ({ header, sections } = await splitModelFile(validFile));
  // One backbone for every load: its dispose is a no-op so each model's dispose leaves it usable.
  const backbone = await loadBackbone(spec);
  shared = { identity: backbone.identity, onnx: backbone.onnx, inputName: backbone.inputName, extract: (x) => backbone.extract(x), dispose: async () => undefined };
}, 180_000);

afterAll(async () => {
  await shared?.dispose();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

const clone = <T>(v: T): T => structuredClone(v);
let fileNo = 0;

/** Writes `h` with the (possibly changed) sections through the normal writer: checksums are valid. */
async function write(h: Record<string, unknown>, secs = sections): Promise<string> {
  const file = path.join(tmp, `m${fileNo++}.partscan`);
  await writeModelFile(file, h, secs);
  return file;
}

/** Loads and scores; returns the result or the thrown error. */
async function attempt(file: string): Promise<{ error?: unknown; result?: Awaited<ReturnType<Model['score']>> & object; model?: Model }> {
  let model: Model | undefined;
  try {
    model = await Model.load(file, { backbone: shared });
    const result = await model.score(image);
    return { result };
  } catch (error) {
    return { error };
  } finally {
    await model?.dispose();
    await fs.rm(file, { force: true });
  }
}

function set(obj: Record<string, unknown>, keys: (string | number)[], value: unknown): void {
  let o = obj as Record<string | number, unknown>;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  if (value === undefined) delete o[keys.at(-1)!];
  else o[keys.at(-1)!] = value;
}

function withChannel(index: number, value: number) {
  return sections.map((s) => {
    if (s.name !== 'channels') return s;
    const data = Int32Array.from(s.data as Int32Array);
    data[index] = value;
    return { ...s, data };
  });
}

describe('model header schema', () => {
  it('the valid file loads and scores as fitted, and unknown extra keys pass through', async () => {
    const h = clone(header);
    Object.assign(h, { precision: 'int8', calibrationQuantiles: { q50: 1.5, q99: 3 } });
    (h.thresholds as Record<string, unknown>).note = 'added by a later minor version';
    const model = await Model.load(await write(h), { backbone: shared });
    try {
      expect((model.header as unknown as Record<string, unknown>).precision).toBe('int8');
      expect((model.header.thresholds as unknown as Record<string, unknown>).note).toBe('added by a later minor version');
      expect((await model.score(image)).imageScore).toBeCloseTo(reference, 5);
    } finally {
      await model.dispose();
    }
  });

  // The report: 12 hand-made malformed headers gave 7 typed errors, 2 acceptances, a bare
  // TypeError (malformed thresholds) and untyped channel-range text. Now every one is MODEL_FORMAT with its path.
  const P = () => (header.embedding as { gridH: number; gridW: number }).gridH * (header.embedding as { gridW: number }).gridW;
  const cases: { name: string; field: RegExp; make: () => { h: Record<string, unknown>; secs?: typeof sections } }[] = [
    { name: 'thresholds without imageStats', field: /thresholds\.imageStats/, make: () => { const h = clone(header); set(h, ['thresholds', 'imageStats'], undefined); return { h }; } },
    { name: 'thresholds.pixelStats a number', field: /thresholds\.pixelStats/, make: () => { const h = clone(header); set(h, ['thresholds', 'pixelStats'], 3); return { h }; } },
    { name: 'thresholds.image a string', field: /thresholds\.image\b/, make: () => { const h = clone(header); set(h, ['thresholds', 'image'], '12.5'); return { h }; } },
    { name: 'thresholds.imageStats min > max', field: /thresholds\.imageStats/, make: () => { const h = clone(header); set(h, ['thresholds', 'imageStats'], { min: 9, max: 1 }); return { h }; } },
    { name: 'thresholds.band outside [0, 1]', field: /thresholds\.band/, make: () => { const h = clone(header); set(h, ['thresholds', 'band'], { low: 0.7, high: 0.2 }); return { h }; } },
    { name: 'channel index 99999', field: /sections\.channels\[3\].*99999/, make: () => ({ h: clone(header), secs: withChannel(3, 99999) }) },
    { name: 'channel index -1', field: /sections\.channels\[0\]/, make: () => ({ h: clone(header), secs: withChannel(0, -1) }) },
    { name: 'gridH disagrees with the sections', field: /sections\[1\].*grid/, make: () => { const h = clone(header); set(h, ['embedding', 'gridH'], (h.embedding as { gridH: number }).gridH / 2); return { h }; } },
    { name: 'd disagrees with the sections', field: /sections\[0\]/, make: () => { const h = clone(header); set(h, ['embedding', 'channels'], 9); return { h }; } },
    {
      name: 'mean section shaped [P, d+1]',
      field: /sections\[1\]/,
      make: () => ({ h: clone(header), secs: sections.map((s) => (s.name === 'mean' ? { ...s, data: new Float64Array(P() * 9), shape: [P(), 9] } : s)) }),
    },
    { name: 'required section invCov missing', field: /sections.*invCov/, make: () => ({ h: clone(header), secs: sections.filter((s) => s.name !== 'invCov') }) },
    { name: 'totalChannels not the sum of the layer channels', field: /embedding\.totalChannels/, make: () => { const h = clone(header); set(h, ['embedding', 'totalChannels'], 1792); return { h }; } },
    { name: 'backbone strides shorter than layers', field: /backbone\.strides/, make: () => { const h = clone(header); set(h, ['backbone', 'strides'], [4]); return { h }; } },
    { name: 'preprocess.mean of two values', field: /preprocess\.mean/, make: () => { const h = clone(header); set(h, ['preprocess', 'mean'], [0.5, 0.5]); return { h }; } },
    { name: 'preprocess.imageSize 10^9', field: /preprocess\.imageSize/, make: () => { const h = clone(header); set(h, ['preprocess', 'imageSize'], 1e9); return { h }; } },
    { name: 'postprocess.blurSigma 0', field: /postprocess\.blurSigma/, make: () => { const h = clone(header); set(h, ['postprocess', 'blurSigma'], 0); return { h }; } },
    { name: 'roi described without its section', field: /roi/, make: () => { const h = clone(header); set(h, ['roi'], { width: 64, height: 64 }); return { h }; } },
    { name: 'no format tag', field: /format/, make: () => { const h = clone(header); set(h, ['format'], undefined); return { h }; } },
    {
      name: 'channel indices not increasing',
      field: /sections\.channels\[3\].*strictly increasing/,
      make: () => ({ h: clone(header), secs: withChannel(3, (sections.find((s) => s.name === 'channels')!.data as Int32Array)[2]!) }),
    },
    { name: 'backbone.embedded without a backbone.onnx section', field: /backbone\.embedded.*backbone\.onnx/, make: () => { const h = clone(header); set(h, ['backbone', 'embedded'], true); return { h }; } },
    { name: 'two sections of the same name', field: /sections\[3\]\.name: duplicate section "channels"/, make: () => ({ h: clone(header), secs: [...sections.slice(0, 3), sections[0]!, ...sections.slice(3)] }) },
    { name: 'a drift reference of 11 features', field: /drift\.features/, make: () => { const h = clone(header); const d = h.drift as { features: string[]; transform: string[]; center: number[]; scale: number[] }; d.features.push('extra'); d.transform.push('linear'); d.center.push(0); d.scale.push(1); return { h }; } },
  ];

  it.each(cases)('$name → MODEL_FORMAT naming the field', async ({ make, field }) => {
    const { h, secs } = make();
    const { error, result } = await attempt(await write(h, secs));
    expect(result, 'accepted a malformed header').toBeUndefined();
    expect(isPartscanError(error, 'MODEL_FORMAT'), String(error)).toBe(true);
    const e = error as { message: string; remedy?: string; file?: string };
    expect(e.message).toMatch(field);
    expect(e.remedy).toBeTruthy();
    expect(e.file).toBeTruthy();
  });

  it(`fuzz: ${FUZZ_RUNS} mutated headers with valid checksums give a typed error or a correct score`, async () => {
    const leafPaths: (string | number)[][] = [];
    const walk = (v: unknown, p: (string | number)[]) => {
      if (p.length) leafPaths.push(p);
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
    };
    walk(header, []);
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.integer({ min: -5, max: 2000 }),
      fc.double({ noNaN: true, min: -1e6, max: 1e6 }),
      fc.constantFrom(0, -1, 1e308, 99999, 0.5, '', 'x', null, true, [], {}),
    );
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('set' as const), path: fc.nat(leafPaths.length - 1), value }),
      fc.record({ op: fc.constant('delete' as const), path: fc.nat(leafPaths.length - 1) }),
      fc.record({ op: fc.constant('extra' as const), path: fc.nat(leafPaths.length - 1), value }),
      fc.record({ op: fc.constant('channel' as const), index: fc.nat(7), to: fc.integer({ min: -3, max: 2000 }) }),
      fc.record({ op: fc.constant('shape' as const), section: fc.nat(sections.length - 1), dim: fc.integer({ min: 0, max: 3 }), to: fc.integer({ min: 0, max: 600 }) }),
    );
    const outcomes = new Map<string, number>();
    const SCORE_PATHS = /^(preprocess|postprocess)/; // fields that legitimately change the raw score
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (ms) => {
        const h = clone(header);
        let secs = sections;
        let changesScore = false;
        for (const m of ms) {
          if (m.op === 'channel') {
            secs = secs.map((s) => (s.name === 'channels' ? { ...s, data: Int32Array.from(s.data as Int32Array, (v, i) => (i === m.index ? m.to : v)) } : s));
            changesScore = true;
          } else if (m.op === 'shape') {
            secs = secs.map((s, i) => (i === m.section ? { ...s, shape: s.shape.map((v, k) => (k === m.dim ? m.to : v)) } : s));
          } else {
            const p = leafPaths[m.path]!;
            let parent: unknown = h;
            for (const k of p.slice(0, -1)) parent = (parent as Record<string | number, unknown> | undefined)?.[k];
            if (!parent || typeof parent !== 'object') continue; // an earlier mutation removed the path
            const target = parent as Record<string | number, unknown>;
            const key = p.at(-1)!;
            if (m.op === 'delete') {
              if (Array.isArray(target)) target.splice(Number(key), 1);
              else delete target[key];
            } else if (m.op === 'set') target[key] = m.value;
            else if (!Array.isArray(target)) target[`x_${String(key)}`] = m.value; // an unknown key
            if (m.op !== 'extra' && SCORE_PATHS.test(String(p[0]))) changesScore = true;
          }
        }
        let file: string;
        try {
          file = await write(h, secs);
        } catch (e) {
          // The writer itself refuses some section shapes (byte length vs shape): that is the writer's
          // own typed check, not the reader's.
          expect(isPartscanError(e), String(e)).toBe(true);
          outcomes.set('write refused', (outcomes.get('write refused') ?? 0) + 1);
          return;
        }
        const { error, result } = await attempt(file);
        if (error !== undefined) {
          expect(isPartscanError(error), `untyped ${String((error as Error)?.stack ?? error)} for ${JSON.stringify(ms)}`).toBe(true);
          const code = (error as { code: string }).code;
          expect(HEADER_CODES, `${String(error)} for ${JSON.stringify(ms)}`).toContain(code);
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
          return;
        }
        outcomes.set('scored', (outcomes.get('scored') ?? 0) + 1);
        const r = result!;
        expect(Number.isFinite(r.imageScore), `score ${r.imageScore} for ${JSON.stringify(ms)}`).toBe(true);
        if (!changesScore) expect(Math.abs(r.imageScore - reference), JSON.stringify(ms)).toBeLessThanOrEqual(1e-4 * Math.max(1, reference));
        const t = (h.thresholds ?? undefined) as Parameters<typeof imageNormalization>[0] | undefined;
        if (t) {
          expect(r.normalizedScore).toBeCloseTo(normalizeScore(r.imageScore, imageNormalization(t)), 9);
          expect(r.verdict).toBe(verdict(r.normalizedScore!, t.band));
        } else expect(r.verdict).toBeUndefined();
      }),
      { numRuns: FUZZ_RUNS, seed: FUZZ_SEED },
    );
    // Visible in the test log: how the mutations ended.
    console.log(`header fuzz: ${FUZZ_RUNS} runs, seed ${FUZZ_SEED} →`, Object.fromEntries(outcomes));
    expect(outcomes.get('scored') ?? 0).toBeGreaterThan(0);
    expect(outcomes.get('MODEL_FORMAT') ?? 0).toBeGreaterThan(0);
  }, 600_000);
  it(`fuzz: ${EMBEDDED_RUNS} mutated backbone identities of a file with its backbone embedded give a typed error or a correct score`, async () => {
    const contents = await readModelFile(embeddedFile);
    const { sections: table, ...h0 } = contents.header;
    const secs = table.map((t) => ({ name: t.name, data: contents.sections.get(t.name)!, shape: [...t.shape] }));
    const b0 = h0.backbone as Record<string, unknown>;
    const keys = Object.keys(b0);
    // Mostly plausible values (other layer names, counts, strides, the other input name), so that many
    // mutated identities pass the schema and reach the backbone graph.
    const value = fc.oneof(
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
      {
        weight: 4,
        arbitrary: fc.constantFrom('layer1', 'layer2', 'layer3', 'input', 'x', 4, 8, 256, [256, 512], [512, 256], [256, 500], [128, 640], ['layer2', 'layer1'], ['layer1', 'layer3'], [4, 8], [8, 4], [4, 16], true, false, 'f'.repeat(64)),
      },
    );
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ key: fc.constantFrom(...keys), value, del: fc.nat(5).map((v) => v === 0) }), { minLength: 1, maxLength: 2 }), async (ms) => {
        const h = clone(h0) as Record<string, unknown>;
        const b = h.backbone as Record<string, unknown>;
        for (const m of ms) {
          if (m.del) delete b[m.key];
          else b[m.key] = m.value;
        }
        const file = await write(h, secs);
        let model: Model | undefined;
        try {
          model = await Model.load(file);
          const r = await model.score(image);
          outcomes.set('scored', (outcomes.get('scored') ?? 0) + 1);
          // A backbone identity that still loads and scores must give the fitted model's score.
          expect(Math.abs(r.imageScore - reference), JSON.stringify(ms)).toBeLessThanOrEqual(1e-4 * Math.max(1, reference));
        } catch (e) {
          expect(isPartscanError(e), `untyped ${String((e as Error)?.stack ?? e)} for ${JSON.stringify(ms)}`).toBe(true);
          const code = (e as { code: string }).code;
          expect([...HEADER_CODES, 'ONNX_TENSOR_NOT_FOUND'], `${String(e)} for ${JSON.stringify(ms)}`).toContain(code);
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
        } finally {
          await model?.dispose();
          await fs.rm(file, { force: true });
        }
      }),
      { numRuns: EMBEDDED_RUNS, seed: FUZZ_SEED },
    );
    console.log(`embedded-backbone fuzz: ${EMBEDDED_RUNS} runs, seed ${FUZZ_SEED} →`, Object.fromEntries(outcomes));
    expect(outcomes.get('MODEL_FORMAT') ?? 0).toBeGreaterThan(0);
  }, 600_000);

  it('partscan info and score refuse a malformed header with one line naming the field (exit 2)', async () => {
    const h = clone(header);
    set(h, ['thresholds', 'imageStats'], undefined);
    const file = await write(h);
    for (const args of [['info', file], ['score', file, image, '--out', path.join(tmp, 'never'), '--weights', REF_WEIGHTS]]) {
      const err: string[] = [];
      const code = await runCli(['node', 'partscan', ...args], { out: () => undefined, err: (t) => void err.push(t) });
      expect(code).toBe(2);
      expect(err.join('')).toMatch(/^partscan: .*header field thresholds\.imageStats: .*re-fit the model/);
    }
  });
});
