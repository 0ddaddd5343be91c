/**
 * The `partscan` command line: a thin shell over the public API (fit, Model, evaluateModel,
 * scoreToRunDir, writeReport, runDemo). It parses flags, calls the API, and prints — nothing else.
 *
 * Conventions:
 * - stdout carries results; with `--json` it carries exactly one JSON object (NaN → null) and nothing
 *   else. Progress bars and warnings go to stderr, bars only when stderr is a terminal.
 * - `--json` output uses camelCase keys, like the JS API; every shape has a JSON Schema in docs/schemas/
 *   (output-schemas.ts). With `--json`, an error also prints `{ "error": { code, message, remedy } }`
 *   on stdout.
 * - Exit codes: 0 success; 1 unexpected error (a bug); 2 usage error or a typed PartscanError (bad
 *   input, missing file, unwritable output...); 3 partial success: `score` / `eval --out` wrote the run
 *   but some images could not be scored (they are listed, with a count); 4 `score --fail-on-alarm`: the
 *   line monitor raised an alarm (the run is written).
 * - Errors print one line on stderr, `partscan: <message>` (a PartscanError's message includes the file
 *   and the remedy); stack traces only with PARTSCAN_DEBUG=1.
 * - SIGINT, SIGTERM, SIGHUP cancel `fit`, `score` and `export`: their temp files and the outputs they
 *   created are removed and the process ends by the signal (see src/util/cancellation.ts).
 */

import { Command, CommanderError, Option } from 'commander';
import { BACKBONES } from '../backbone/registry.js';
import { PartscanError } from '../errors.js';
import { PARTSCAN_VERSION } from '../model/model.js';
import { runCancellable } from '../util/cancellation.js';
import { demoCommand } from './commands/demo.js';
import { evalCommand, type EvalFlags } from './commands/eval.js';
import { exportCommand } from './commands/export.js';
import { fitCommand, type FitFlags } from './commands/fit.js';
import { infoCommand } from './commands/info.js';
import { reportCommand } from './commands/report.js';
import { scoreCommand, type ScoreFlags } from './commands/score.js';
import { registerWorkerCommand } from './commands/worker.js';
import { EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE } from './exit-codes.js';
import { errorJson, errorLine, terminalSafe, toJson, type CliIo } from './format.js';
import { bandArg, collectArg, intArg, listArg, rateArg, shareArg, THRESHOLD_RULE_NAMES } from './options.js';
import { calibrateCommand, type CalibrateFlags } from './commands/calibrate.js';

export type { CliIo };
export { EXIT_ALARM, EXIT_OK, EXIT_PARTIAL, EXIT_UNEXPECTED, EXIT_USAGE } from './exit-codes.js';

const defaultIo: CliIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

// ---------------------------------------------------------------------------------------------------
// Program

