/**
 * The public API is two entries: the curated root (`partscan`, src/index.ts) and the building blocks
 * (`partscan/advanced`, src/advanced.ts). The root's exact names are pinned here so that growing it is
 * a deliberate change to this list, not a side effect of an `export *`.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import * as advanced from '../src/advanced.js';
import * as root from '../src/index.js';
import { REPO } from './helpers/shared.js';

const sorted = (xs: Iterable<string>): string[] => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/** The root's runtime values: functions and classes. */
const ROOT_VALUES = [
  'BatchingScorer',
  'LineMonitor',
  'Model',
  'ModelPool',
  'PartscanError',
  'buildReview',
  'calibrate',
  'evaluateModel',
  'exportModelOnnx',
  'fit',
  'fitOnQueue',
  'isPartscanError',
  'loadDataset',
  'renderResult',
  'runDemo',
  'scoreOnQueue',
  'scoreToRunDir',
  'startWorker',
  'writeReport',
  'writeScoredRun',
];

/** The root's types: the options and results the values take and give (erased at run time). */
const ROOT_TYPES = [
  'BackboneSpec',
  'BatchingScorerOptions',
  'CalibrateOptions',
  'CalibrationResult',
  'Dataset',
  'DemoOptions',
  'DemoResult',
  'Evaluation',
  'ExportOnnxOptions',
  'FitOptions',
  'FitReport',
  'ImageResult',
  'ImageSource',
  'LineMonitorOptions',
  'ModelHeader',
  'ModelPoolOptions',
  'MonitorInput',
  'PartscanErrorCode',
  'PartscanWarning',
  'PartscanWorker',
  'ProgressEvent',
  'QueueConnectionOptions',
  'QueueFitOptions',
  'QueueScoreOptions',
  'RawFrame',
  'Region',
  'RenderOptions',
  'ReportOptions',
  'ReviewFile',
  'RunManifest',
  'RunMonitor',
  'Sample',
  'ScoreInput',
  'ScoreOptions',
  'ScoreResult',
  'ScoreRunFailure',
  'ScoreRunOptions',
  'ScoredRunManifest',
  'Verdict',
  'WorkerOptions',
];

/** The whole root API, sorted as the export list is compared. */
const ROOT_API = sorted([...ROOT_VALUES, ...ROOT_TYPES]);

/** Names an entry file exports by name (`export { a, type B } from …`, `export type { … }`); `export *` is reported apart. */
function namedExports(file: string): { names: string[]; stars: string[] } {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, false);
  const names: string[] = [];
  const stars: string[] = [];
  for (const st of sf.statements) {
    if (!ts.isExportDeclaration(st)) {
      const exported = ts.canHaveModifiers(st) && ts.getModifiers(st)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
      if (exported) throw new Error(`${file}: entry files only re-export (found a local declaration)`);
      continue;
    }
    if (!st.exportClause) stars.push((st.moduleSpecifier as ts.StringLiteral).text);
    else if (ts.isNamedExports(st.exportClause)) for (const e of st.exportClause.elements) names.push(e.name.text);
    else stars.push((st.moduleSpecifier as ts.StringLiteral).text);
  }
  return { names, stars };
}


describe('root entry (partscan)', () => {
  const { names, stars } = namedExports(path.join(REPO, 'src', 'index.ts'));

  it('lists its names one by one: no export *', () => {
    expect(stars).toEqual([]);
  });

  it('exports exactly the pinned names, at most 60', () => {
    expect(sorted(names)).toEqual(ROOT_API);
    expect(new Set(names).size).toBe(names.length);
    expect(ROOT_API.length).toBeLessThanOrEqual(60);
  });

  it('its runtime values are the pinned values', () => {
    expect(sorted(Object.keys(root))).toEqual(ROOT_VALUES);
  });
});

describe('root API documentation', () => {
  it('every root function, and the main class methods, carry an @example', () => {
    const entry = path.join(REPO, 'src', 'index.ts');
    const program = ts.createProgram([entry], {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      noEmit: true,
      skipLibCheck: true,
      types: [],
    });
    const checker = program.getTypeChecker();
    const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
    const resolve = (s: ts.Symbol): ts.Symbol => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
    const hasExample = (decl: ts.Node): boolean => ts.getJSDocTags(decl).some((t) => t.tagName.text === 'example');
    const missing: string[] = [];
    const exports = new Map(checker.getExportsOfModule(moduleSymbol).map((s) => [s.name, resolve(s)]));
    for (const [name, sym] of exports) {
      if (!(sym.flags & ts.SymbolFlags.Function)) continue;
      // An overloaded function: every signature a user sees (the implementation's comment is not shown).
      const decls = (sym.declarations ?? []).filter(ts.isFunctionDeclaration);
      const shown = decls.length > 1 ? decls.filter((d) => !d.body) : decls;
      if (!shown.every(hasExample)) missing.push(name);
    }
    const methods: [string, string][] = [
      ['Model', 'load'],
      ['Model', 'score'],
      ['Model', 'save'],
      ['BatchingScorer', 'score'],
      ['LineMonitor', 'push'],
      ['LineMonitor', 'result'],
    ];
    for (const [cls, method] of methods) {
      const member = exports.get(cls)?.members?.get(method as ts.__String) ?? exports.get(cls)?.exports?.get(method as ts.__String);
      const decls = (member?.declarations ?? []).filter(ts.isMethodDeclaration);
      const shown = decls.length > 1 ? decls.filter((d) => !d.body) : decls;
      if (shown.length === 0 || !shown.every(hasExample)) missing.push(`${cls}.${method}`);
    }
    expect(missing).toEqual([]);
  });
});

describe('advanced entry (partscan/advanced)', () => {
  it('repeats nothing from the root: each name has one entry', () => {
    const rootNames = new Set(ROOT_API);
    expect(Object.keys(advanced).filter((k) => rootNames.has(k))).toEqual([]);
    const { names } = namedExports(path.join(REPO, 'src', 'advanced.ts'));
    expect(names.filter((k) => rootNames.has(k))).toEqual([]);
  });

  it('keeps the building blocks that were public before the root was curated', () => {
    for (const k of ['reflectIndex', 'csvField', 'PHASH_BLOCK', 'verdict', 'selectThresholds', 'auroc', 'PARTSCAN_VERSION', 'readModelFile']) {
      expect(advanced).toHaveProperty(k);
    }
  });
});

describe('package.json exports', () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
    main: string;
    types: string;
    exports: Record<string, { types: string; default: string }>;
  };

  it('maps partscan and partscan/advanced to the built entries, with types', () => {
    expect(pkg.exports['.']).toEqual({ types: './dist/index.d.ts', default: './dist/index.js' });
    expect(pkg.exports['./advanced']).toEqual({ types: './dist/advanced.d.ts', default: './dist/advanced.js' });
    expect(pkg.main).toBe('./dist/index.js');
    expect(pkg.types).toBe('./dist/index.d.ts');
  });
});

describe('examples', () => {
  it('import only the package by its name — the public entries partscan and partscan/advanced — or node built-ins', () => {
    const dir = path.join(REPO, 'examples');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const sf = ts.createSourceFile(f, readFileSync(path.join(dir, f), 'utf8'), ts.ScriptTarget.ES2022, false);
      for (const st of sf.statements) {
        if (!(ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) || !st.moduleSpecifier) continue;
        const spec = (st.moduleSpecifier as ts.StringLiteral).text;
        expect(spec.startsWith('node:') || spec === 'partscan' || spec === 'partscan/advanced', `${f} imports ${spec}`).toBe(true);
      }
    }
  });
});
