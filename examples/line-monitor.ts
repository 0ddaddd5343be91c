/**
 * Example: a line monitor. Frames arrive one by one from a camera; each is scored (as a raw frame, the
 * way a camera SDK hands it over) and fed to a {@link LineMonitor}, which watches the whole stream with
 * control charts against what the model was fitted on: a drifting lamp, a moved camera or another
 * setup raise an alarm even when no single part looks defective.
 *
 *   npx tsx examples/line-monitor.ts model.partscan frames/*.png
 *   npx tsx examples/line-monitor.ts model.partscan frames/*.png --darken-after 10   # simulate a failing lamp
 *
 * Prints one line per frame and, at the first alarm, its reasons; ends with one JSON line
 * `{ frames, ng, alarm, firstAlarmAt, reasons }`. Exit status 4 when the monitor alarmed (like
 * `partscan score --fail-on-alarm`), so a supervisor can stop the line.
 */

import { LineMonitor, Model, PartscanError, type RawFrame } from 'partscan';
import { loadRgb } from 'partscan/advanced';

/** Exit status when the monitor raised an alarm. */
export const EXIT_ALARM = 4;

/**
 * A camera stand-in: the image decoded to the 8-bit RGB buffer a camera SDK would hand over; from
 * `darkenAfter` on, every frame is darker (the lamp fails).
 */
async function grab(file: string, index: number, darkenAfter: number | undefined): Promise<RawFrame> {
  const { data, width, height } = await loadRgb(file);
  if (darkenAfter !== undefined && index >= darkenAfter) for (let i = 0; i < data.length; i++) data[i] = Math.round(data[i]! * 0.45);
  return { data, width, height, channels: 3 };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const at = args.indexOf('--darken-after');
  const darkenAfter = at >= 0 ? Number(args.splice(at, 2)[1]) : undefined;
  const [modelPath, ...frames] = args;
  if (!modelPath || frames.length === 0) {
    process.stderr.write('usage: npx tsx examples/line-monitor.ts <model.partscan> <frames...> [--darken-after N]\n');
    process.exitCode = 2;
    return;
  }
  const model = await Model.load(modelPath);
  try {
    const monitor = new LineMonitor(model);
    let ng = 0;
    let alarmed = false;
    for (let i = 0; i < frames.length; i++) {
      const r = await model.score(await grab(frames[i]!, i, darkenAfter));
      monitor.push(r);
      if (r.verdict === 'NG') ng++;
      process.stdout.write(`${String(i).padStart(4)} ${frames[i]} ${r.verdict ?? '-'} ${r.imageScore.toFixed(2)}${monitor.alarm ? ' ALARM' : ''}\n`);
      if (monitor.alarm && !alarmed) {
        alarmed = true;
        for (const reason of monitor.result().reasons) process.stdout.write(`     ${reason}\n`);
      }
    }
    const { alarm, firstAlarmAt, reasons } = monitor.result();
    process.stdout.write(JSON.stringify({ frames: frames.length, ng, alarm, firstAlarmAt, reasons }) + '\n');
    if (alarm) process.exitCode = EXIT_ALARM;
  } finally {
    await model.dispose();
  }
}

main().catch((e) => {
  process.stderr.write(`line-monitor: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = e instanceof PartscanError ? 2 : 1;
});
