import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listImages, loadDataset, parseCsv } from '../src/data/index.js';
import { isPartscanError, type PartscanErrorCode } from '../src/errors.js';
import type { Sample } from '../src/types.js';
import { BOTTLE, MAGNETIC_TILE } from './helpers/shared.js';

let tmp: string;
let png: Buffer;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-datasets-'));
  png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } }).png().toBuffer();
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Creates files (with a tiny valid PNG as content unless text is given) under `root`. */
async function makeTree(root: string, files: Record<string, string | null>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    const p = path.join(root, rel);
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.writeFile(p, text ?? png);
  }
}

function countBy(samples: Sample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) out[s.label] = (out[s.label] ?? 0) + 1;
  return out;
}

function expectSorted(paths: string[]): void {
  expect([...paths].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(paths);
}

async function expectCode(p: Promise<unknown>, code: PartscanErrorCode, ...mentions: string[]): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(isPartscanError(e, code), `expected PartscanError ${code}, got ${String(e)}`).toBe(true);
  for (const m of mentions) expect((e as Error).message).toContain(m);
  return e as Error;
}

describe('MVTec AD layout (shared data)', () => {
  it('bottle: 209 train, 83 labelled test images, a mask for every defect and none for good', async () => {
    const ds = await loadDataset(BOTTLE);
    expect(ds.format).toBe('mvtec');
    expect(ds.root).toBe(path.resolve(BOTTLE));
    expect(ds.train).toHaveLength(209);
    expect(ds.train.every((s) => s.label === 'good' && !s.anomalous && s.maskPath === undefined)).toBe(true);
    expect(countBy(ds.test)).toEqual({ broken_large: 20, broken_small: 22, contamination: 21, good: 20 });
    for (const s of ds.test) {
      expect(path.isAbsolute(s.path)).toBe(true);
      expect(s.anomalous).toBe(s.label !== 'good');
      if (s.anomalous) {
        expect(s.maskPath).toBe(path.join(BOTTLE, 'ground_truth', s.label, `${path.basename(s.path, '.png')}_mask.png`));
      } else expect(s.maskPath).toBeUndefined();
    }
    expectSorted(ds.train.map((s) => s.path));
    expectSorted(ds.test.map((s) => s.path));
    expect(ds.train[0]!.path).toBe(path.join(BOTTLE, 'train', 'good', '000.png'));
  });

  it('magnetic tile: grey JPEGs, 800 train, six test folders, masks for all defects', async () => {
    const ds = await loadDataset(MAGNETIC_TILE);
    expect(ds.format).toBe('mvtec');
    expect(ds.train).toHaveLength(800);
    expect(countBy(ds.test)).toEqual({ blowhole: 115, break: 85, crack: 57, fray: 32, good: 152, uneven: 103 });
    const defects = ds.test.filter((s) => s.anomalous);
    expect(defects.every((s) => s.maskPath?.endsWith(`${path.basename(s.path, '.jpg')}_mask.png`))).toBe(true);
    expect(ds.test.filter((s) => !s.anomalous).every((s) => s.maskPath === undefined)).toBe(true);
    // Loading twice gives the same order: fits are reproducible.
    expect((await loadDataset(MAGNETIC_TILE)).train.map((s) => s.path)).toEqual(ds.train.map((s) => s.path));
  });

  it('a defect without a mask is kept, without maskPath; <stem>.png masks are accepted', async () => {
    const root = path.join(tmp, 'mvtec-partial');
    await makeTree(root, {
      'train/good/a.png': null,
      'test/dent/001.png': null,
      'test/dent/002.png': null,
      'test/scuff/003.png': null,
      'ground_truth/dent/001_mask.png': null,
      'ground_truth/scuff/003.png': null,
    });
    const ds = await loadDataset(root);
    expect(ds.test.map((s) => [path.basename(s.path), s.label, s.maskPath ? path.basename(s.maskPath) : null])).toEqual([
      ['001.png', 'dent', '001_mask.png'],
      ['002.png', 'dent', null],
      ['003.png', 'scuff', '003.png'],
    ]);
  });

  it('missing root, empty train/good → DATASET naming the folder and the expected layout', async () => {
    const missing = path.join(tmp, 'does-not-exist');
    await expectCode(loadDataset(missing), 'DATASET', missing, 'MVTec');
    const emptyTrain = path.join(tmp, 'mvtec-empty');
    await fs.mkdir(path.join(emptyTrain, 'train', 'good'), { recursive: true });
    await makeTree(emptyTrain, { 'train/good/readme.md': 'not an image', 'test/good/1.png': null });
    await expectCode(loadDataset(emptyTrain), 'DATASET', path.join(emptyTrain, 'train', 'good'), 'no images');
    await expectCode(loadDataset(emptyTrain, { format: 'mvtec3d' }), 'DATASET', path.join('train', 'good', 'rgb'));
  });
});

