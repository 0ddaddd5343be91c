/**
 * Dataset loaders: MVTec AD, MVTec 3D-AD (RGB part), a plain folder of good images, or a CSV/list file.
 * Every loader returns absolute paths in a deterministic order (code-point sort, independent of locale
 * and file-system enumeration order), so fits are reproducible.
 */
import { promises as fs, type Dirent } from 'node:fs';
import path from 'node:path';
import { PartscanError } from '../errors.js';
import { readRegularFile, specialFileKind } from '../util/regular-file.js';
import type { Dataset, Sample } from '../types.js';

/** File extensions (lower case, with dot) treated as images. */
export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze(['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp']);

/** What the loaders accept, for error messages. */
const EXPECTED_LAYOUTS =
  'expected one of: MVTec AD (train/good/*, test/<type>/*, ground_truth/<type>/<stem>_mask.png), ' +
  'MVTec 3D-AD (train/good/rgb/*, test/<type>/rgb/*, test/<type>/gt/*), ' +
  'a plain folder of good images, or a .csv/.txt list file (path,label,mask[,split])';

/** Locale-independent string order, so every machine lists the same files in the same order. */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** True for names of files an image listing should include. */
function isImageName(name: string): boolean {
  // Dot files include macOS AppleDouble companions ("._000.png") that carry no pixels.
  return !name.startsWith('.') && IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

async function statOrUndefined(p: string) {
  return fs.stat(p).catch(() => undefined);
}

async function isDirectory(p: string): Promise<boolean> {
  return (await statOrUndefined(p))?.isDirectory() ?? false;
}

async function readDir(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PartscanError(
      'DATASET',
      `Cannot list ${dir}: ${code === 'ENOENT' ? 'the folder does not exist' : code === 'ENOTDIR' ? 'it is a file, not a folder' : `read failed (${code ?? String(e)})`}.`,
      { file: dir, remedy: 'check the dataset path', cause: e },
    );
  }
}

/**
 * Lists the image files directly inside `dir` (not recursive: MVTec's train/good and test/<type> are
 * flat, and recursing into a plain folder would pick up ground-truth or output sub-folders), as
 * absolute paths sorted by code point. Hidden files are skipped; symbolic links to files are followed.
 * @throws PartscanError 'DATASET' when `dir` is missing or not a folder.
 */
export async function listImages(dir: string): Promise<string[]> {
  const abs = path.resolve(dir);
  const entries = await readDir(abs);
  const out: string[] = [];
  for (const e of entries) {
    if (!isImageName(e.name)) continue;
    const p = path.join(abs, e.name);
    if (e.isFile() || (e.isSymbolicLink() && (await statOrUndefined(p))?.isFile())) out.push(p);
  }
  return out.sort(byCodePoint);
}

/** Sub-folder names of `dir`, sorted; empty when `dir` does not exist. */
async function listSubdirs(dir: string): Promise<string[]> {
  if (!(await isDirectory(dir))) return [];
  const entries = await readDir(dir);
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() || (e.isSymbolicLink() && (await isDirectory(path.join(dir, e.name))))) out.push(e.name);
  }
  return out.sort(byCodePoint);
}

/** Names of the plain files in `dir` (empty set when missing): one readdir instead of a stat per mask. */
async function fileNames(dir: string): Promise<Set<string>> {
  if (!(await isDirectory(dir))) return new Set();
  return new Set((await readDir(dir)).filter((e) => e.isFile() || e.isSymbolicLink()).map((e) => e.name));
}

function stem(file: string): string {
  return path.basename(file, path.extname(file));
}

function sample(imagePath: string, label: string, maskPath?: string): Sample {
  const s: Sample = { path: imagePath, label, anomalous: label !== 'good' };
  if (maskPath !== undefined) s.maskPath = maskPath;
  return s;
}

async function requireTrainImages(dir: string, root: string, layout: string): Promise<string[]> {
  if (!(await isDirectory(dir))) {
    throw new PartscanError('DATASET', `${layout} dataset ${root} has no training folder ${dir}.`, {
      file: dir,
      remedy: EXPECTED_LAYOUTS,
    });
  }
  const images = await listImages(dir);
  if (images.length === 0) {
    throw new PartscanError(
      'DATASET',
      `Training folder ${dir} contains no images (${IMAGE_EXTENSIONS.join(', ')}).`,
      { file: dir, remedy: `put the good training images there; ${EXPECTED_LAYOUTS}` },
    );
  }
  return images;
}

