/**
 * The bench's measurements of what users run, beside the bare PaDiM figures of bench.ts: the real CLI
 * (`partscan fit` with its defaults — guards, leave-one-out check, calibration split — and
 * `partscan eval`) spawned as a user calls it, the backbone alone (the floor of batched scoring), the
 * PyTorch reference (../shared/reference/padim_ref.py) when its Python has torch, and the CPU's ISA.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backbone } from '../src/backbone/types.js';
import { loadBackbone } from '../src/backbone/registry.js';
import { preprocessBatch } from '../src/preprocess/preprocess.js';
import { defaultPreprocessOptions } from '../src/preprocess/options.js';
import { HUGE_PAGES_TUNABLE } from '../src/util/huge-pages.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** CPU model, logical cores and the ISA extensions that decide ONNX Runtime's (and PyTorch's) kernels. */
export function cpuInfo(): { model: string; cores: number; isa: Record<'avx2' | 'avx512f' | 'avx512_vnni' | 'avx_vnni' | 'amx_int8', boolean> } {
  let flags = new Set<string>();
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = new Set((line?.split(':')[1] ?? '').trim().split(/\s+/));
  } catch {
    // not Linux: flags unknown (all false)
  }
  return {
    model: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    isa: {
      avx2: flags.has('avx2'),
      avx512f: flags.has('avx512f'),
      avx512_vnni: flags.has('avx512_vnni'),
      avx_vnni: flags.has('avx_vnni'),
      amx_int8: flags.has('amx_int8'),
    },
  };
}

/**
 * How the bench starts the CLI: the installed launcher (bin/partscan.js, with its huge-pages relaunch)
 * over the compiled dist/ when it is there and not older than the sources, else the sources through
 * tsx (then the start-up includes TypeScript compilation; the JSON says which).
 */
export function cliCommand(): { argv: string[]; kind: 'dist' | 'src (tsx)' } {
  const dist = path.join(REPO, 'dist', 'cli', 'main.js');
  const src = path.join(REPO, 'src', 'cli', 'cli.ts');
  // Current when no source file is newer than the compiled entry point.
  const fresh = existsSync(dist) && (spawnSync('find', [path.join(REPO, 'src'), '-newer', dist, '-name', '*.ts'], { encoding: 'utf8' }).stdout ?? 'x').trim() === '';
  if (fresh && existsSync(src)) return { argv: [process.execPath, path.join(REPO, 'bin', 'partscan.js')], kind: 'dist' };
  return { argv: [process.execPath, '--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts')], kind: 'src (tsx)' };
}

/** Runs a command to completion: wall seconds, exit code, stdout (stderr is kept for errors). */
export function timeCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ seconds: number; code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ seconds: (performance.now() - t0) / 1000, code: code ?? 1, stdout, stderr }));
  });
}

/** The last line of `text` that parses as a JSON object (CLIs print one), or undefined. */
export function lastJson(text: string): Record<string, unknown> | undefined {
  const start = text.indexOf('{');
  if (start >= 0) {
    try {
      return JSON.parse(text.slice(start)) as Record<string, unknown>;
    } catch {
      // fall through to line-wise
    }
  }
  for (const line of text.trim().split('\n').reverse()) {
    try {
      const v = JSON.parse(line) as unknown;
      if (v && typeof v === 'object') return v as Record<string, unknown>;
    } catch {
      // not JSON
    }
  }
  return undefined;
}

