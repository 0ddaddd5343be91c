/**
 * The whole user path of the package, offline: build and `npm pack` the project, install the tarball
 * into a clean project the way README's install section says (ONNXRUNTIME_NODE_INSTALL=skip, no
 * network: `--offline` from the npm cache that installing this repo filled), then, from the installed
 * package only: the published types compile with `skipLibCheck: false`; the shipped examples — a fit,
 * an inspection service fed raw camera frames, a line monitor — compile and run on the public API;
 * `partscan demo` runs; and the queue commands, whose packages (bullmq, ioredis) a plain install leaves
 * out, fail with a typed error naming the install command.
 *
 * A fresh project has no registry metadata in the cache (installing from a lock file fetches only
 * tarballs), so the clean project gets a lock file: the tarball plus this repo's locked production
 * dependencies — what a site mirroring its tested dependency set installs — and @types/node for the
 * TypeScript consumer.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectContract } from './helpers/json-contract.js';
import { BOTTLE, REPO } from './helpers/shared.js';

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
let app: string;
let packedFiles: string[];
/** The compiled examples in the clean project. */
let out: string;
/** The model the fit example wrote (bundled backbone), used by the service and the monitor. */
let modelFile: string;
const defect = path.join(BOTTLE, 'test', 'broken_large', '000.png');
const trainGood = (from: number, to: number): string[] =>
  Array.from({ length: to - from }, (_, i) => path.join(BOTTLE, 'train', 'good', `${String(from + i).padStart(3, '0')}.png`));

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'partscan-pack-'));
  // 1. Build as `prepare` does, then pack (scripts off: prepare has just been done).
  await run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: REPO, timeout: 180_000 });
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: REPO, timeout: 60_000 });
  const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
  packedFiles = info!.files.map((f) => f.path);

  // 2. A clean project: the tarball, and a lock of it plus the repo's locked production dependencies.
  app = path.join(tmp, 'app');
  await mkdir(app);
  const tgz = path.join(app, info!.filename);
  await writeFile(tgz, await readFile(path.join(tmp, info!.filename)));
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
    version: string;
    dependencies: Record<string, string>;
    peerDependencies: Record<string, string>;
    peerDependenciesMeta: Record<string, unknown>;
    engines: object;
  };
  const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const spec = `file:${info!.filename}`;
  const typesNode = lock.packages['node_modules/@types/node']!;
  const devDependencies = { '@types/node': String(typesNode.version) };
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { partscan: spec }, devDependencies },
    'node_modules/partscan': {
      version: pkg.version,
      resolved: spec,
      integrity: `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`,
      license: 'MIT',
      dependencies: pkg.dependencies,
      peerDependencies: pkg.peerDependencies,
      peerDependenciesMeta: pkg.peerDependenciesMeta,
      bin: { partscan: 'bin/partscan.js' },
      engines: pkg.engines,
    },
  };
  for (const [k, v] of Object.entries(lock.packages)) {
    if (!k.startsWith('node_modules/') || v.dev) continue;
    // Needed by a dev dependency and by an optional one (tslib: bullmq and sharp's wasm runtime): optional here.
    const { devOptional, ...entry } = v;
    packages[k] = devOptional ? { ...entry, optional: true } : entry;
  }
  // The TypeScript consumer's own dev dependency (not partscan's).
  for (const k of ['node_modules/@types/node', 'node_modules/undici-types']) packages[k] = { ...lock.packages[k], dev: true };
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module', dependencies: { partscan: spec }, devDependencies }, null, 2));
  await writeFile(path.join(app, 'package-lock.json'), JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));

  // 3. Install the documented way, with no network.
  await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: app, timeout: 240_000, env: userEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }) });
  out = path.join(app, 'out');
}, 600_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('npm pack → offline install in a clean project', () => {
  it('the package ships the bundled model, a flat dist/ and the examples; bullmq and ioredis are not installed', async () => {
    for (const f of ['models/mobilenetv2-12-int8.onnx', 'models/LICENSE-mobilenetv2-Apache-2.0.txt', 'models/backbones.json', 'dist/index.js', 'dist/backbone/registry.js']) {
      expect(packedFiles).toContain(f);
    }
    // A flat dist/: only src/ is compiled (bench/ and examples/ are typechecked, not compiled).
    expect(packedFiles.some((f) => /^dist\/(src|bench|examples|models|datasets)\//.test(f))).toBe(false);
    expect(packedFiles.some((f) => f.startsWith('test/') || f.startsWith('src/'))).toBe(false);
    // The examples ship as sources, with their README.
    for (const f of ['examples/README.md', 'examples/fit-and-score.ts', 'examples/inspection-service.ts', 'examples/line-monitor.ts']) expect(packedFiles).toContain(f);
    expect(existsSync(path.join(app, 'node_modules', '.bin', 'partscan'))).toBe(true);
    expect(existsSync(path.join(app, 'node_modules', 'partscan', 'models', 'mobilenetv2-12-int8.onnx'))).toBe(true);
    // Optional peers: a plain install leaves them out.
    expect(existsSync(path.join(app, 'node_modules', 'bullmq'))).toBe(false);
    expect(existsSync(path.join(app, 'node_modules', 'ioredis'))).toBe(false);
    // The two public entries resolve from the installed package: the curated root and the building blocks.
    const entries = await run(
      process.execPath,
      ['--input-type=module', '-e', "const r = await import('partscan'); const a = await import('partscan/advanced'); console.log(typeof r.fit, typeof r.renderResult, typeof a.reflectIndex, 'reflectIndex' in r)"],
      { cwd: app, timeout: 60_000, env: userEnv({}) },
    );
    expect(entries.stdout.trim()).toBe('function function function false');
  });

  it('the shipped examples compile against the published types with skipLibCheck: false (strict)', async () => {
    const src = path.join(app, 'src');
    await cp(path.join(app, 'node_modules', 'partscan', 'examples'), src, { recursive: true });
    // Every declaration of both entries, not only what the examples use.
    await writeFile(path.join(src, 'all-types.ts'), "export * as root from 'partscan';\nexport * as advanced from 'partscan/advanced';\n");
    const tsconfig = {
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: false, types: ['node'], outDir: 'out', rootDir: 'src' },
      include: ['src'],
    };
    await writeFile(path.join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const tsc = await run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', app], { cwd: app, timeout: 180_000 }).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${tsc.stdout}${tsc.stderr}`.trim()).toBe('');
    expect((await readdir(out)).sort()).toEqual(expect.arrayContaining(['fit-and-score.js', 'inspection-service.js', 'line-monitor.js']));
  }, 240_000);

  it('example: fit on good parts with the bundled backbone, offline, and score one part (regions in image pixels)', async () => {
    const good = path.join(tmp, 'good');
    await mkdir(good);
    for (const f of trainGood(0, 60)) await symlink(f, path.join(good, path.basename(f)));
    modelFile = path.join(tmp, 'bottle.partscan');
    const r = await run(process.execPath, [path.join(out, 'fit-and-score.js'), good, defect, modelFile], {
      cwd: app,
      timeout: 300_000,
      env: userEnv({ PARTSCAN_BACKBONE: 'mobilenetv2-int8', PARTSCAN_CACHE_DIR: path.join(tmp, 'empty-cache') }),
    });
    const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as { verdict: string; width: number; regions: { bbox: { x: number; width: number } }[] };
    expect(result).toMatchObject({ verdict: 'NG', width: 512, height: 512 });
    expect(result.regions.length).toBeGreaterThan(0);
    for (const g of result.regions) expect(g.bbox.x + g.bbox.width).toBeLessThanOrEqual(512);
    expect(existsSync(modelFile)).toBe(true);
    expect(existsSync(path.join(tmp, 'empty-cache', 'weights'))).toBe(false);
  }, 360_000);

  it('example: the inspection service scores raw camera frames (BGR, padded rows) like the image file, and renders the overlay', async () => {
    const child: ChildProcess = spawn(process.execPath, [path.join(out, 'inspection-service.js'), modelFile], { cwd: app, env: userEnv({ PORT: '0' }), stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const base = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout!.on('data', (c: Buffer) => {
          text += c.toString();
          const m = /http:\/\/127\.0\.0\.1:\d+/.exec(text);
          if (m) resolve(m[0]);
        });
        child.once('exit', (code) => reject(new Error(`service exited (${code})`)));
        setTimeout(() => reject(new Error('service did not start')), 120_000);
      });
      const png = await readFile(defect);
      const fromFile = (await (await fetch(`${base}/inspect`, { method: 'POST', body: png })).json()) as { verdict: string; imageScore: number; regions: unknown[] };
      // The camera's buffer: BGR, each row padded to a multiple of 64 bytes.
      const { data, info } = await sharp(defect).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const stride = Math.ceil((info.width * 3) / 64) * 64 + 64;
      const frame = Buffer.alloc(stride * info.height);
      for (let y = 0; y < info.height; y++) {
        for (let x = 0; x < info.width; x++) {
          const s = (y * info.width + x) * 3;
          const d = y * stride + x * 3;
          frame[d] = data[s + 2]!;
          frame[d + 1] = data[s + 1]!;
          frame[d + 2] = data[s]!;
        }
      }
      const query = `width=${info.width}&height=${info.height}&channels=3&stride=${stride}&order=bgr`;
      const res = await fetch(`${base}/inspect/frame?${query}`, { method: 'POST', body: frame });
      expect(res.status).toBe(200);
      const fromFrame = (await res.json()) as typeof fromFile;
      expect(fromFrame.verdict).toBe(fromFile.verdict);
      expect(Math.abs(fromFrame.imageScore - fromFile.imageScore)).toBeLessThan(1e-4);
      expect(fromFrame.regions).toEqual(fromFile.regions);
      // The overlay picture at the frame's size.
      const pic = await fetch(`${base}/inspect/frame?${query}&render=overlay`, { method: 'POST', body: frame });
      expect(pic.headers.get('content-type')).toBe('image/jpeg');
      const meta = await sharp(Buffer.from(await pic.arrayBuffer())).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', info.width, info.height]);
      // A frame whose fields disagree: 400 naming the field.
      const bad = await fetch(`${base}/inspect/frame?width=${info.width}&height=${info.height + 10}&channels=3`, { method: 'POST', body: frame.subarray(0, 1000) });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ code: 'INVALID_FRAME' });
    } finally {
      child.kill('SIGTERM');
    }
  }, 240_000);

  it('example: the line monitor stays calm on good parts and alarms (exit 4) when the lamp fails', async () => {
    const monitor = path.join(out, 'line-monitor.js');
    const calm = await run(process.execPath, [monitor, modelFile, ...trainGood(60, 80)], { cwd: app, timeout: 300_000, env: userEnv({}) });
    expect(JSON.parse(calm.stdout.trim().split('\n').pop()!)).toMatchObject({ frames: 20, alarm: false });
    const failing = await run(process.execPath, [monitor, modelFile, ...trainGood(60, 90), '--darken-after', '5'], { cwd: app, timeout: 300_000, env: userEnv({}) }).catch(
      (e: { code: number; stdout: string }) => e,
    );
    expect((failing as { code?: number }).code).toBe(4);
    const summary = JSON.parse(failing.stdout.trim().split('\n').pop()!) as { alarm: boolean; firstAlarmAt: number; reasons: string[] };
    expect(summary.alarm).toBe(true);
    expect(summary.firstAlarmAt).toBeGreaterThanOrEqual(5);
    expect(summary.reasons.length).toBeGreaterThan(0);
  }, 360_000);

  it('partscan demo runs from the installed package offline; its --json output is the documented shape', async () => {
    const bin = path.join(app, 'node_modules', '.bin', 'partscan');
    const demo = await run(bin, ['demo', '--json', '--dir', path.join(tmp, 'demo'), '--cache-dir', path.join(tmp, 'empty-cache')], {
      cwd: app,
      timeout: 300_000,
      env: userEnv({}),
      maxBuffer: 16 * 1024 * 1024,
    });
    const result = JSON.parse(demo.stdout) as { backbone: string; metrics: { imageAuroc: number; verdicts: { confusion: { defect: { NG: number } } } }; reportPath: string };
    expectContract('demo', result);
    expect(result.backbone).toBe('mobilenetv2-int8');
    expect(result.metrics.imageAuroc).toBeGreaterThanOrEqual(0.95);
    expect(result.metrics.verdicts.confusion.defect.NG).toBeGreaterThanOrEqual(20);
    expect(existsSync(result.reportPath)).toBe(true);
    expect(existsSync(path.join(tmp, 'empty-cache', 'weights'))).toBe(false);
  }, 360_000);

  it('without bullmq and ioredis, a queue command is a typed QUEUE error naming the install command', async () => {
    const bin = path.join(app, 'node_modules', '.bin', 'partscan');
    const r = await run(bin, ['worker', '--redis', 'redis://127.0.0.1:1', '--json'], { cwd: app, timeout: 60_000, env: userEnv({}) }).catch((e: { code: number; stdout: string; stderr: string }) => e);
    expect((r as { code?: number }).code).toBe(2);
    const err = JSON.parse(r.stdout) as { error: { code: string; message: string; remedy: string } };
    expectContract('error', err);
    expect(err.error.code).toBe('QUEUE');
    expect(err.error.message).toMatch(/bullmq/);
    expect(err.error.remedy).toMatch(/npm install bullmq ioredis/);
    expect(r.stderr).toMatch(/^partscan: .*npm install bullmq ioredis/);
  });
});