/**
 * MVTec AD: train/good/*, test/<type>/*, ground_truth/<type>/<stem>_mask.png. A mask named
 * `<stem>.png` is accepted too (some conversions of other datasets drop the suffix).
 */
async function loadMvtec(root: string): Promise<Dataset> {
  const train = (await requireTrainImages(path.join(root, 'train', 'good'), root, 'MVTec AD')).map((p) =>
    sample(p, 'good'),
  );
  const test: Sample[] = [];
  for (const type of await listSubdirs(path.join(root, 'test'))) {
    const gtDir = path.join(root, 'ground_truth', type);
    const masks = await fileNames(gtDir);
    for (const img of await listImages(path.join(root, 'test', type))) {
      const s = stem(img);
      const maskName = [`${s}_mask.png`, `${s}.png`].find((m) => masks.has(m));
      test.push(sample(img, type, maskName === undefined ? undefined : path.join(gtDir, maskName)));
    }
  }
  return { root, format: 'mvtec', train, test };
}

/** MVTec 3D-AD, RGB only: train/good/rgb/*, test/<type>/rgb/*, masks test/<type>/gt/<same name>. */
async function loadMvtec3d(root: string): Promise<Dataset> {
  const train = (await requireTrainImages(path.join(root, 'train', 'good', 'rgb'), root, 'MVTec 3D-AD')).map((p) =>
    sample(p, 'good'),
  );
  const test: Sample[] = [];
  for (const type of await listSubdirs(path.join(root, 'test'))) {
    const gtDir = path.join(root, 'test', type, 'gt');
    const masks = await fileNames(gtDir);
    const rgbDir = path.join(root, 'test', type, 'rgb');
    if (!(await isDirectory(rgbDir))) continue;
    for (const img of await listImages(rgbDir)) {
      const name = path.basename(img);
      const maskName = [name, `${stem(img)}.png`].find((m) => masks.has(m));
      test.push(sample(img, type, maskName === undefined ? undefined : path.join(gtDir, maskName)));
    }
  }
  return { root, format: 'mvtec3d', train, test };
}

/** A plain folder: every image directly inside is a good training image; no test split. */
async function loadFolder(root: string): Promise<Dataset> {
  const images = await listImages(root);
  if (images.length === 0) {
    throw new PartscanError('DATASET', `No images found in ${root} (${IMAGE_EXTENSIONS.join(', ')}).`, {
      file: root,
      remedy: EXPECTED_LAYOUTS,
    });
  }
  return { root, format: 'folder', train: images.map((p) => sample(p, 'good')), test: [] };
}

/**
 * Splits CSV text into rows of fields: commas, double-quoted fields with "" escapes, CRLF or LF line
 * ends, a leading BOM. No CSV package is installed and the list format needs nothing more.
 * Blank lines and lines starting with '#' are skipped. Returns each row with its 1-based line number.
 */
export function parseCsv(text: string): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (i < text.length) {
    const startLine = line;
    const fields: string[] = [];
    let field = '';
    let quoted = false;
    let wasQuoted = false;
    for (; i < text.length; i++) {
      const ch = text[i]!;
      if (quoted) {
        if (ch === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i++;
          } else quoted = false;
        } else {
          if (ch === '\n') line++;
          field += ch;
        }
      } else if (ch === '"' && field.trim() === '') {
        quoted = true;
        wasQuoted = true;
        field = '';
      } else if (ch === ',') {
        fields.push(wasQuoted ? field : field.trim());
        field = '';
        wasQuoted = false;
      } else if (wasQuoted && (ch === ' ' || ch === '\t')) {
        // Padding after a closing quote ("a.png" , good) is not part of the field.
      } else if (ch === '\n' || ch === '\r') {
        if (ch === '\r' && text[i + 1] === '\n') i++;
        i++;
        line++;
        break;
      } else field += ch;
    }
    if (quoted) throw new Error(`unterminated quoted field starting on line ${startLine}`);
    fields.push(wasQuoted ? field : field.trim());
    const blank = fields.length === 1 && fields[0] === '' && !wasQuoted;
    if (!blank && !fields[0]!.startsWith('#')) rows.push({ line: startLine, fields });
  }
  return rows;
}