/** The default CLI fit and eval, timed from process start to exit. */
export async function defaultCliRuns(o: {
  data: string;
  /** How the fit names its backbone: `--weights <file>` for the ResNet50 fixture, `--backbone <name>` otherwise. */
  backboneArgs: string[];
  channels: number;
  imageSize: number;
  modelFile: string;
  /** Extra fit flags (e.g. `--precision int8` once the int8 backbone exists). */
  fitArgs: string[];
}): Promise<Record<string, unknown>> {
  const cli = cliCommand();
  const fitArgv = [...cli.argv, 'fit', o.data, ...o.backboneArgs, '--channels', String(o.channels), '--image-size', String(o.imageSize), '-o', o.modelFile, '--json', ...o.fitArgs];
  const fitRun = await timeCommand(fitArgv);
  if (fitRun.code !== 0) throw new Error(`partscan fit failed (${fitRun.code}): ${fitRun.stderr.slice(-2000)}`);
  const fitJson = lastJson(fitRun.stdout) ?? {};
  const evalRun = await timeCommand([...cli.argv, 'eval', o.modelFile, o.data, '--json']);
  if (evalRun.code !== 0) throw new Error(`partscan eval failed (${evalRun.code}): ${evalRun.stderr.slice(-2000)}`);
  const evalJson = lastJson(evalRun.stdout) ?? {};
  // Start-up floor: the same launcher printing its version (node start, relaunch, imports).
  const versionRun = await timeCommand([...cli.argv, '--version']);
  const warnings = Array.isArray(fitJson.warnings) ? (fitJson.warnings as { code?: string }[]) : [];
  return {
    cli: cli.kind,
    fitArgs: fitArgv.slice(cli.argv.length).map((a) => (a === o.modelFile ? '<model>' : a)),
    fitSeconds: +fitRun.seconds.toFixed(2),
    evalSeconds: +evalRun.seconds.toFixed(2),
    startupSeconds: +versionRun.seconds.toFixed(2),
    fitImages: fitJson.images ?? null,
    fitSuspects: Array.isArray(fitJson.suspects) ? fitJson.suspects.length : null,
    fitWarningCodes: [...new Set(warnings.map((w) => w.code))],
    evalImageAuroc: evalJson.imageAuroc ?? null,
    evalPixelAuroc: evalJson.pixelAuroc ?? null,
  };
}

/**
 * A model's own backbone alone (whatever it is: ResNet50 fp32 or int8, the bundled MobileNetV2) over
 * the test images, preprocessed beforehand, batch `batch`, after a warm-up batch: the floor of batched
 * scoring at the precision in use. The backbone stays the caller's.
 */
export async function backboneFloor(o: { backbone: Backbone; files: string[]; imageSize: number; batch: number }): Promise<{ msPerImage: number; batch: number }> {
  const { backbone } = o;
  const pre = defaultPreprocessOptions({ imageSize: o.imageSize });
  const S = o.imageSize;
  const batches: Float32Array[] = [];
  for (let i = 0; i < o.files.length; i += o.batch) batches.push((await preprocessBatch(o.files.slice(i, i + o.batch), pre)).tensor);
  const run = async (t: Float32Array): Promise<void> => {
    const input = { data: t, dims: [t.length / (3 * S * S), 3, S, S] as [number, number, number, number] };
    if (backbone.withFeatures) await backbone.withFeatures(input, () => undefined);
    else await backbone.extract(input);
  };
  await run(batches[0]!);
  const t0 = performance.now();
  for (const b of batches) await run(b);
  return { msPerImage: +((performance.now() - t0) / o.files.length).toFixed(1), batch: o.batch };
}

/**
 * The PyTorch reference with the same data and settings, or why it was not run: as a user runs it, and
 * under `withHugePages` with glibc's huge-pages tunable (the setting partscan's launcher uses).
 */