describe('MVTec 3D-AD layout', () => {
  it('is detected by train/good/rgb and reads rgb + gt, ignoring xyz and validation', async () => {
    const root = path.join(tmp, 'mvtec3d');
    await makeTree(root, {
      'train/good/rgb/000.png': null,
      'train/good/rgb/001.png': null,
      'train/good/xyz/000.tiff': null,
      'validation/good/rgb/000.png': null,
      'test/good/rgb/000.png': null,
      'test/good/gt/000.png': null,
      'test/hole/rgb/000.png': null,
      'test/hole/rgb/001.png': null,
      'test/hole/gt/000.png': null,
      'test/hole/xyz/000.tiff': null,
      'test/crack/rgb/000.png': null,
      'test/crack/gt/000.png': null,
    });
    const ds = await loadDataset(root);
    expect(ds.format).toBe('mvtec3d');
    expect(ds.train.map((s) => path.relative(root, s.path))).toEqual(['train/good/rgb/000.png', 'train/good/rgb/001.png']);
    expect(ds.test.map((s) => [path.relative(root, s.path), s.label, s.anomalous, s.maskPath && path.relative(root, s.maskPath)])).toEqual([
      ['test/crack/rgb/000.png', 'crack', true, 'test/crack/gt/000.png'],
      ['test/good/rgb/000.png', 'good', false, 'test/good/gt/000.png'],
      ['test/hole/rgb/000.png', 'hole', true, 'test/hole/gt/000.png'],
      ['test/hole/rgb/001.png', 'hole', true, undefined],
    ]);
  });
});

describe('plain folder', () => {
  it('takes the images directly inside as training images, sorted, skipping other files', async () => {
    const root = path.join(tmp, 'folder');
    await makeTree(root, {
      'b.PNG': null,
      'a.jpg': null,
      'B.tiff': null,
      'c.webp': null,
      '._a.jpg': 'AppleDouble',
      '.hidden.png': null,
      'notes.txt': 'hello',
      'model.partscan': 'x',
      'sub/d.png': null,
    });
    await fs.mkdir(path.join(root, 'dir.png'));
    const ds = await loadDataset(root);
    expect(ds.format).toBe('folder');
    expect(ds.test).toEqual([]);
    expect(ds.train.map((s) => path.basename(s.path))).toEqual(['B.tiff', 'a.jpg', 'b.PNG', 'c.webp']);
    expect(await listImages(root)).toEqual(ds.train.map((s) => s.path));
  });

  it('an empty folder → DATASET; listImages on a missing folder → DATASET', async () => {
    const root = path.join(tmp, 'empty-folder');
    await fs.mkdir(root);
    await expectCode(loadDataset(root), 'DATASET', root, 'No images');
    await expectCode(listImages(path.join(tmp, 'nope')), 'DATASET', 'does not exist');
  });
});

