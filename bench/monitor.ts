/**
 * Line monitoring bench (issues 18 and 23): what {@link LineMonitor} does with its default settings on
 * real streams, with the bundled MobileNetV2-int8 backbone at its defaults, on magnetic tile (the
 * capture-setup split of test/helpers/magnetic-tile-setups.ts), MVTec bottle and the synthetic demo
 * parts. Every image is scored once; production orders are replays. Prints one JSON object.
 *
 *   node --import tsx bench/monitor.ts [--runs 100] [--seed 1] [--cache DIR] [--options JSON]
 *
 * `--cache DIR` keeps the fitted models there and reuses them (fit times are then not measured);
 * `--options '{"lambda":0.075}'` runs every monitor with other settings (LineMonitorOptions).
 *
 * Magnetic tile (fit: train/good of setups exp1–5):
 * - sameSetup: the 121 held-out good images of exp1–5 in file order (setup blocks), in reverse block
 *   order and in `runs` seeded permutations; `defectMix`: the same with 6 real defects (4.7 %) mixed in;
 * - falseAlarms: streams of 9 consecutive permutations of the same-setup images, `runs` streams; the
 *   monitor restarts after an alarm, as a line would after checking. Rate = alarms per 1000 images;
 * - idealFalseAlarms: a stream of training images the envelope does not hold (the monitor is given half
 *   of them, the stream draws the other half) with scores resampled from the reference;
 * - exp6: the same-setup stream, then the 158 exp6 good images (a setup never fitted): images of exp6
 *   until the alarm, in file order and over `runs` permutations;
 * - brighter25: the same-setup stream, then the same images 25 % brighter (sharp modulate);
 * - medianCharts: the same streams through the charts older model files get (no envelope: distance
 *   from the training median), for comparison.
 * Bottle (fit: train/good) and demo (200 good parts): test/good in file order, then the same images
 * 25 % brighter, 10 % brighter (sharp modulate; a change of about 2 % in the descriptors), and in
 * grayscale (a grayscale camera on a colour model).
 */

import { promises as fs, existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { generateSyntheticParts } from '../src/data/synthetic.js';
import { fit } from '../src/model/fit.js';
import { Model, type ScoreResult } from '../src/model/model.js';
import { LineMonitor, type LineMonitorOptions, type MonitorInput } from '../src/monitor/line-monitor.js';
import { createSeededRng } from '../src/util/prng.js';
import { magneticTileSetups, monitorFitOptions, seededShuffle, setupBlocks } from '../test/helpers/magnetic-tile-setups.js';
import { brighter, changeDelays as changeDelaysWith, delaySummary, grayscale, replay as replayWith, scoreOnce } from '../test/helpers/monitor-streams.js';
import { BOTTLE } from '../test/helpers/shared.js';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '100' }, seed: { type: 'string', default: '1' }, cache: { type: 'string' }, options: { type: 'string', default: '{}' } },
});
const runs = Number(values.runs);
const seed0 = Number(values.seed);
const settings = JSON.parse(values.options) as LineMonitorOptions;
/** Every replay of this bench, with the settings under test. */
const replay = (model: Parameters<typeof replayWith>[0], stream: readonly MonitorInput[]) => replayWith(model, stream, settings);
const changeDelays = (model: Parameters<typeof replayWith>[0], before: MonitorInput[], after: MonitorInput[], sameOrder = false) =>
  changeDelaysWith(model, before, after, runs, seed0, sameOrder, settings);

/** Fits (or loads from the cache) a model on `files`; seconds spent fitting, null when loaded. */
async function fitted(name: string, files: string[]): Promise<{ model: Model; fitSeconds: number | null }> {
  const cached = values.cache ? path.join(values.cache, `${name}.partscan`) : undefined;
  if (cached && existsSync(cached)) return { model: await Model.load(cached), fitSeconds: null };
  const t0 = performance.now();
  const model = await fit(files, monitorFitOptions());
  const fitSeconds = (performance.now() - t0) / 1000;
  if (cached) await model.save(cached);
  return { model, fitSeconds };
}