export async function referenceRun(o: { data: string; weights: string; channels: number; imageSize: number; python?: string }): Promise<Record<string, unknown>> {
  const python = o.python ?? '/usr/bin/python3';
  const script = path.resolve(REPO, '..', 'shared', 'reference', 'padim_ref.py');
  if (!existsSync(python) || !existsSync(script)) return { skipped: `needs ${python} and ${script}` };
  if (spawnSync(python, ['-c', 'import torch, torchvision, sklearn, PIL'], { stdio: 'ignore' }).status !== 0) {
    return { skipped: `${python} lacks torch/torchvision/sklearn/PIL (apt-get install python3-torch python3-torchvision python3-sklearn python3-pil)` };
  }
  const argv = [python, script, o.data, '--d', String(o.channels), '--size', String(o.imageSize), '--crop', '0', '--weights', o.weights];
  // As a user runs the script: without the huge-pages tunable the bench (and partscan's launcher) sets
  // for itself. Then once more with it, as the stricter comparison: glibc huge pages speed PyTorch up
  // about as much as they speed partscan up.
  const tunables = (process.env.GLIBC_TUNABLES ?? '').split(':').filter((t) => t && t !== HUGE_PAGES_TUNABLE);
  const plainEnv: NodeJS.ProcessEnv = { ...process.env };
  if (tunables.length) plainEnv.GLIBC_TUNABLES = tunables.join(':');
  else delete plainEnv.GLIBC_TUNABLES;
  const run = await timeCommand(argv, plainEnv);
  if (run.code !== 0) return { skipped: `reference failed (${run.code}): ${run.stderr.slice(-500)}` };
  const tuned = await timeCommand(argv, { ...plainEnv, GLIBC_TUNABLES: [...tunables, HUGE_PAGES_TUNABLE].join(':') });
  const withHugePages = tuned.code === 0 ? { ...(lastJson(tuned.stdout) ?? {}), wallSeconds: +tuned.seconds.toFixed(2) } : { skipped: `failed (${tuned.code})` };
  return { ...(lastJson(run.stdout) ?? {}), wallSeconds: +run.seconds.toFixed(2), withHugePages };
}

/**
 * CLI start to first image, in parts: Node's own start, the launcher printing its version with and
 * without the huge-pages relaunch (their difference is the relaunch), loading the CLI's modules, then in
 * this process loading `modelFile` and scoring `image` twice (the first score builds the scoring graph
 * and sessions; the second is the steady state).
 */
export async function startupBreakdown(modelFile: string, image: string): Promise<Record<string, number | string>> {
  const { Model } = await import('../src/model/model.js');
  const cli = cliCommand();
  const node = await timeCommand([process.execPath, '-e', '0']);
  const version = await timeCommand([...cli.argv, '--version']);
  const versionNoRelaunch = await timeCommand([...cli.argv, '--version'], { ...process.env, PARTSCAN_HUGE_PAGES: '0' });
  const t0 = performance.now();
  const model = await Model.load(modelFile);
  const t1 = performance.now();
  await model.score(image);
  const t2 = performance.now();
  await model.score(image);
  const t3 = performance.now();
  await model.dispose();
  const s = (x: number): number => +x.toFixed(3);
  return {
    cli: cli.kind,
    nodeStartSeconds: s(node.seconds),
    cliVersionSeconds: s(version.seconds),
    hugePagesRelaunchSeconds: s(version.seconds - versionNoRelaunch.seconds),
    cliModulesSeconds: s(versionNoRelaunch.seconds - node.seconds),
    modelLoadSeconds: s((t1 - t0) / 1000),
    firstImageSeconds: s((t2 - t1) / 1000),
    steadyImageSeconds: s((t3 - t2) / 1000),
    startToFirstImageSeconds: s(version.seconds + (t2 - t0) / 1000),
  };
}

/**
 * A model's footprint and start-up as a user's process sees them, measured in a fresh Node process
 * (bench/footprint-probe.mjs, over dist/ when current): RSS of one loaded model, cold start from
 * Model.load to the first verdict (and with warm-up at load), RSS per further model in a ModelPool and
 * the changeover latency; plus the file's size.
 */