const LIST_COLUMNS = ['path', 'label', 'mask', 'split'] as const;
type ListColumn = (typeof LIST_COLUMNS)[number];

/**
 * Only 'good' (any case), '0' or an empty label mean good — no guessing at 'ok'/'normal', which could be
 * defect names in someone's taxonomy; '1' means an unnamed defect ('anomalous').
 */
function normaliseLabel(raw: string): string {
  const t = raw.trim();
  if (t === '' || t === '0' || t.toLowerCase() === 'good') return 'good';
  if (t === '1') return 'anomalous';
  return t;
}

/**
 * A CSV or text list. Columns `path,label,mask,split`; a header row naming them (any order, any case)
 * is optional — without one the columns are positional in that order. Paths are relative to the list
 * file's folder (absolute paths are kept). Labels: 'good' or '0' → good, '1' → 'anomalous', anything
 * else is the defect type. Split rule:
 * - with a split column, each row goes where it says ('train' rows must be good);
 * - without one, a list of bare paths (no label column) is a training list, and a labelled list is a
 *   test list (train stays empty: evaluate an existing model, or add a split column to fit).
 * Every referenced image and mask must exist, so a typo fails here, not halfway through a fit.
 */
async function loadList(file: string): Promise<Dataset> {
  let text: string;
  try {
    text = (await readRegularFile(file, (kind) => new PartscanError('DATASET', `List file ${file} is ${kind}, not a file.`, { file, remedy: 'give the path of a CSV list file' }))).toString('utf8');
  } catch (e) {
    if (e instanceof PartscanError) throw e;
    throw new PartscanError('DATASET', `Cannot read list file ${file}.`, { file, remedy: 'check the path', cause: e });
  }
  let rows: { line: number; fields: string[] }[];
  try {
    rows = parseCsv(text);
  } catch (e) {
    throw new PartscanError('DATASET', `List file ${file} is not valid CSV: ${(e as Error).message}.`, {
      file,
      remedy: 'close the quote, or quote fields that contain commas',
    });
  }
  const base = path.dirname(file);
  let columns: Partial<Record<ListColumn, number>> = { path: 0, label: 1, mask: 2, split: 3 };
  let width = 0;
  const first = rows[0]?.fields.map((f) => f.trim().toLowerCase());
  if (first && first.includes('path')) {
    const unknown = first.filter((f) => !(LIST_COLUMNS as readonly string[]).includes(f));
    if (unknown.length > 0) {
      throw new PartscanError('DATASET', `List file ${file}: unknown header column(s) ${unknown.join(', ')}.`, {
        file,
        remedy: 'name the columns path,label,mask,split (label, mask and split are optional)',
      });
    }
    columns = {};
    first.forEach((name, idx) => (columns[name as ListColumn] = idx));
    width = first.length;
    rows = rows.slice(1);
  } else {
    width = Math.max(0, ...rows.map((r) => r.fields.length));
    if (width > LIST_COLUMNS.length) {
      throw new PartscanError(
        'DATASET',
        `List file ${file} has rows with ${width} columns; at most ${LIST_COLUMNS.length} (path,label,mask,split) are understood.`,
        { file, remedy: 'add a header row naming the columns path,label,mask,split, or drop extra columns' },
      );
    }
  }
  const hasColumn = (c: ListColumn) => columns[c] !== undefined && columns[c]! < width;
  const hasSplit = hasColumn('split');
  const hasLabel = hasColumn('label');
  const field = (r: string[], c: ListColumn) => (hasColumn(c) ? (r[columns[c]!] ?? '').trim() : '');

  const train: Sample[] = [];
  const test: Sample[] = [];
  const fail = (line: number, what: string, remedy: string): never => {
    throw new PartscanError('DATASET', `List file ${file}, line ${line}: ${what}.`, { file, remedy });
  };
  for (const { line, fields } of rows) {
    const rel = field(fields, 'path');
    if (rel === '') fail(line, 'the path is empty', 'give an image path in the first (or "path") column');
    const imagePath = path.resolve(base, rel);
    if (!(await statOrUndefined(imagePath))?.isFile()) {
      fail(line, `image ${imagePath} does not exist`, 'fix the path (relative paths are resolved from the list file folder)');
    }
    const label = normaliseLabel(field(fields, 'label'));
    const maskRel = field(fields, 'mask');
    let maskPath: string | undefined;
    if (maskRel !== '') {
      maskPath = path.resolve(base, maskRel);
      if (!(await statOrUndefined(maskPath))?.isFile()) {
        fail(line, `mask ${maskPath} does not exist`, 'fix the mask path or leave the mask column empty');
      }
    }
    const s = sample(imagePath, label, maskPath);
    let split: string;
    if (hasSplit) split = field(fields, 'split').toLowerCase();
    else split = hasLabel ? 'test' : 'train';
    if (split === 'train') {
      if (s.anomalous) {
        fail(line, `training row is labelled '${label}'`, 'only good images may be in the train split');
      }
      train.push(s);
    } else if (split === 'test') test.push(s);
    else fail(line, `split '${split}' is neither 'train' nor 'test'`, "use 'train' or 'test' in the split column");
  }
  if (train.length === 0 && test.length === 0) {
    throw new PartscanError('DATASET', `List file ${file} lists no images.`, {
      file,
      remedy: 'add one row per image: path,label,mask,split (header optional)',
    });
  }
  return { root: file, format: 'list', train, test };
}

