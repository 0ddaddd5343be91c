/**
 * Pins, through the real CLI, the flags and paths the README promises that no other test runs end to
 * end: --resume, --compact, --no-embed-backbone (+ score --weights), --calibration, --defects, --offline,
 * --roi, --band, --tile, --min-area, --max-side, export --raw; calibration outliers, NO_CALIBRATION, a
 * resumed model's recalibration, an uncalibrated model's run, and `info` on a damaged section.
 * Tiny bottle subsets (128 px, d 20) so that each fit takes seconds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { cli } from './helpers/cli.js';
import { readModelFile, writeModelFile } from '../src/model/model-file.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

const SIZE = 128;
const FIXTURE = ['--backbone', 'resnet50', '--weights', REF_WEIGHTS, '--image-size', String(SIZE), '--channels', '20'];
const goodImg = path.join(BOTTLE, 'test', 'good', '000.png');
const badImg = path.join(BOTTLE, 'test', 'broken_large', '000.png');

let tmp: string;
let trainNames: string[];
/** A good image with a large foreign blot across its vertical midline: scores far above good ones. */
let blotted: string;

/** A folder of symlinks to bottle images. */
async function linkFolder(name: string, sources: string[]): Promise<string> {
  const dir = path.join(tmp, name);
  await fs.mkdir(dir, { recursive: true });
  for (const [i, src] of sources.entries()) await fs.symlink(src, path.join(dir, `${String(i).padStart(3, '0')}-${path.basename(src)}`));
  return dir;
}

const train = (from: number, to: number) => trainNames.slice(from, to).map((n) => path.join(BOTTLE, 'train', 'good', n));