export async function footprintRun(modelFile: string, image: string, copies = 3): Promise<Record<string, unknown>> {
  const cli = cliCommand();
  const probe = path.join(REPO, 'bench', 'footprint-probe.mjs');
  const argv =
    cli.kind === 'dist'
      ? [process.execPath, '--expose-gc', probe, path.join(REPO, 'dist', 'index.js')]
      : [process.execPath, '--expose-gc', '--import', 'tsx', probe, path.join(REPO, 'src', 'index.ts')];
  const run = await timeCommand([...argv, modelFile, image, String(copies)]);
  if (run.code !== 0) return { skipped: `footprint probe failed (${run.code}): ${run.stderr.slice(-800)}` };
  return { runtime: cli.kind, fileMB: +(statSync(modelFile).size / 2 ** 20).toFixed(1), ...(lastJson(run.stdout) ?? {}) };
}

/**
 * The bundled backbone at its defaults (`partscan fit <data> --backbone mobilenetv2-int8`: d=152,
 * 224 px; guards and leave-one-out on), as a user runs it, against its floor: the backbone alone over
 * the same training images (preprocessed beforehand, fit batch 16). Then `partscan eval`, and the
 * model's footprint ({@link footprintRun}) and compact size.
 */
export async function bundledDefaultRun(o: { data: string; trainFiles: string[]; testFiles: string[]; modelFile: string }): Promise<Record<string, unknown>> {
  const cli = cliCommand();
  const name = 'mobilenetv2-int8';
  const fitRun = await timeCommand([...cli.argv, 'fit', o.data, '--backbone', name, '-o', o.modelFile, '--json']);
  if (fitRun.code !== 0) return { skipped: `partscan fit failed (${fitRun.code}): ${fitRun.stderr.slice(-800)}` };
  const fitJson = lastJson(fitRun.stdout) ?? {};
  const evalRun = await timeCommand([...cli.argv, 'eval', o.modelFile, o.data, '--json']);
  const evalJson = evalRun.code === 0 ? (lastJson(evalRun.stdout) ?? {}) : {};
  const backbone = await loadBackbone({ backbone: name });
  const fitFloor = await backboneFloor({ backbone, files: o.trainFiles, imageSize: 224, batch: 16 });
  const evalFloor = await backboneFloor({ backbone, files: o.testFiles, imageSize: 224, batch: 8 });
  await backbone.dispose();
  const fitFloorSeconds = (fitFloor.msPerImage * o.trainFiles.length) / 1000;
  const evalFloorSeconds = (evalFloor.msPerImage * o.testFiles.length) / 1000;
  const footprint = await footprintRun(o.modelFile, o.testFiles[0]!);
  const { Model } = await import('../src/model/model.js');
  const compactFile = `${o.modelFile}.compact`;
  const m = await Model.load(o.modelFile);
  await m.save(compactFile, { resumable: false });
  await m.dispose();
  const compactMB = +(statSync(compactFile).size / 2 ** 20).toFixed(1);
  rmSync(compactFile, { force: true });
  const warnings = Array.isArray(fitJson.warnings) ? (fitJson.warnings as { code?: string }[]) : [];
  return {
    cli: cli.kind,
    fitSeconds: +fitRun.seconds.toFixed(2),
    fitFloorSeconds: +fitFloorSeconds.toFixed(2),
    fitToFloor: +(fitRun.seconds / fitFloorSeconds).toFixed(2),
    evalSeconds: +evalRun.seconds.toFixed(2),
    evalFloorSeconds: +evalFloorSeconds.toFixed(2),
    evalToFloor: +(evalRun.seconds / evalFloorSeconds).toFixed(2),
    backboneMsPerImage: { fitBatch16: fitFloor.msPerImage, scoreBatch8: evalFloor.msPerImage },
    fitImages: fitJson.images ?? null,
    fitSuspects: Array.isArray(fitJson.suspects) ? fitJson.suspects.length : null,
    fitWarningCodes: [...new Set(warnings.map((w) => w.code))],
    evalImageAuroc: evalJson.imageAuroc ?? null,
    evalPixelAuroc: evalJson.pixelAuroc ?? null,
    compactFileMB: compactMB,
    footprint,
  };
}
