/**
 * The fuzz campaign (docs/GUARDS.md, "Fuzz campaign"): fast-check generates hostile inputs of the four
 * kinds partscan reads from elsewhere and feeds each to the code that reads it, as a user would:
 *
 * - model files: header mutations (any field, deep nesting, huge sizes), section table mutations
 *   (offsets, lengths, shapes, types, names, duplicates, phantom sections in a sparse file), a lying
 *   header length, truncation — loaded with Model.load and, when accepted, scored;
 * - ONNX graphs: size-producing and shape operators with random constants spliced into a small
 *   backbone, and random byte damage — inspected, and when accepted run by ONNX Runtime;
 * - queue job payloads: score and fit jobs whose paths are FIFOs, devices, symlinks out of the root,
 *   relative climbs, missing files, with random options — processed as a worker with --allow-root does;
 * - queue result records: garbled, altered or forged — read back as the producer does.
 *
 * Every case must end in a result or a typed PartscanError, within 10 s; the process's peak RSS must
 * stay under 2 GB; nothing may be written outside the worker's root. Fixed seed and run counts per CI
 * run (PARTSCAN_FUZZ_SEED / PARTSCAN_FUZZ_RUNS for longer hunts); the outcome counts are logged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { isPartscanError } from '../src/errors.js';
import type { SectionData } from '../src/model/model-file.js';
import { loadBackbone } from '../src/backbone/registry.js';
import { OrtBackbone } from '../src/backbone/ort-backbone.js';
import type { Backbone } from '../src/backbone/types.js';
import { inspectOnnxGraph } from '../src/onnx/graph-inspect.js';
import { encodeModel, floatInitializer, int64Initializer, makeNode, OnnxDataType, tensorValueInfo } from '../src/onnx/graph.js';
import { fileSha256, ModelCache } from '../src/queue/model-cache.js';
import { processJob } from '../src/queue/worker.js';
import { realRoots } from '../src/queue/job-paths.js';
import { readRecord, recordKey, signRecord } from '../src/queue/records.js';
import { RECORDS_DIR } from '../src/queue/jobs.js';
import { listImages } from '../src/data/loaders.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';
import { splitModelFile, writeRawModel } from './helpers/model-files.js';
import { listAll } from './helpers/processes.js';

/** The campaign's seed: fixed, so each CI run tries the same cases. */
const SEED = Number(process.env.PARTSCAN_FUZZ_SEED ?? 2027);
const SCALE = Number(process.env.PARTSCAN_FUZZ_RUNS ?? 100) / 100;
const RUNS = { models: Math.round(100 * SCALE), graphs: Math.round(80 * SCALE), jobs: Math.round(80 * SCALE), records: Math.round(300 * SCALE) };
/** A case that takes longer is a hang. */
const CASE_MS = 10_000;
const RSS_LIMIT = 2 * 1024 ** 3;

const spec = { backbone: 'resnet50', weights: REF_WEIGHTS, layers: ['layer1', 'layer2'] };
let tmp: string;
let root: string;
let outside: string;
let header: Record<string, unknown>;
let sections: { name: string; data: SectionData; shape: number[] }[];
let shared: Backbone;
let modelFile: string;
let sha: string;
let image: string;
let fifo: string;
const outcomes: Record<string, Record<string, number>> = {};

function tally(kind: string, outcome: string): void {
  const o = (outcomes[kind] ??= {});
  o[outcome] = (o[outcome] ?? 0) + 1;
}

/** `arb` one time in three, else `none`: each kind of damage alone, often enough that files also pass. */
function rarely<T, N>(arb: fc.Arbitrary<T>, none: N): fc.Arbitrary<T | N> {
  return fc.oneof({ weight: 2, arbitrary: fc.constant(none) }, { weight: 1, arbitrary: arb });
}