describe('CSV / list files', () => {
  it('parseCsv handles quotes, escaped quotes, CRLF, BOM, blank and comment lines', () => {
    const rows = parseCsv('\ufeffpath,label\r\n"a, b.png",good\r\n\r\n# comment\n"say ""hi"".png" , 1\nc.png');
    expect(rows).toEqual([
      { line: 1, fields: ['path', 'label'] },
      { line: 2, fields: ['a, b.png', 'good'] },
      { line: 5, fields: ['say "hi".png', '1'] },
      { line: 6, fields: ['c.png'] },
    ]);
    expect(() => parseCsv('"unterminated,good')).toThrow(/unterminated/);
  });

  it('with a split column, rows go where they say; paths are relative to the list file', async () => {
    const root = path.join(tmp, 'csv-split');
    await makeTree(root, {
      'imgs/g1.png': null,
      'imgs/g2.png': null,
      'imgs/t1.png': null,
      'imgs/t 2, odd.png': null,
      'masks/t1.png': null,
      'lists/data.csv': [
        'split,path,label,mask',
        'train,../imgs/g2.png,good,',
        'train,../imgs/g1.png,0,',
        'test,../imgs/t1.png,scratch,../masks/t1.png',
        'test,"../imgs/t 2, odd.png",1,',
        `test,${path.join(root, 'imgs', 'g1.png')},GOOD,`,
      ].join('\n'),
    });
    const ds = await loadDataset(path.join(root, 'lists', 'data.csv'));
    expect(ds.format).toBe('list');
    expect(ds.root).toBe(path.join(root, 'lists', 'data.csv'));
    // List order is kept: the user chose it.
    expect(ds.train.map((s) => [path.relative(root, s.path), s.label])).toEqual([
      ['imgs/g2.png', 'good'],
      ['imgs/g1.png', 'good'],
    ]);
    expect(ds.test.map((s) => [path.relative(root, s.path), s.label, s.anomalous, s.maskPath && path.relative(root, s.maskPath)])).toEqual([
      ['imgs/t1.png', 'scratch', true, 'masks/t1.png'],
      ['imgs/t 2, odd.png', 'anomalous', true, undefined],
      ['imgs/g1.png', 'good', false, undefined],
    ]);
  });

  it('without a split column: bare paths are a training list, labelled rows a test list', async () => {
    const root = path.join(tmp, 'csv-nosplit');
    await makeTree(root, {
      'a.png': null,
      'b.png': null,
      'train.txt': 'a.png\nb.png\n',
      'eval.csv': 'a.png,good\nb.png,dent\n',
    });
    const train = await loadDataset(path.join(root, 'train.txt'));
    expect(train.train.map((s) => path.basename(s.path))).toEqual(['a.png', 'b.png']);
    expect(train.test).toEqual([]);
    const evalSet = await loadDataset(path.join(root, 'eval.csv'));
    expect(evalSet.train).toEqual([]);
    expect(evalSet.test.map((s) => [path.basename(s.path), s.label])).toEqual([
      ['a.png', 'good'],
      ['b.png', 'dent'],
    ]);
  });

  it('bad lists → DATASET with the line number and what to fix', async () => {
    const root = path.join(tmp, 'csv-bad');
    await makeTree(root, {
      'a.png': null,
      'missing.csv': 'path,label\na.png,good\nnope.png,good\n',
      'badmask.csv': 'a.png,dent,nomask.png\n',
      'badtrain.csv': 'path,label,split\na.png,dent,train\n',
      'badsplit.csv': 'path,split\na.png,validate\n',
      'badheader.csv': 'path,label,notes\na.png,good,x\n',
      'empty.csv': '# nothing\n',
      'quote.csv': '"a.png,good\n',
    });
    await expectCode(loadDataset(path.join(root, 'missing.csv')), 'DATASET', 'line 3', 'nope.png');
    await expectCode(loadDataset(path.join(root, 'badmask.csv')), 'DATASET', 'line 1', 'nomask.png');
    await expectCode(loadDataset(path.join(root, 'badtrain.csv')), 'DATASET', 'line 2', "'dent'");
    await expectCode(loadDataset(path.join(root, 'badsplit.csv')), 'DATASET', "'validate'");
    await expectCode(loadDataset(path.join(root, 'badheader.csv')), 'DATASET', 'notes');
    await expectCode(loadDataset(path.join(root, 'empty.csv')), 'DATASET', 'no images');
    await expectCode(loadDataset(path.join(root, 'quote.csv')), 'DATASET', 'unterminated');
    await expectCode(loadDataset(root, { format: 'list' }), 'DATASET', '.csv');
  });
});

describe('format override', () => {
  it("format 'folder' on an MVTec root reads only the root's own images", async () => {
    const root = path.join(tmp, 'override');
    await makeTree(root, { 'train/good/a.png': null, 'top.png': null });
    expect((await loadDataset(root)).format).toBe('mvtec');
    const ds = await loadDataset(root, { format: 'folder' });
    expect(ds.format).toBe('folder');
    expect(ds.train.map((s) => path.relative(root, s.path))).toEqual(['top.png']);
  });
});