function buildProgram(io: CliIo, setCode: (code: number) => void): Command {
  const program = new Command('partscan')
    .description('Industrial visual anomaly detection (PaDiM): fit on good parts, score new parts.')
    .version(PARTSCAN_VERSION, '-V, --version', 'print the partscan version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => io.err(s),
      outputError: (s, write) => write(`partscan: ${s.replace(/^error: /, '')}`),
    });
  const run = (fn: (...a: never[]) => Promise<number>) =>
    async (...args: unknown[]) => setCode(await (fn as (...a: unknown[]) => Promise<number>)(...args));

  program
    .command('fit')
    .description('fit a model on good images (a folder, an MVTec-style dataset root, a CSV list, or several images/globs)')
    .argument('[data...]', 'dataset root, folder, list file, or image files / folders / quoted globs (optional with --resume --review)')
    .requiredOption('-o, --out <file>', 'model file to write (e.g. model.partscan)')
    .addOption(new Option('--backbone <name>', `backbone: ${Object.keys(BACKBONES).join(', ')}, or an .onnx file`))
    .option('--layers <a,b,c>', 'feature layers (required for .onnx backbones)', listArg)
    .option('--weights <file>', 'local safetensors weights for a registry ResNet (no download)')
    .option('--channels <d>', 'embedding size d (default 100; all 152 for mobilenetv2-int8)', intArg('--channels', 1))
    .option('--image-size <px>', 'network input side (default 256; 224 for mobilenetv2-int8)', intArg('--image-size', 32))
    .option('--seed <n>', 'seed of the channel choice and calibration split (default 0)', intArg('--seed', 0))
    .option('--calibration-split <share>', 'share of good images held out of the fit for calibration (default 0: every image fits the model and calibrates it out of sample)', shareArg)
    .option('--calibration <dir>', 'extra good images for calibration, scored out of sample')
    .option('--defects <root-or-csv>', 'labelled defective images (MVTec root or CSV list): the escape rate at the threshold, or F1 thresholds')
    .option('--false-reject <rate>', 'false-reject rate the image threshold is set at (default 0.01)', rateArg('--false-reject'))
    .option('--review-band <rate>', 'parts scoring between the threshold at this higher false-reject rate and the NG threshold are UNCERTAIN', rateArg('--review-band'))
    .addOption(new Option('--threshold-rule <rule>', 'false-reject (default), f1 (needs --defects), or sigma (max(mean + 3σ, max), as partscan 0.1)').choices([...THRESHOLD_RULE_NAMES]))
    .addOption(new Option('--image-score <kind>', 'standardized (default: per-position standardised map maximum) or max (raw map maximum)').choices(['standardized', 'max']))
    .option('--resume <model>', 'continue from a resumable model, adding these images')
    .option('--review <review.json>', "with --resume: a QA review of a run the model scored; its good parts join the statistics, its defects the thresholds")
    .option('--image-root <dir>', 'folder the reviewed images must lie in (repeatable; default: the working directory)', collectArg)
    .option('--batch-size <n>', 'images per backbone batch (default 16)', intArg('--batch-size', 1))
    .option('--threads <n>', 'ONNX Runtime threads', intArg('--threads', 1))
    .option('--no-embed-backbone', 'do not store the backbone graph in the model (smaller; needs the weights at score time)')
    .option('--compact', 'drop the resume statistics (smaller; the model cannot be resumed)')
    .option('--roi <mask.png>', 'region of interest: white = inspect, black = ignore')
    .option('--band <low,high>', 'uncertainty band in normalised units, e.g. 0.45,0.55', bandArg)
    .option('--cache-dir <dir>', 'backbone weights cache (default $PARTSCAN_CACHE_DIR or ~/.cache/partscan)')
    .option('--offline', 'never download weights')
    .addOption(new Option('--precision <p>', 'backbone precision: fp32 (default) or int8 (quantized, calibrated on the good images)').choices(['fp32', 'int8']))
    .option('--tile <px>', 'split images into tiles of this size at native resolution (large images)', intArg('--tile', 16))
    .option('--tile-overlap <px>', 'overlap between tiles (default tile/8)', intArg('--tile-overlap', 0))
    .option('--loo-memory <MiB>', 'memory for keeping training embeddings so the leave-one-out check needs no second backbone pass (default 1/8 of RAM; 0 = second pass)', intArg('--loo-memory', 0))
    .option('--queue <redis-url>', 'fit on a queue worker (partscan worker) via this Redis; paths must be on shared storage')
    .option('--queue-name <name>', 'queue name (default partscan)')
    .option('--json', 'print one JSON object')
    .action(run((data: string[], flags: FitFlags) => runCancellable([flags.out], () => fitCommand(data, flags, io))));

  program
    .command('score')
    .description('score images; writes overlays, heatmaps, masks and results.json/csv into --out')
    .argument('<model>', 'model file')
    .argument('<images...>', 'image files, folders, or quoted globs ("parts/**/*.png")')
    .requiredOption('-o, --out <dir>', 'run directory to write')
    .option('--min-area <px>', 'drop regions smaller than this (model-resolution pixels)', intArg('--min-area', 0))
    .option('--batch-size <n>', 'images per scoring batch (default 8, up to 32 for large --channels)', intArg('--batch-size', 1))
    .option('--max-side <px>', 'longest side of exported images (default 1024)', intArg('--max-side', 16))
    .option('--threads <n>', 'ONNX Runtime threads', intArg('--threads', 1))
    .option('--weights <file>', 'backbone safetensors, for a model saved with --no-embed-backbone')
    .option('--queue <redis-url>', 'score on queue workers (partscan worker) via this Redis; paths must be on shared storage')
    .option('--queue-name <name>', 'queue name (default partscan)')
    .option('--fail-on-alarm', 'exit with status 4 when the line monitor raises an alarm (the run is still written)')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExit status: 0 all scored, 3 some images could not be scored (listed), 4 line-monitor alarm (with --fail-on-alarm), 2 bad input.')
    .action(run((model: string, images: string[], flags: ScoreFlags) => runCancellable([flags.out], () => scoreCommand(model, images, flags, io))));

  program
    .command('eval')
    .description('evaluate a model on a labelled dataset (image/pixel AUROC, AUPRO, F1-max)')
    .argument('<model>', 'model file')
    .argument('<dataset>', 'MVTec-style dataset root or labelled CSV list')
    .option('-o, --out <dir>', 'also write the scored run (exports + results) here')
    .option('--batch-size <n>', 'images per scoring batch (default 8, up to 32 for large --channels)', intArg('--batch-size', 1))
    .option('--threads <n>', 'ONNX Runtime threads', intArg('--threads', 1))
    .option('--weights <file>', 'backbone safetensors, for a model saved with --no-embed-backbone')
    .option('--json', 'print one JSON object (metrics; NaN as null)')
    .action(run((model: string, dataset: string, flags: EvalFlags) => evalCommand(model, dataset, flags, io)));

  program
    .command('calibrate')
    .description("move a fitted model's operating point without refitting: a false-reject target, review band, new good images, labelled defects or a QA review")
    .argument('<model>', 'model file (fitted by this partscan version: it stores its out-of-sample scores)')
    .requiredOption('-o, --out <file>', 'model file to write (may be the same file; written atomically)')
    .option('--false-reject <rate>', "false-reject rate the image threshold is set at (default: the model's)", rateArg('--false-reject'))
    .option('--review-band <rate>', 'parts scoring between the threshold at this higher false-reject rate and the NG threshold are UNCERTAIN', rateArg('--review-band'))
    .addOption(new Option('--threshold-rule <rule>', 'false-reject (default), f1 (needs defects), or sigma').choices([...THRESHOLD_RULE_NAMES]))
    .option('--defects <root-or-csv>', 'labelled defective images to add: an MVTec-style root, a labelled CSV list, or a folder of defective images')
    .option('--good <dir>', 'good images to add (scored out of sample)')
    .option('--review <review.json>', "a QA review exported from the report of a run this model scored: its parts join the thresholds as good or defective")
    .option('--image-root <dir>', 'folder the reviewed images must lie in (repeatable; default: the working directory)', collectArg)
    .option('--batch-size <n>', 'images per scoring batch', intArg('--batch-size', 1))
    .option('--threads <n>', 'ONNX Runtime threads', intArg('--threads', 1))
    .option('--weights <file>', 'backbone safetensors, for a model saved with --no-embed-backbone')
    .option('--json', 'print one JSON object')
    .action(run((model: string, flags: CalibrateFlags) => runCancellable([flags.out], () => calibrateCommand(model, flags, io))));

  program
    .command('report')
    .description('write the HTML QA report of a scored run')
    .argument('<run-dir>', 'run directory written by score / eval --out')
    .option('-o, --out <file.html>', 'report file (default <run-dir>/report.html)')
    .option('--title <text>', 'page title')
    .option('--json', 'print one JSON object')
    .action(run((runDir: string, flags: { out?: string; title?: string; json?: boolean }) => reportCommand(runDir, flags, io)));

  program
    .command('info')
    .description("show a model file's header: backbone, preprocessing, embedding, thresholds, sizes")
    .argument('<model>', 'model file')
    .option('--json', 'print one JSON object')
    .action(run((model: string, flags: { json?: boolean }) => infoCommand(model, flags, io)));

  program
    .command('export')
    .description('export a fitted model as one ONNX graph (backbone + PaDiM head + blur + normalisation)')
    .argument('<model>', 'model file')
    .requiredOption('--onnx <file>', 'output .onnx file (an external .data file is written beside it for > 2 GB models)')
    .option('--raw', 'output raw scores instead of normalised ones')
    .option('--weights <file>', 'backbone safetensors, for a model saved with --no-embed-backbone')
    .option('--json', 'print one JSON object')
    .action(
      run((model: string, flags: { onnx: string; raw?: boolean; weights?: string; json?: boolean }) =>
        runCancellable([flags.onnx, `${flags.onnx}.data`], () => exportCommand(model, flags, io)),
      ),
    );

  program
    .command('demo')
    .description('offline end-to-end demo on generated synthetic parts: fit, evaluate, report')
    .option('--dir <dir>', 'work folder', 'partscan-demo')
    .option('--cache-dir <dir>', 'backbone weights cache')
    .option('--backbone <name>', 'registry backbone (default mobilenetv2-int8, shipped; resnet50-random for a smoke run)')
    .option('--json', 'print one JSON object')
    .action(run((flags: { dir: string; json?: boolean; cacheDir?: string; backbone?: string }) => demoCommand(flags, io)));

  registerWorkerCommand(program, io, run);

  return program;
}

/**
 * Runs the CLI on `argv` (as in `process.argv`: node, script, then arguments) and returns the exit
 * code instead of exiting, so it can be embedded and tested. See the module comment for conventions.
 */
export async function runCli(argv: string[], rawIo: CliIo = defaultIo): Promise<number> {
  // Everything printed passes one filter: header fields and paths must not drive the terminal.
  const io: CliIo = { out: (t) => rawIo.out(terminalSafe(t)), err: (t) => rawIo.err(terminalSafe(t)) };
  let code = EXIT_OK;
  // With --json, stdout carries one JSON object whatever happens: the result, or the error.
  const json = argv.slice(2).includes('--json');
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version "errors" are successes; commander already printed usage errors.
      if (e.exitCode === 0) return EXIT_OK;
      if (json) io.out(toJson(errorJson(e)) + '\n');
      return EXIT_USAGE;
    }
    io.err(`partscan: ${errorLine(e)}\n`);
    if (json) io.out(toJson(errorJson(e)) + '\n');
    return e instanceof PartscanError ? EXIT_USAGE : EXIT_UNEXPECTED;
  }
}