async function fitJson(args: string[]): Promise<Record<string, any>> {
  const r = await cli(['fit', ...args, ...FIXTURE, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

async function infoJson(model: string): Promise<Record<string, any>> {
  const r = await cli(['info', model, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

async function scoreManifest(model: string, images: string[], out: string, extra: string[] = []): Promise<{ json: Record<string, any>; manifest: Record<string, any>; stderr: string }> {
  const r = await cli(['score', model, ...images, '--out', out, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return { json: JSON.parse(r.stdout), manifest: JSON.parse(await fs.readFile(path.join(out, 'results.json'), 'utf8')), stderr: r.stderr };
}

const codes = (summary: Record<string, any>) => (summary.warnings as { code: string }[]).map((w) => w.code);

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-cli-flags-'));
  trainNames = (await fs.readdir(path.join(BOTTLE, 'train', 'good'))).filter((n) => n.endsWith('.png')).sort();
  const blot = await sharp({ create: { width: 160, height: 160, channels: 3, background: { r: 250, g: 40, b: 200 } } }).png().toBuffer();
  blotted = path.join(tmp, 'blotted.png');
  await sharp(train(70, 71)[0]!).composite([{ input: blot, left: 180, top: 180 }]).png().toFile(blotted);
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('fit --resume, --compact, NO_CALIBRATION', () => {
  it('a model resumed with more images equals one fitted on all of them at once', async () => {
    const a = await linkFolder('resume-a', train(0, 2));
    const b = await linkFolder('resume-b', train(2, 12));
    const all = await linkFolder('resume-all', train(0, 12));
    // Two images: no leave-one-out scores, so no thresholds.
    const first = path.join(tmp, 'first.partscan');
    const s1 = await fitJson([a, '--out', first]);
    expect(s1.images).toBe(2);
    expect(s1.thresholds).toBeNull();
    expect(codes(s1)).toContain('NO_CALIBRATION');

    const resumed = path.join(tmp, 'resumed.partscan');
    const s2 = await fitJson([b, '--out', resumed, '--resume', first]);
    expect(s2.images).toBe(12);
    // The resumed model scores its 10 new images out of sample and calibrates on them.
    expect(s2.thresholds.method.image).toBe('false-reject');
    const once = path.join(tmp, 'once.partscan');
    await fitJson([all, '--out', once]);

    // Same Gaussians: the raw maps of the same images agree to float tolerance.
    const r1 = await scoreManifest(resumed, [goodImg, badImg], path.join(tmp, 'run-resumed'));
    const r2 = await scoreManifest(once, [goodImg, badImg], path.join(tmp, 'run-once'));
    for (let i = 0; i < 2; i++) {
      const x = r1.manifest.results[i].mapMax as number;
      const y = r2.manifest.results[i].mapMax as number;
      expect(Math.abs(x - y) / y).toBeLessThan(1e-4);
    }
    // Uncalibrated: every verdict UNCERTAIN, flagged in --json and on stderr.
    const r0 = await scoreManifest(first, [goodImg, badImg], path.join(tmp, 'run-first'));
    expect(r0.json.uncalibrated).toBe(true);
    expect(r0.json.counts.UNCERTAIN).toBe(2);
    const human = await cli(['score', first, goodImg, '--out', path.join(tmp, 'run-human')]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toMatch(/^warning: the model has no thresholds/m);
  }, 300_000);

  it('a resumed model recalibrates on its stored scores plus the new images, keeping its target and review band', async () => {
    const a = await linkFolder('kept-a', train(12, 24));
    const b = await linkFolder('kept-b', train(24, 27));
    const first = path.join(tmp, 'kept-first.partscan');
    const s1 = await fitJson([a, '--out', first, '--false-reject', '0.05', '--review-band', '0.2']);
    const op1 = s1.thresholds.operatingPoint;
    expect(op1.falseRejectTarget).toBe(0.05);
    expect(op1.goodScores.used + op1.goodScores.excluded).toBe(12);
    const s2 = await fitJson([b, '--out', path.join(tmp, 'kept.partscan'), '--resume', first]);
    const op2 = s2.thresholds.operatingPoint;
    expect(s2.images).toBe(s1.images + 3);
    expect(op2.falseRejectTarget).toBe(0.05);
    expect(op2.reviewBand.falseRejectRate).toBe(0.2);
    expect(op2.goodScores.used + op2.goodScores.excluded).toBe(15);
  });

  it('--compact drops the resume statistics: smaller, and --resume from it is refused', async () => {
    const a = await linkFolder('compact', train(30, 38));
    const full = path.join(tmp, 'full.partscan');
    const compact = path.join(tmp, 'compact.partscan');
    const sFull = await fitJson([a, '--out', full, '--calibration-split', '0']);
    const sCompact = await fitJson([a, '--out', compact, '--calibration-split', '0', '--compact']);
    expect(sCompact.resumable).toBe(false);
    expect(sCompact.fileBytes).toBeLessThan(sFull.fileBytes);
    const info = await infoJson(compact);
    const names = info.sections.map((s: { name: string }) => s.name);
    expect(names).not.toContain('m2');
    expect(names).not.toContain('samples');
    const r = await cli(['fit', a, '--out', path.join(tmp, 'x.partscan'), '--resume', compact, ...FIXTURE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^partscan: .*compact/);
  });
});

describe('fit --no-embed-backbone, --calibration, --defects, --offline', () => {
  it('--no-embed-backbone stores no graph; score --weights rebuilds it and scores the same', async () => {
    const a = await linkFolder('noembed', train(40, 50));
    const embedded = path.join(tmp, 'embedded.partscan');
    const bare = path.join(tmp, 'bare.partscan');
    await fitJson([a, '--out', embedded]);
    const s = await fitJson([a, '--out', bare, '--no-embed-backbone']);
    expect(s.embeddedBackbone).toBe(false);
    const info = await infoJson(bare);
    expect(info.header.backbone.embedded).toBe(false);
    expect(info.sections.map((x: { name: string }) => x.name)).not.toContain('backbone.onnx');
    const r1 = await scoreManifest(embedded, [badImg], path.join(tmp, 'run-embedded'));
    const r2 = await scoreManifest(bare, [badImg], path.join(tmp, 'run-bare'), ['--weights', REF_WEIGHTS]);
    const x = r1.manifest.results[0].imageScore as number;
    expect(Math.abs((r2.manifest.results[0].imageScore as number) - x) / x).toBeLessThan(1e-5);
  });

  it('--calibration <dir> adds those images to the out-of-sample scores; an outlier among them is left out', async () => {
    const a = await linkFolder('calib-train', train(50, 62));
    const calibFiles = [...train(62, 70), blotted];
    const calib = await linkFolder('calib', calibFiles);
    const s = await fitJson([a, '--out', path.join(tmp, 'calib.partscan'), '--calibration', calib]);
    expect(s.images).toBe(12);
    const info = await infoJson(path.join(tmp, 'calib.partscan'));
    expect(info.header.calibration.sources.heldOut).toBe(calibFiles.length - 1);
    expect(s.calibrationImages + s.thresholds.operatingPoint.goodScores.excluded).toBe(12 + calibFiles.length);
    const outliers = (s.warnings as { code: string; file?: string }[]).filter((w) => w.code === 'CALIBRATION_OUTLIER');
    // The linked defect is the last calibration file.
    expect(outliers.map((w) => path.basename(w.file!))).toEqual([`${String(calibFiles.length - 1).padStart(3, '0')}-blotted.png`]);
    expect(s.thresholds.method.image).not.toBe('f1-adaptive');
  });

  it('--defects <MVTec root> measures the escape rate at the threshold; --threshold-rule f1 makes it F1-adaptive', async () => {
    const a = await linkFolder('defects-train', train(70, 82));
    const ds = path.join(tmp, 'defects-ds');
    for (const d of ['train/good', 'test/good', 'test/broken_large', 'ground_truth/broken_large']) await fs.mkdir(path.join(ds, d), { recursive: true });
    await fs.symlink(train(0, 1)[0]!, path.join(ds, 'train', 'good', '000.png'));
    for (const i of ['000', '001', '002', '003']) {
      await fs.symlink(path.join(BOTTLE, 'test', 'broken_large', `${i}.png`), path.join(ds, 'test', 'broken_large', `${i}.png`));
      await fs.symlink(path.join(BOTTLE, 'ground_truth', 'broken_large', `${i}_mask.png`), path.join(ds, 'ground_truth', 'broken_large', `${i}_mask.png`));
    }
    const s = await fitJson([a, '--out', path.join(tmp, 'defects.partscan'), '--calibration-split', '0.25', '--defects', ds]);
    expect(s.thresholds.method).toEqual({ image: 'false-reject', pixel: 'false-reject' });
    expect(s.thresholds.operatingPoint.escape.defects).toBe(4);
    const f1 = await fitJson([a, '--out', path.join(tmp, 'defects-f1.partscan'), '--calibration-split', '0.25', '--defects', ds, '--threshold-rule', 'f1']);
    expect(f1.thresholds.method).toEqual({ image: 'f1-adaptive', pixel: 'f1-adaptive' });
    expect(f1.thresholds.image).not.toBe(s.thresholds.image);
  });

  it('--offline with uncached registry weights fails without downloading, naming a way out', async () => {
    const a = await linkFolder('offline', train(82, 86));
    const cache = path.join(tmp, 'empty-cache');
    const r = await cli(['fit', a, '--out', path.join(tmp, 'off.partscan'), '--backbone', 'resnet50', '--offline', '--cache-dir', cache, '--image-size', '64']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^partscan: .*resnet50.*offline/s);
    expect(r.stderr).toMatch(/--weights/);
    expect(existsSync(path.join(tmp, 'off.partscan'))).toBe(false);
  });
});

describe('fit --roi, --band, --tile; score --min-area, --max-side; export --raw; info on a damaged file', () => {
  let model: string;
  let roiModel: string;
  beforeAll(async () => {
    const a = await linkFolder('main-train', train(100, 116));
    model = path.join(tmp, 'main.partscan');
    await fitJson([a, '--out', model, '--calibration-split', '0.25', '--band', '0.45,0.55']);
    // ROI, drawn at the images' 512 px: inspect the left half only.
    const roi = path.join(tmp, 'roi.png');
    const native = 512;
    const px = Buffer.alloc(native * native);
    for (let y = 0; y < native; y++) for (let x = 0; x < native / 2; x++) px[y * native + x] = 255;
    await sharp(px, { raw: { width: native, height: native, channels: 1 } }).png().toFile(roi);
    roiModel = path.join(tmp, 'roi.partscan');
    await fitJson([a, '--out', roiModel, '--calibration-split', '0.25', '--roi', roi]);
  }, 300_000);

  it('--band is stored, and verdicts are UNCERTAIN exactly inside it', async () => {
    const info = await infoJson(model);
    expect(info.header.thresholds.band).toEqual({ low: 0.45, high: 0.55 });
    const bad = (await fs.readdir(path.join(BOTTLE, 'test', 'broken_small'))).slice(0, 6).map((n) => path.join(BOTTLE, 'test', 'broken_small', n));
    const { manifest } = await scoreManifest(model, [goodImg, badImg, ...bad], path.join(tmp, 'run-band'));
    for (const r of manifest.results) {
      const n = r.normalizedScore as number;
      expect(r.verdict).toBe(n >= 0.45 && n <= 0.55 ? 'UNCERTAIN' : n > 0.5 ? 'NG' : 'OK');
    }
    // Whatever the scores, one image must land inside a band: the same model, its band widened just
    // enough to hold the image closest to the threshold (low ≤ 0.5 ≤ high), scored again.
    const nearest = [...manifest.results].sort((a, b) => Math.abs(a.normalizedScore - 0.5) - Math.abs(b.normalizedScore - 0.5))[0]!;
    const n0 = nearest.normalizedScore as number;
    const band = { low: Math.max(0, Math.min(n0, 0.5) - 0.01), high: Math.min(1, Math.max(n0, 0.5) + 0.01) };
    const contents = await readModelFile(model);
    const { sections: table, ...header } = contents.header;
    (header.thresholds as Record<string, unknown>).band = band;
    const banded = path.join(tmp, 'banded.partscan');
    await writeModelFile(banded, header, table.map((t) => ({ name: t.name, data: contents.sections.get(t.name)!, shape: t.shape })));
    const again = await scoreManifest(banded, [nearest.file], path.join(tmp, 'run-in-band'));
    expect(again.manifest.results[0].verdict).toBe('UNCERTAIN');
    expect(again.json.counts.UNCERTAIN).toBe(1);
  });

  it('--roi: no region and no mask pixel outside the region of interest', async () => {
    const info = await infoJson(roiModel);
    expect(info.header.roi).toEqual({ width: SIZE, height: SIZE });
    const out = path.join(tmp, 'run-roi');
    const { manifest } = await scoreManifest(roiModel, [blotted], out, ['--max-side', String(SIZE)]);
    const regions = manifest.results[0].regions as { bbox: { x: number; width: number } }[];
    expect(regions.length).toBeGreaterThan(0); // the blot's left half
    for (const g of regions) expect(g.bbox.x + g.bbox.width).toBeLessThanOrEqual(SIZE / 2);
    const mask = await sharp(path.join(out, manifest.results[0].outputs.mask)).greyscale().raw().toBuffer({ resolveWithObject: true });
    const { width, height } = mask.info;
    let inside = 0;
    let outside = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (mask.data[y * width + x]! <= 127) continue;
        if (x > width / 2) outside++;
        else inside++;
      }
    }
    expect(inside).toBeGreaterThan(0);
    expect(outside).toBe(0);
  });

  it('score --min-area drops small regions; --max-side bounds the exported images', async () => {
    const all = await scoreManifest(model, [blotted], path.join(tmp, 'run-area0'));
    const regions = all.manifest.results[0].regions as { areaPx: number }[];
    expect(regions.length).toBeGreaterThan(0);
    const largest = Math.max(...regions.map((g) => g.areaPx));
    const cut = await scoreManifest(model, [blotted], path.join(tmp, 'run-area'), ['--min-area', String(largest + 1), '--max-side', '64']);
    expect(cut.manifest.results[0].regions).toEqual([]);
    const out = path.join(tmp, 'run-area');
    for (const kind of ['overlay', 'heatmap', 'mask']) {
      const meta = await sharp(path.join(out, cut.manifest.results[0].outputs[kind])).metadata();
      expect(Math.max(meta.width!, meta.height!)).toBe(64);
    }
  });

  it('--tile fits and scores on native-resolution tiles', async () => {
    const a = await linkFolder('tile-train', train(120, 126));
    const tiled = path.join(tmp, 'tiled.partscan');
    await fitJson([a, '--out', tiled, '--tile', '256', '--calibration-split', '0']);
    const info = await infoJson(tiled);
    expect(info.header.tiling).toEqual({ tile: 256, overlap: 32 });
    const { manifest } = await scoreManifest(tiled, [badImg], path.join(tmp, 'run-tiled'));
    expect(manifest.results[0].imageScore).toBeGreaterThan(0);
    const r = await cli(['fit', a, '--out', path.join(tmp, 'x.partscan'), '--tile-overlap', '8', ...FIXTURE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--tile-overlap needs --tile/);
  });

  it('export --raw outputs raw scores, the default normalised ones', async () => {
    const raw = path.join(tmp, 'raw.onnx');
    const norm = path.join(tmp, 'norm.onnx');
    expect((await cli(['export', model, '--onnx', raw, '--raw'])).code).toBe(0);
    expect((await cli(['export', model, '--onnx', norm])).code).toBe(0);
    const { manifest } = await scoreManifest(model, [badImg], path.join(tmp, 'run-export'));
    const ort = await import('onnxruntime-node');
    const { preprocessBatch } = await import('../src/preprocess/preprocess.js');
    const info = await infoJson(model);
    const pre = await preprocessBatch([badImg], info.header.preprocess);
    const scoreOf = async (file: string) => {
      const s = await ort.InferenceSession.create(file);
      const o = await s.run({ input: new ort.Tensor('float32', pre.tensor, [1, 3, SIZE, SIZE]) });
      await s.release();
      return (o.image_score!.data as Float32Array)[0]!;
    };
    const r = manifest.results[0];
    expect(Math.abs((await scoreOf(raw)) - r.imageScore) / r.imageScore).toBeLessThan(1e-4);
    expect(Math.abs((await scoreOf(norm)) - r.normalizedScore)).toBeLessThan(1e-4);
  });

  it('info on a damaged section: a typed checksum error naming the section, exit 2', async () => {
    const info = await infoJson(model);
    const damaged = path.join(tmp, 'damaged.partscan');
    const bytes = await fs.readFile(model);
    // Flip a byte at the end of the file: inside the last section's payload.
    bytes[bytes.length - 5] = bytes[bytes.length - 5]! ^ 0xff;
    await fs.writeFile(damaged, bytes);
    const r = await cli(['info', damaged]);
    expect(r.code).toBe(2);
    const last = info.sections.at(-1).name as string;
    expect(r.stderr).toMatch(new RegExp(`^partscan: .*section "${last.replace('.', '\\.')}" checksum mismatch`));
  });
});
