/**
 * The whole user path of the package, offline: build and `npm pack` the project, install the tarball
 * into a clean project the way README's install section says (ONNXRUNTIME_NODE_INSTALL=skip, no
 * network: `--offline` from the npm cache that installing this repo filled), and run `partscan demo`
 * from the installed package.
 *
 * A fresh project has no registry metadata in the cache (installing from a lock file fetches only
 * tarballs), so the clean project gets a lock file: the tarball plus this repo's locked production
 * dependencies — what a site mirroring its tested dependency set installs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from './helpers/shared.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);

interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
  [k: string]: unknown;
}

/** Environment of a user's shell: no repo .npmrc, no test cache dir, no progress bars. */
function userEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra, PARTSCAN_NO_PROGRESS: '1' };
  for (const k of Object.keys(env)) {
    if (/^npm_/i.test(k) || k === 'PARTSCAN_CACHE_DIR' || k === 'ONNXRUNTIME_NODE_INSTALL') delete env[k];
  }
  return { ...env, ...extra };
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'partscan-pack-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('npm pack → offline install in a clean project → partscan demo', () => {
  it('the packed package ships the model and runs the demo offline with the bundled backbone', async () => {
    // 1. Build as `prepare` does, then pack (scripts off: prepare has just been done).
    await run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: REPO, timeout: 180_000 });
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: REPO, timeout: 60_000 });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = info!.files.map((f) => f.path);
    expect(files).toContain('models/mobilenetv2-12-int8.onnx');
    expect(files).toContain('models/LICENSE-mobilenetv2-Apache-2.0.txt');
    expect(files).toContain('models/backbones.json');
    // A flat dist/: only src/ is compiled (bench/ and examples/ are typechecked, never shipped).
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/backbone/registry.js');
    expect(files.some((f) => /^dist\/(src|bench|examples|models|datasets)\//.test(f))).toBe(false);
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('src/'))).toBe(false);

    // 2. A clean project: the tarball, and a lock of it plus the repo's locked production dependencies.
    const app = path.join(tmp, 'app');
    await mkdir(app);
    const tgz = path.join(app, info!.filename);
    await writeFile(tgz, await readFile(path.join(tmp, info!.filename)));
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; engines: object };
    const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
    const spec = `file:${info!.filename}`;
    const packages: Record<string, unknown> = {
      '': { name: 'app', version: '1.0.0', dependencies: { partscan: spec } },
      'node_modules/partscan': {
        version: pkg.version,
        resolved: spec,
        integrity: `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`,
        license: 'MIT',
        dependencies: pkg.dependencies,
        bin: { partscan: 'bin/partscan.js' },
        engines: pkg.engines,
      },
    };
    for (const [k, v] of Object.entries(lock.packages)) {
      if (k.startsWith('node_modules/') && !v.dev && !v.devOptional) packages[k] = v;
    }
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { partscan: spec } }, null, 2));
    await writeFile(path.join(app, 'package-lock.json'), JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));

    // 3. Install the documented way, with no network.
    await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: app, timeout: 240_000, env: userEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }) });
    const bin = path.join(app, 'node_modules', '.bin', 'partscan');
    expect(existsSync(bin)).toBe(true);
    expect(existsSync(path.join(app, 'node_modules', 'partscan', 'models', 'mobilenetv2-12-int8.onnx'))).toBe(true);

    // The two public entries resolve from the installed package: the curated root and the building blocks.
    const entries = await run(
      process.execPath,
      ['--input-type=module', '-e', "const r = await import('partscan'); const a = await import('partscan/advanced'); console.log(typeof r.fit, typeof a.reflectIndex, 'reflectIndex' in r)"],
      { cwd: app, timeout: 60_000, env: userEnv({}) },
    );
    expect(entries.stdout.trim()).toBe('function function false');

    // 4. The demo from the installed package: empty weights cache, nothing to download.
    const demo = await run(bin, ['demo', '--json', '--dir', path.join(tmp, 'demo'), '--cache-dir', path.join(tmp, 'empty-cache')], {
      cwd: app,
      timeout: 300_000,
      env: userEnv({}),
      maxBuffer: 16 * 1024 * 1024,
    });
    const result = JSON.parse(demo.stdout) as { backbone: string; metrics: { imageAuroc: number; verdicts: { confusion: { defect: { NG: number } } } }; reportPath: string };
    expect(result.backbone).toBe('mobilenetv2-int8');
    expect(result.metrics.imageAuroc).toBeGreaterThanOrEqual(0.95);
    expect(result.metrics.verdicts.confusion.defect.NG).toBeGreaterThanOrEqual(20);
    expect(existsSync(result.reportPath)).toBe(true);
    expect(existsSync(path.join(tmp, 'empty-cache', 'weights'))).toBe(false);
  }, 600_000);
});