/**
 * Loads a dataset. Without `format` the layout is detected: a .csv/.txt file is a list; a folder with
 * train/good/rgb is MVTec 3D-AD; one with train/good is MVTec AD; otherwise a plain folder of good
 * images. Test samples are ordered by defect type, then file name; labels are 'good' or the folder name.
 * A defect image without a mask is allowed (pixel metrics skip it).
 * @throws PartscanError 'DATASET' for a missing root, an empty training folder, or a malformed list.
 *
 * @example
 * const ds = await loadDataset('mvtec/bottle');
 * const model = await fit(ds.train);
 * const { metrics } = await evaluateModel(model, ds);
 */
export async function loadDataset(root: string, opts: { format?: Dataset['format'] } = {}): Promise<Dataset> {
  const abs = path.resolve(root);
  const st = await statOrUndefined(abs);
  if (!st) {
    throw new PartscanError('DATASET', `Dataset ${abs} does not exist.`, { file: abs, remedy: EXPECTED_LAYOUTS });
  }
  const isList = st.isFile() && ['.csv', '.txt'].includes(path.extname(abs).toLowerCase());
  const format =
    opts.format ??
    (isList
      ? 'list'
      : (await isDirectory(path.join(abs, 'train', 'good', 'rgb')))
        ? 'mvtec3d'
        : (await isDirectory(path.join(abs, 'train', 'good')))
          ? 'mvtec'
          : 'folder');
  if (format === 'list') {
    if (!st.isFile()) {
      throw new PartscanError('DATASET', `Dataset ${abs} is a folder, but format 'list' needs a .csv/.txt file.`, {
        file: abs,
        remedy: 'pass the list file, or leave format out to detect the folder layout',
      });
    }
    return loadList(abs);
  }
  if (!st.isDirectory()) {
    throw new PartscanError('DATASET', `Dataset ${abs} is ${specialFileKind(st) ?? 'a file'}, not a folder or a .csv/.txt list.`, {
      file: abs,
      remedy: EXPECTED_LAYOUTS,
    });
  }
  switch (format) {
    case 'mvtec3d':
      return loadMvtec3d(abs);
    case 'mvtec':
      return loadMvtec(abs);
    case 'folder':
      return loadFolder(abs);
    default:
      throw new PartscanError('OPTIONS', `Unknown dataset format '${String(format)}'.`, {
        remedy: "use 'mvtec', 'mvtec3d', 'folder' or 'list'",
      });
  }
}