function firstReasonKind(r: { reasons: string[] }): string {
  const first = r.reasons[0] ?? '';
  return first.startsWith('image scores') ? (first.includes('Mann–Whitney') ? 'score window test' : 'score EWMA') : first.split(' ')[0]!;
}

/** Alarms per 1000 images on long streams, the monitor restarting after each alarm. */
function falseAlarms(model: Model | Model['header'], stream: (run: number, block: number) => MonitorInput[], blocks: number) {
  let alarms = 0;
  let images = 0;
  const byChart: Record<string, number> = {};
  for (let run = 0; run < runs; run++) {
    let m = new LineMonitor(model, settings);
    for (let b = 0; b < blocks; b++) {
      for (const r of stream(run, b)) {
        m.push(r);
        images++;
        if (!m.alarm) continue;
        alarms++;
        const k = firstReasonKind(m.result());
        byChart[k] = (byChart[k] ?? 0) + 1;
        m = new LineMonitor(model, settings);
      }
    }
  }
  return { streams: runs, images, alarms, perThousandImages: (1000 * alarms) / images, byChart };
}

/** Summary of one replayed stream. */
function once(r: { firstAlarmAt: number | null; reasons: string[] }, changeAt = 0) {
  return { firstAlarmAt: r.firstAlarmAt, delay: r.firstAlarmAt === null ? null : r.firstAlarmAt - changeAt, reasons: r.reasons };
}

async function magneticTile() {
  const split = magneticTileSetups();
  const { model, fitSeconds } = await fitted('tile', split.fit);
  const t1 = performance.now();
  const [same, exp6, defects, bright] = [
    await scoreOnce(model, split.sameGood),
    await scoreOnce(model, split.newGood),
    await scoreOnce(model, split.sameDefects),
    await scoreOnce(model, await Promise.all(split.sameGood.map((f) => brighter(f, 1.25)))),
  ];
  const scoreSeconds = (performance.now() - t1) / 1000;
  const byFile = new Map(split.sameGood.map((f, i) => [f, same[i]!]));
  const n = same.length;
  let permAlarms = 0;
  for (let k = 0; k < runs; k++) if (replay(model, seededShuffle(same, seed0 + k)).alarm) permAlarms++;
  let defectAlarms = 0;
  for (let k = 0; k < runs; k++) {
    const mixed = [...same, ...seededShuffle(defects, seed0 + k).slice(0, 6)];
    if (replay(model, seededShuffle(mixed, seed0 + 5000 + k)).alarm) defectAlarms++;
  }
  const exp6Perms = changeDelays(model, same, exp6);
  const brightPerms = changeDelays(model, same, bright, true);
  const t2 = performance.now();
  const fa = falseAlarms(model, (run, b) => seededShuffle(same, seed0 + run * 16 + b), 9);
  const microsecondsPerImage = ((performance.now() - t2) * 1000) / fa.images;
  const result = {
    reference: { scores: model.header.monitor!.scores.length, envelopeImages: model.header.monitor!.envelope?.z.length ?? 0 },
    fitSeconds,
    scoreSeconds,
    sameSetup: {
      fileOrder: once(replay(model, setupBlocks(split.sameGood).map((f) => byFile.get(f)!))),
      reverseBlockOrder: once(replay(model, setupBlocks(split.sameGood, true).map((f) => byFile.get(f)!))),
      permutations: { runs, images: n, alarmed: permAlarms },
    },
    defectMix: { runs, defects: 6, images: n + 6, alarmed: defectAlarms },
    falseAlarms: fa,
    monitorMicrosecondsPerImage: microsecondsPerImage,
    idealFalseAlarms: idealFalseAlarms(model),
    exp6: {
      fileOrder: once(replay(model, [...same, ...exp6]), n),
      permutations: { runs, early: exp6Perms.early, missed: exp6Perms.missed, ...delaySummary(exp6Perms.delays) },
    },
    brighter25: {
      fileOrder: once(replay(model, [...same, ...bright]), n),
      permutations: { runs, early: brightPerms.early, missed: brightPerms.missed, ...delaySummary(brightPerms.delays) },
    },
    medianCharts: medianCharts(model, setupBlocks(split.sameGood).map((f) => byFile.get(f)!), same, exp6, bright),
  };
  await model.dispose();
  return result;
}

