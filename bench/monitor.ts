/**
 * Line monitoring bench (issue 18): false-alarm rate and delay to alarm of {@link LineMonitor} with its
 * default settings, on the magnetic-tile capture-setup split with the real MobileNetV2-int8 backbone.
 * Prints one JSON object.
 *
 *   node --import tsx bench/monitor.ts [--runs 1000] [--seed 1]
 *
 * - falseAlarms: streams of consecutive seeded permutations of the 121 held-out same-setup good images
 *   (9 permutations = 1089 images per stream, `runs` streams); after an alarm the monitor restarts,
 *   as a line would after checking. Rate = alarms per 1000 images.
 * - idealFalseAlarms: the same on an ideal stationary stream drawn from the reference itself (scores
 *   resampled from the model's reference scores, each drift z normal with the training spread,
 *   features independent): the rate the limits are designed for.
 * - defectMix: the same-setup stream with 6 real defects (4.7 %) at random places; runs that alarm.
 * - delay: the same-setup stream, then the 158 exp6 good images; images of exp6 until the alarm.
 */

import os from 'node:os';
import { parseArgs } from 'node:util';
import { fit } from '../src/model/fit.js';
import type { ScoreResult } from '../src/model/model.js';
import { LineMonitor, type MonitorInput } from '../src/monitor/line-monitor.js';
import { createSeededRng } from '../src/util/prng.js';
import { magneticTileSetups, monitorFitOptions, seededShuffle } from '../test/helpers/magnetic-tile-setups.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '1000' }, seed: { type: 'string', default: '1' } } });
const runs = Number(values.runs);
const seed0 = Number(values.seed);

const split = magneticTileSetups();
const t0 = performance.now();
const model = await fit(split.fit, monitorFitOptions());
const fitSeconds = (performance.now() - t0) / 1000;
const scored = new Map<string, ScoreResult>();
const t1 = performance.now();
const toScore = [...split.sameGood, ...split.newGood, ...split.sameDefects];
for (let i = 0; i < toScore.length; i += 16) for (const r of await model.score(toScore.slice(i, i + 16))) scored.set(r.source, r);
const scoreSeconds = (performance.now() - t1) / 1000;
const get = (f: string): ScoreResult => scored.get(f)!;

function firstReasonKind(m: LineMonitor): string {
  const r = m.result().reasons[0] ?? '';
  return r.startsWith('image scores') ? (r.includes('Mann–Whitney') ? 'score window test' : 'score EWMA') : r.split(' ')[0]!;
}

function falseAlarms(stream: (run: number, block: number) => MonitorInput[], blocks: number) {
  let alarms = 0;
  let images = 0;
  const byChart: Record<string, number> = {};
  for (let run = 0; run < runs; run++) {
    let m = new LineMonitor(model);
    for (let b = 0; b < blocks; b++) {
      for (const r of stream(run, b)) {
        m.push(r);
        images++;
        if (m.alarm) {
          alarms++;
          const k = firstReasonKind(m);
          byChart[k] = (byChart[k] ?? 0) + 1;
          m = new LineMonitor(model);
        }
      }
    }
  }
  return { streams: runs, images, alarms, perThousandImages: (1000 * alarms) / images, byChart };
}

const real = falseAlarms((run, b) => seededShuffle(split.sameGood, seed0 + run * 16 + b).map(get), 9);

// Ideal stationary stream: drawn from the reference the monitor compares with.
const ref = model.header.monitor!;
const rng = createSeededRng(seed0 + 7);
const ideal = falseAlarms(
  () =>
    Array.from({ length: 121 }, (_, i) => ({
      source: `ideal-${i}`,
      imageScore: ref.scores[Math.floor(rng.nextFloat() * ref.scores.length)]!,
      drift: { flag: false, score: 0, reasons: [], z: (ref.driftZScale ?? []).map((s) => s * rng.nextNormal()) },
    })),
  9,
);

let defectAlarms = 0;
const defectKinds: Record<string, number> = {};
for (let run = 0; run < runs; run++) {
  const defects = seededShuffle(split.sameDefects, seed0 + run).slice(0, 6);
  const m = new LineMonitor(model);
  for (const f of seededShuffle([...split.sameGood, ...defects], seed0 + 5000 + run)) m.push(get(f));
  if (m.alarm) {
    defectAlarms++;
    const k = firstReasonKind(m);
    defectKinds[k] = (defectKinds[k] ?? 0) + 1;
  }
}

const delays: number[] = [];
let early = 0;
let missed = 0;
for (let run = 0; run < runs; run++) {
  const stream = [...seededShuffle(split.sameGood, seed0 + run), ...seededShuffle(split.newGood, seed0 + 9000 + run)];
  const m = new LineMonitor(model);
  stream.forEach((f, i) => m.push(get(f), i));
  const at = m.result().firstAlarmAt;
  if (at === null) missed++;
  else if (at < split.sameGood.length) early++;
  else delays.push(at - split.sameGood.length);
}
delays.sort((a, b) => a - b);
const q = (p: number): number | null => (delays.length ? delays[Math.min(delays.length - 1, Math.floor(p * delays.length))]! : null);

// File-name order: the setups come in blocks exp1, exp2, ... exp5, then exp6.
const named = new LineMonitor(model);
[...split.sameGood, ...split.newGood].forEach((f, i) => named.push(get(f), i));

const settings = new LineMonitor(model).result().settings;
console.log(
  JSON.stringify(
    {
      bench: 'monitor',
      cpu: os.cpus()[0]?.model ?? 'unknown',
      settings,
      reference: ref.sources,
      fitSeconds,
      scoreSeconds,
      falseAlarms: real,
      idealFalseAlarms: ideal,
      defectMix: { runs, defects: 6, images: split.sameGood.length + 6, alarmed: defectAlarms, byChart: defectKinds },
      delay: { runs, early, missed, median: q(0.5), p90: q(0.9), max: delays.at(-1) ?? null, within50: delays.filter((d) => d < 50).length },
      fileNameOrder: { firstAlarmAt: named.result().firstAlarmAt, reasons: named.result().reasons },
    },
    null,
    2,
  ),
);
await model.dispose();