/** Runs `fn`; its result, or its error — which must be typed — within CASE_MS. */
async function bounded<T>(what: () => string, fn: () => Promise<T>): Promise<{ value?: T; code?: string }> {
  let timer: NodeJS.Timeout | undefined;
  const t0 = performance.now();
  try {
    const value = await Promise.race([fn(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('HANG')), CASE_MS)))]);
    return { value };
  } catch (e) {
    expect((e as Error).message === 'HANG', `hang over ${CASE_MS} ms: ${what()}`).toBe(false);
    expect(isPartscanError(e), `untyped ${String((e as Error)?.stack ?? e)} for ${what()}`).toBe(true);
    return { code: (e as { code: string }).code };
  } finally {
    clearTimeout(timer);
    expect(performance.now() - t0, `took over ${CASE_MS} ms: ${what()}`).toBeLessThan(CASE_MS);
  }
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-fuzz-'));
  root = path.join(tmp, 'root');
  outside = path.join(tmp, 'outside');
  await fs.mkdir(path.join(root, 'train'), { recursive: true });
  await fs.mkdir(outside);
  const all = await listImages(path.join(BOTTLE, 'train', 'good'));
  for (const f of all.slice(20, 23)) await fs.copyFile(f, path.join(root, 'train', path.basename(f)));
  image = path.join(root, 'part.png');
  await fs.copyFile(path.join(BOTTLE, 'test', 'broken_small', '000.png'), image);
  await fs.copyFile(image, path.join(outside, 'part.png'));
  await fs.symlink(outside, path.join(root, 'out-link'));
  fifo = path.join(root, 'fifo.png');
  execFileSync('mkfifo', [fifo]);
  const model = await fit(all.slice(0, 8), { backbone: spec, channels: 8, imageSize: 64, seed: 1, calibration: all.slice(8, 11), contaminationCheck: false });
  modelFile = path.join(root, 'm.partscan');
  await model.save(modelFile, { embedBackbone: false });
  await model.dispose();
  sha = await fileSha256(modelFile);
  ({ header, sections } = await splitModelFile(modelFile));
  const backbone = await loadBackbone(spec);
  shared = { identity: backbone.identity, onnx: backbone.onnx, inputName: backbone.inputName, extract: (x) => backbone.extract(x), dispose: async () => undefined };
}, 300_000);