/** The streams through the charts of a model file without an envelope (format 1.2). */
function medianCharts(model: Model, blocks: MonitorInput[], same: MonitorInput[], exp6: MonitorInput[], bright: MonitorInput[]) {
  const { envelope: _e, ...reference } = model.header.monitor!;
  const old = { ...model.header, monitor: reference };
  let permAlarms = 0;
  for (let k = 0; k < runs; k++) if (replay(old, seededShuffle(same, seed0 + k)).alarm) permAlarms++;
  const summary = (d: ReturnType<typeof changeDelays>) => ({ runs, early: d.early, missed: d.missed, ...delaySummary(d.delays) });
  return {
    sameSetupFileOrder: once(replay(old, blocks)),
    sameSetupPermutations: { runs, alarmed: permAlarms },
    exp6Permutations: summary(changeDelays(old, same, exp6)),
    brighter25Permutations: summary(changeDelays(old, same, bright, true)),
  };
}

/**
 * Ideal stationary stream: the monitor gets an envelope of every other training image; the stream
 * draws the other ones (good images it has not seen, from the same population), scores resampled from
 * the reference.
 */
function idealFalseAlarms(model: Model) {
  const ref = model.header.monitor!;
  const rows = ref.envelope!.z;
  const header = { ...model.header, monitor: { ...ref, envelope: { z: rows.filter((_, i) => i % 2 === 0) } } };
  const unseen = rows.filter((_, i) => i % 2 === 1);
  const rng = createSeededRng(seed0 + 7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.nextFloat() * xs.length)]!;
  const draw = (i: number): MonitorInput => ({ source: `ideal-${i}`, imageScore: pick(ref.scores), drift: { flag: false, score: 0, reasons: [], z: pick(unseen) } });
  return falseAlarms(header, () => Array.from({ length: 121 }, (_, i) => draw(i)), 9);
}

/** Test/good in file order, then the same images changed: brighter, grayscale. */
async function goodThenChanged(name: string, train: string[], good: string[]) {
  const { model, fitSeconds } = await fitted(name, train);
  const base = await scoreOnce(model, good);
  const changed = async (make: (f: string) => Promise<Buffer>) => scoreOnce(model, await Promise.all(good.map(make)));
  const after = (rs: ScoreResult[]) => once(replay(model, [...base, ...rs]), base.length);
  const result = {
    images: { train: train.length, good: good.length },
    fitSeconds,
    goodFileOrder: once(replay(model, base)),
    brighter25: after(await changed((f) => brighter(f, 1.25))),
    brighter10: after(await changed((f) => brighter(f, 1.1))),
    grayscale: after(await changed(grayscale)),
  };
  await model.dispose();
  return result;
}

const images = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => /\.(png|jpe?g)$/i.test(f))
    .sort()
    .map((f) => path.join(dir, f));

const demoDir = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-bench-monitor-'));
try {
  const { root } = await generateSyntheticParts(path.join(demoDir, 'data'), { nTrain: 200, nTestGood: 60, nPerDefect: 0 });
  const out = {
    bench: 'monitor',
    cpu: os.cpus()[0]?.model ?? 'unknown',
    settings: new LineMonitor({} as Model['header'], settings).result().settings,
    magneticTile: await magneticTile(),
    bottle: await goodThenChanged('bottle', images(path.join(BOTTLE, 'train', 'good')), images(path.join(BOTTLE, 'test', 'good'))),
    demo: await goodThenChanged('demo', images(path.join(root, 'train', 'good')), images(path.join(root, 'test', 'good'))),
  };
  console.log(JSON.stringify(out, null, 2));
} finally {
  await fs.rm(demoDir, { recursive: true, force: true });
}
