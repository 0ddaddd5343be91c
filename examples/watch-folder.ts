/**
 * Example: watch a folder a camera drops images into, score each new image once it is completely
 * written, and keep a run folder (exports + results.json/csv, report-ready) up to date.
 *
 *   npx tsx examples/watch-folder.ts model.partscan incoming/ results/
 *   npx tsx src/cli/main.ts report results/        # QA report of everything seen so far
 *
 * fs.watch fires while a file is still being written (often several times), so a file is only scored
 * once its size and mtime have stayed the same for `stableMs`; each path is scored once.
 */

import { promises as fs, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
// The two public entries, as the package resolves them: 'partscan' and 'partscan/advanced'.
import { Model, type ImageResult, type ScoreRunFailure } from 'partscan';
import { PARTSCAN_VERSION, buildManifest, exportScoredImage, uniqueStems, writeRunResults } from 'partscan/advanced';

/** Image extensions the watcher reacts to. */
const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp']);

/** Options of {@link watchFolder}. */
export interface WatchFolderOptions {
  /** How long size and mtime must stay unchanged before a file counts as complete (default 500 ms). */
  stableMs?: number;
  /** How often a pending file is re-checked (default 100 ms). */
  pollMs?: number;
  /** Also score images already in the folder at start (default false). */
  includeExisting?: boolean;
  /** Called after each image is scored and the run files are updated. */
  onResult?: (result: ImageResult) => void;
  /** Called when an image cannot be scored (it is recorded in the manifest's failures too). */
  onError?: (file: string, error: unknown) => void;
}

/** A running watcher. */
export interface FolderWatcher {
  /** Absolute paths already handled (scored or failed). */
  readonly processed: ReadonlySet<string>;
  /** Resolves once no file is pending or being scored. */
  idle(): Promise<void>;
  /** Stops watching and waits for in-flight work. */
  close(): Promise<void>;
}

/**
 * Watches `inDir` and scores each new image file with `model` into `outDir`: per-image exports and an
 * updated results.json / results.csv after every image (written atomically, so readers never see a
 * partial file). Images are scored one at a time, in arrival order.
 */
export async function watchFolder(model: Model, inDir: string, outDir: string, opts: WatchFolderOptions = {}): Promise<FolderWatcher> {
  const stableMs = opts.stableMs ?? 500;
  const pollMs = opts.pollMs ?? 100;
  const dir = path.resolve(inDir);
  await fs.mkdir(outDir, { recursive: true });
  const processed = new Set<string>();
  const pending = new Map<string, { size: number; mtimeMs: number; since: number }>();
  const results: ImageResult[] = [];
  const failures: ScoreRunFailure[] = [];
  const usedStems: string[] = [];
  let queue: Promise<void> = Promise.resolve();
  let inFlight = 0;
  let closed = false;

  const score = async (file: string): Promise<void> => {
    try {
      const r = await model.score(file);
      // Stems unique across the whole watch session, not just one call.
      const stem = uniqueStems([...usedStems, file]).at(-1)!;
      usedStems.push(file);
      const result = await exportScoredImage(model, r, outDir, stem);
      results.push(result);
      await writeRunResults(outDir, buildManifest(model, results, failures));
      opts.onResult?.(result);
    } catch (e) {
      failures.push({ file, code: (e as { code?: string }).code ?? 'UNEXPECTED', message: e instanceof Error ? e.message : String(e) });
      await writeRunResults(outDir, buildManifest(model, results, failures)).catch(() => undefined);
      opts.onError?.(file, e);
    }
  };

  const consider = (name: string): void => {
    if (closed || !IMAGE_EXT.has(path.extname(name).toLowerCase()) || name.startsWith('.')) return;
    const file = path.join(dir, name);
    if (processed.has(file) || pending.has(file)) return;
    pending.set(file, { size: -1, mtimeMs: -1, since: Date.now() });
  };

  // One poller checks all pending files: complete ones are queued for scoring exactly once.
  const timer = setInterval(async () => {
    for (const [file, seen] of pending) {
      const st = await fs.stat(file).catch(() => undefined);
      if (!st) {
        pending.delete(file); // renamed away or deleted before it settled
        continue;
      }
      if (st.size !== seen.size || st.mtimeMs !== seen.mtimeMs) {
        pending.set(file, { size: st.size, mtimeMs: st.mtimeMs, since: Date.now() });
        continue;
      }
      if (st.size > 0 && Date.now() - seen.since >= stableMs && pending.has(file)) {
        pending.delete(file);
        processed.add(file);
        inFlight++;
        queue = queue.then(() => score(file)).finally(() => void inFlight--);
      }
    }
  }, pollMs);

  const watcher: FSWatcher = watch(dir, (_event, name) => {
    if (name) consider(name.toString());
  });
  if (opts.includeExisting) for (const name of await fs.readdir(dir)) consider(name);

  const idle = async (): Promise<void> => {
    while (pending.size > 0 || inFlight > 0) {
      await queue;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };
  return {
    processed,
    idle,
    close: async () => {
      closed = true;
      watcher.close();
      clearInterval(timer);
      pending.clear();
      await queue;
    },
  };
}

async function main(): Promise<void> {
  const [modelPath, inDir, outDir] = process.argv.slice(2);
  if (!modelPath || !inDir || !outDir) {
    process.stderr.write('usage: npx tsx examples/watch-folder.ts <model.partscan> <incoming-dir> <results-dir>\n');
    process.exitCode = 2;
    return;
  }
  const model = await Model.load(modelPath);
  const w = await watchFolder(model, inDir, outDir, {
    includeExisting: true,
    onResult: (r) => process.stdout.write(`${r.verdict.padEnd(9)} ${r.normalizedScore.toFixed(3)}  ${r.file}\n`),
    onError: (f, e) => process.stderr.write(`failed    ${f}: ${e instanceof Error ? e.message : String(e)}\n`),
  });
  process.stdout.write(`partscan ${PARTSCAN_VERSION}: watching ${path.resolve(inDir)} → ${path.resolve(outDir)} (Ctrl-C to stop)\n`);
  process.once('SIGINT', () => void w.close().then(() => model.dispose()));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`watch-folder: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