afterAll(async () => {
  console.log(`fuzz campaign, seed ${SEED}:`, JSON.stringify(outcomes));
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('fuzz campaign', () => {
  it(`model files: ${RUNS.models} hostile containers load and score, or give a typed error`, async () => {
    const leaves: (string | number)[][] = [];
    const walk = (v: unknown, p: (string | number)[]) => {
      if (p.length) leaves.push(p);
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
    };
    walk(header, []);
    const big = fc.constantFrom(2 ** 31, 2 ** 32 - 1, 2 ** 40, 2 ** 53 - 1, 1e308, -1, 0, 4096, 1024, 16, 15, 60, 64);
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), big, fc.double({ noNaN: true }), fc.string());
    const headerMutation = fc.oneof(
      fc.record({ op: fc.constant('set' as const), at: fc.nat(leaves.length - 1), value }),
      fc.record({ op: fc.constant('delete' as const), at: fc.nat(leaves.length - 1) }),
      fc.record({ op: fc.constant('tiling' as const), tile: big, overlap: big }),
      fc.record({ op: fc.constant('deep' as const), depth: fc.constantFrom(10, 63, 65, 1000, 100_000) }),
    );
    const tableMutation = fc.record({
      at: fc.nat(8),
      field: fc.constantFrom('offset', 'byteLength', 'shape', 'dtype', 'name', 'sha256', 'dup', 'drop'),
      value: fc.oneof(big, fc.constantFrom('mean', 'invCov', 'channels', 'roi', 'backbone.onnx', 'm2', 'x', 'float64', 'uint8', 'int64', [], [2 ** 20, 2 ** 20])),
    });
    const phantom = fc.record({
      name: fc.constantFrom('future', 'mean', 'backbone.onnx', 'samples'),
      dtype: fc.constantFrom('uint8' as const, 'float64' as const),
      log2: fc.integer({ min: 4, max: 35 }),
      gap: fc.nat(2 ** 20),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          header: rarely(fc.array(headerMutation, { minLength: 1, maxLength: 3 }), []),
          table: rarely(fc.array(tableMutation, { minLength: 1, maxLength: 3 }), []),
          phantoms: rarely(fc.array(phantom, { minLength: 1, maxLength: 2 }), []),
          headerLength: rarely(fc.oneof(fc.nat(), fc.constant(2 ** 32 - 1)), null),
          truncate: rarely(fc.double({ min: 0, max: 1, noNaN: true }), null),
        }),
        async (c) => {
          const h = structuredClone(header);
          let headerText: string | undefined;
          for (const m of c.header) {
            if (m.op === 'tiling') h.tiling = { tile: m.tile, overlap: m.overlap };
            else if (m.op === 'deep') headerText = JSON.stringify({ ...h, sections: [] }).replace(/^\{/, `{"deep":${'['.repeat(m.depth)}${']'.repeat(m.depth)},`);
            else {
              const p = leaves[m.at]!;
              let parent: unknown = h;
              for (const k of p.slice(0, -1)) parent = (parent as Record<string | number, unknown> | undefined)?.[k];
              if (!parent || typeof parent !== 'object') continue;
              if (m.op === 'delete') delete (parent as Record<string | number, unknown>)[p.at(-1)!];
              else (parent as Record<string | number, unknown>)[p.at(-1)!] = m.value;
            }
          }
          let offset = 4 * 1024 * 1024;
          const phantoms = c.phantoms.map((p) => {
            const byteLength = 2 ** p.log2;
            const ph = { name: p.name, dtype: p.dtype, shape: [byteLength / (p.dtype === 'uint8' ? 1 : 8)], offset: offset + p.gap * 64, byteLength };
            offset = ph.offset + byteLength;
            return ph;
          });
          const file = path.join(tmp, 'fuzz.partscan');
          await fs.rm(file, { force: true });
          await writeRawModel(file, h, sections, {
            phantoms,
            ...(c.headerLength !== null ? { headerLength: c.headerLength } : {}),
            ...(headerText !== undefined ? { headerText } : {}),
            mutateTable: (table) => {
              for (const m of c.table) {
                const e = table[m.at % table.length];
                if (!e) continue;
                if (m.field === 'dup') table.push(structuredClone(e));
                else if (m.field === 'drop') table.splice(m.at % table.length, 1);
                else e[m.field] = m.field === 'shape' && !Array.isArray(m.value) ? [m.value] : m.value;
              }
            },
          });
          if (c.truncate !== null) {
            const size = (await fs.stat(file)).size;
            await fs.truncate(file, Math.floor(size * c.truncate));
          }
          const r = await bounded(
            () => JSON.stringify(c).slice(0, 2000),
            async () => {
              const model = await Model.load(file, { backbone: shared });
              try {
                const s = await model.score(image);
                expect(Number.isFinite(s.imageScore) || s.imageScore === Infinity, `score ${s.imageScore}`).toBe(true);
                return 'scored';
              } finally {
                await model.dispose();
              }
            },
          );
          tally('models', r.code ?? r.value!);
        },
      ),
      { numRuns: RUNS.models, seed: SEED },
    );
  }, 600_000);

  it(`ONNX graphs: ${RUNS.graphs} spliced or damaged backbones are refused, or run within the budget`, async () => {
    const F = OnnxDataType.FLOAT;
    const ops = fc.oneof(
      fc.record({ op: fc.constantFrom('ConstantOfShape', 'Expand', 'Tile', 'Reshape', 'Pad', 'Range', 'Resize', 'Conv', 'NonZero', 'Unknown', 'Identity'), dims: fc.array(fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 8 }) }, { weight: 1, arbitrary: fc.integer({ min: -2, max: 70 }) }, { weight: 1, arbitrary: fc.constantFrom(2 ** 14, 2 ** 20, 2 ** 31) }), { minLength: 1, maxLength: 4 }) }),
    );
    const graphFor = (o: { op: string; dims: number[] }): Uint8Array => {
      const inits = [floatInitializer('w', [8, 3, 3, 3], new Float32Array(216).fill(0.01)), int64Initializer('c', [o.dims.length], o.dims), floatInitializer('one', [1], new Float32Array([1]))];
      const bombInputs: Record<string, string[]> = {
        ConstantOfShape: ['c'], Expand: ['one', 'c'], Tile: ['conv', 'c'], Reshape: ['conv', 'c'], Pad: ['conv', 'c'], Range: ['one', 'c', 'one'],
        Resize: ['conv', '', '', 'c'], Conv: ['conv', 'w'], NonZero: ['conv'], Unknown: ['conv'], Identity: ['conv'],
      };
      const nodes = [
        makeNode('Conv', ['input', 'w'], ['conv'], 'conv', { pads: [1, 1, 1, 1] }),
        makeNode(o.op, bombInputs[o.op]!, ['bomb'], 'bomb'),
        makeNode('Cast', ['bomb'], ['bomb.f'], 'cast', { to: F }),
        makeNode('ReduceMax', ['bomb.f'], ['bomb.max'], 'reduce', { keepdims: 0 }),
        makeNode('Add', ['conv', 'bomb.max'], ['layer1'], 'add'),
      ];
      return encodeModel({ graphName: 'fuzz', nodes, initializers: inits, inputs: [tensorValueInfo('input', F, ['N', 3, 'H', 'W'])], outputs: [tensorValueInfo('layer1', F, ['N', 8, 'H', 'W'])], opset: 17, irVersion: 8, producerVersion: 'fuzz' });
    };
    const damage = fc.array(fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.nat(255) }), { maxLength: 4 });
    await fc.assert(
      fc.asyncProperty(ops, rarely(damage, []), rarely(fc.double({ min: 0, max: 1, noNaN: true }), null), async (o, hits, cut) => {
        let bytes = graphFor(o);
        if (hits.length || cut !== null) {
          bytes = Uint8Array.from(bytes);
          for (const h of hits) bytes[Math.floor(h.at * (bytes.length - 1))] = h.byte;
          if (cut !== null) bytes = bytes.subarray(0, Math.floor(cut * bytes.length));
        }
        const r = await bounded(
          () => JSON.stringify({ o, hits, cut }),
          async () => {
            inspectOnnxGraph(bytes, { source: 'fuzz.onnx', inputSize: 32 });
            const b = await OrtBackbone.create(bytes, { name: 'fuzz', sha256: '0'.repeat(64), layers: ['layer1'], strides: [1], channels: [8] }, { intraOpNumThreads: 1 });
            try {
              await b.extract({ data: new Float32Array(3 * 32 * 32), dims: [1, 3, 32, 32] });
              return 'ran';
            } finally {
              await b.dispose();
            }
          },
        );
        tally('graphs', r.code ?? r.value!);
        expect(process.memoryUsage().rss).toBeLessThan(RSS_LIMIT);
      }),
      { numRuns: RUNS.graphs, seed: SEED },
    );
  }, 600_000);

  it(`job payloads: ${RUNS.jobs} hostile score and fit jobs end in a result or a typed error, and write nothing outside the root`, async () => {
    // The worker serves the root and the (read-only) reference weights' folder.
    const roots = await realRoots([root, path.dirname(REF_WEIGHTS)]);
    const cache = new ModelCache({ threads: 1 });
    const before = listAll(outside);
    const junk = Buffer.from('not an image').toString('base64');
    const small = (await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 9, g: 99, b: 199 } } }).png().toBuffer()).toString('base64');
    const rel = (p: string) => path.relative(process.cwd(), p);
    const pathArb = fc.constantFrom(
      image,
      image,
      image, fifo, '/dev/zero', '/dev/null', path.join(root, 'out-link', 'part.png'), path.join(outside, 'part.png'), rel(path.join(outside, 'part.png')),
      path.join(root, 'missing.png'), root, path.join(root, 'train'), 'relative.png', `${root}/../outside/part.png`, '',
    );
    const dirArb = fc.constantFrom(path.join(root, 'run'), path.join(root, 'out-link', 'run'), outside, path.join(root, 'm.partscan'), rel(path.join(outside, 'r')), fifo);
    // Mostly well-formed payloads (they pass the schema and reach the files), each part hostile now and then.
    const score = fc.record({
      model: fc.record({ path: rarely(pathArb, modelFile), sha256: rarely(fc.constant('0'.repeat(64)), sha) }),
      image: rarely(fc.record({ bytes: fc.constantFrom(junk, small) }), null).chain((bytes) => (bytes ? fc.constant(bytes) : fc.record({ path: fc.oneof(fc.constant(image), pathArb) }))),
      options: fc.record({ minArea: fc.nat(100) }, { requiredKeys: [] }),
      run: fc.oneof(
        fc.constant(undefined),
        fc.record({ dir: rarely(dirArb, path.join(root, 'run')), stem: rarely(fc.constantFrom('a.b', 'x-1', '...'), 'x'), exports: fc.record({ overlay: fc.boolean(), mask: fc.boolean() }), recordKey: fc.constant('a'.repeat(64)) }),
      ),
    });
    const absolute = (p: string) => (path.isAbsolute(p) ? p : path.join(root, 'missing'));
    const fitJob = fc.record({
      data: rarely(fc.oneof(fc.constantFrom(fifo, outside, path.join(root, 'out-link'), '/dev/zero'), fc.array(pathArb.map(absolute), { minLength: 1, maxLength: 3 })), path.join(root, 'train')),
      out: rarely(fc.constantFrom(path.join(root, 'out-link', 'fit.partscan'), path.join(outside, 'fit.partscan'), fifo, path.join(root, 'train')), path.join(root, 'fit.partscan')),
      options: fc.record({
        backbone: rarely(fc.constantFrom('nope', rel(path.join(outside, 'x.onnx')), `${fifo}.onnx`, '/dev/zero.onnx'), 'resnet50'),
        weights: rarely(fc.constantFrom(fifo, '/dev/zero', path.join(root, 'out-link', 'w.safetensors')), REF_WEIGHTS),
        channels: fc.constantFrom(4, 2000),
        imageSize: fc.constant(32),
        layers: fc.constant(['layer1']),
        calibrationSplit: fc.constant(0),
        embedBackbone: fc.constant(false),
      }),
    });
    const job = fc.oneof(
      { weight: 6, arbitrary: fc.record({ name: fc.constant('score'), data: score.map((d) => JSON.parse(JSON.stringify(d)) as unknown) }) },
      { weight: 3, arbitrary: fc.record({ name: fc.constant('fit'), data: fitJob as fc.Arbitrary<unknown> }) },
      { weight: 1, arbitrary: fc.record({ name: fc.constantFrom('score', 'fit', 'other'), data: fc.jsonValue({ maxDepth: 3 }) }) },
    );
    try {
      await fc.assert(
        fc.asyncProperty(job, fc.oneof({ weight: 5, arbitrary: fc.constantFrom('j1', 'job.2') }, { weight: 1, arbitrary: fc.constantFrom('../x', '', 'a/b') }), async (j, id) => {
          await fs.mkdir(path.join(root, 'run', RECORDS_DIR), { recursive: true });
          const r = await bounded(
            () => JSON.stringify({ id, ...j }).slice(0, 2000),
            async () => {
              await processJob({ id, name: j.name, data: j.data, updateProgress: async () => undefined }, cache, roots);
              return 'done';
            },
          );
          tally('jobs', r.code ?? r.value!);
        }),
        { numRuns: RUNS.jobs, seed: SEED },
      );
    } finally {
      await cache.dispose();
    }
    expect(listAll(outside), 'a job wrote outside the root').toEqual(before);
  }, 600_000);

  it(`result records: ${RUNS.records} garbled, altered or forged records are read back as valid only when intact`, async () => {
    const jobId = 'run1.3';
    const key = recordKey(Buffer.alloc(32, 7), jobId);
    const record = {
      jobId,
      result: { file: image, imageScore: 12.5, normalizedScore: 0.7, verdict: 'NG', regions: [], width: 512, height: 512, outputs: { overlay: 'x.overlay.png' } },
      worker: 'host:1',
    };
    const text = signRecord(record as never, key);
    const file = path.join(tmp, 'record.json');
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('byte' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), to: fc.nat(255) }),
      fc.record({ op: fc.constant('cut' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
      fc.record({ op: fc.constant('set' as const), key: fc.constantFrom('jobId', 'worker', 'result', 'failure', 'mac', 'extra'), value: fc.jsonValue({ maxDepth: 3 }) }),
      fc.record({ op: fc.constant('verdict' as const), to: fc.constantFrom('OK', 'NG', 'UNCERTAIN') }),
      fc.record({ op: fc.constant('text' as const), to: fc.oneof(fc.string(), fc.constant('['.repeat(100_000))) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { maxLength: 3 }), async (ms) => {
        let t = text;
        for (const m of ms) {
          if (m.op === 'byte') {
            const b = Buffer.from(t);
            b[Math.floor(m.at * (b.length - 1))] = m.to;
            t = b.toString('latin1');
          } else if (m.op === 'cut') t = t.slice(0, Math.floor(m.at * t.length));
          else if (m.op === 'text') t = m.to;
          else {
            try {
              const o = JSON.parse(t) as Record<string, unknown>;
              if (m.op === 'verdict') (o.result as Record<string, unknown> | undefined ?? {}).verdict = m.to;
              else o[m.key] = m.value;
              t = JSON.stringify(o);
            } catch {
              // already garbled
            }
          }
        }
        await fs.writeFile(file, t, 'latin1');
        const r = await bounded(() => JSON.stringify(ms).slice(0, 500), () => readRecord(file, jobId, key));
        if (r.value) {
          // Accepted: only the intact record (same signed content) can pass.
          expect(r.value).toEqual(record);
          tally('records', 'accepted');
        } else {
          expect(r.code).toBe('QUEUE');
          tally('records', 'rejected');
        }
      }),
      { numRuns: RUNS.records, seed: SEED },
    );
  }, 300_000);

  it('the whole campaign stayed under 2 GB of RSS', () => {
    expect(process.resourceUsage().maxRSS * 1024).toBeLessThan(RSS_LIMIT);
  });
});
