/**
 * Child process of the bench's footprint measurement (bench/default-path.ts starts it, one fresh
 * process per measurement). Plain JavaScript, so that the process is what a user's is: Node and the
 * compiled partscan (dist/), no TypeScript loader (the parent falls back to tsx and the sources when
 * dist/ is stale, and says so). Then
 *   1. cold start: Model.load → first verdict on one image, then a steady image; RSS after a GC;
 *   2. many part types: a ModelPool holding `copies` models (the same file under different keys: each a
 *      full model), RSS after each, and the changeover latency between held models (acquire + verdict)
 *      and to a model not held (load + warm-up + verdict, budget of one model).
 * Prints one JSON object. Run with --expose-gc.
 */
import { readFileSync } from 'node:fs';

const [entry, modelFile, image, copiesArg] = process.argv.slice(2);
const copies = Number(copiesArg ?? 3);

function memory() {
  const s = readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN);
  return { rssMB: Math.round(kb('VmRSS') / 1024), hwmMB: Math.round(kb('VmHWM') / 1024) };
}

async function settled() {
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 100));
  return memory();
}

const ms = (t) => +t.toFixed(1);

const start = memory();
const api = await import(entry);
const modules = await settled();

// 1. Cold start: load → first verdict (in functions, so that the models can be collected after).
async function coldStart() {
  const t0 = performance.now();
  const model = await api.Model.load(modelFile);
  const t1 = performance.now();
  const first = await model.score(image);
  const t2 = performance.now();
  await model.score(image);
  const t3 = performance.now();
  const held = await settled();
  const residentMB = Math.round(model.residentBytes / 2 ** 20);
  await model.dispose();
  return { t0, t1, t2, t3, verdict: first.verdict ?? null, held, residentMB };
}
const cold = await coldStart();
const { t0, t1, t2, t3 } = cold;
const oneModel = cold.held;
const residentMB = cold.residentMB;

// Warm-up at load: the first verdict after Model.load(…, { warmUp: true }).
async function warmStart() {
  const w0 = performance.now();
  const warm = await api.Model.load(modelFile, { warmUp: true });
  const w1 = performance.now();
  await warm.score(image);
  const w2 = performance.now();
  await warm.dispose();
  return { w0, w1, w2 };
}
const { w0, w1, w2 } = await warmStart();
await settled();

// 2. Many part types in one pool.
const pool = new api.ModelPool({ maxBytes: Number.MAX_SAFE_INTEGER });
const before = (await settled()).rssMB;
const rssAfter = [];
for (let i = 0; i < copies; i++) {
  const h = await pool.acquire(modelFile, { key: `part-${i}` });
  await h.model.score(image);
  h.release();
  rssAfter.push((await settled()).rssMB);
}
// Changeover between held models: acquire the other part type and score one image.
const hits = [];
for (let i = 0; i < 6; i++) {
  const c0 = performance.now();
  const h = await pool.acquire(modelFile, { key: `part-${i % copies}` });
  await h.model.score(image);
  h.release();
  hits.push(performance.now() - c0);
}
await pool.dispose();
// Changeover to a model not held: a budget of one model, two part types alternating.
const small = new api.ModelPool({ maxBytes: 1 });
const misses = [];
for (let i = 0; i < 4; i++) {
  const c0 = performance.now();
  const h = await small.acquire(modelFile, { key: `part-${i % 2}` });
  await h.model.score(image);
  h.release();
  misses.push(performance.now() - c0);
}
await small.dispose();

const perModel = rssAfter.map((r, i) => r - (i === 0 ? before : rssAfter[i - 1]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
process.stdout.write(
  JSON.stringify({
    startRssMB: start.rssMB,
    modulesRssMB: modules.rssMB,
    coldStart: {
      loadSeconds: ms((t1 - t0) / 1000),
      firstVerdictSeconds: ms((t2 - t1) / 1000),
      loadToFirstVerdictSeconds: +((t2 - t0) / 1000).toFixed(3),
      steadyVerdictSeconds: +((t3 - t2) / 1000).toFixed(3),
      verdict: cold.verdict,
      withWarmUp: { loadSeconds: +((w1 - w0) / 1000).toFixed(3), firstVerdictSeconds: +((w2 - w1) / 1000).toFixed(3), loadToFirstVerdictSeconds: +((w2 - w0) / 1000).toFixed(3) },
    },
    oneModel: { rssMB: oneModel.rssMB, overModulesMB: oneModel.rssMB - modules.rssMB, hwmMB: oneModel.hwmMB, residentBytesEstimateMB: residentMB },
    pool: {
      models: copies,
      rssAfterEachMB: rssAfter,
      perModelMB: perModel,
      changeoverHeldMs: ms(median(hits)),
      changeoverNotHeldMs: ms(median(misses.slice(1))),
    },
  }) + '\n',
);
