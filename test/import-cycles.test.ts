/**
 * The source tree reads as the data path: dependencies run one way, so no module may import itself
 * back through others. Static imports, `export … from`, type-only imports and dynamic `import()` all
 * count (a type-only cycle still ties two modules' shapes to each other).
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers/shared.js';

/** Every .ts file under the code folders, with the relative modules it imports (resolved to .ts files). */
function importGraph(): Map<string, string[]> {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push(p);
    }
  };
  // All library code is under src/ (models/ and datasets/ hold data and docs only).
  walk(path.join(REPO, 'src'));
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const deps = relativeImports(readFileSync(f, 'utf8')).map((s) => path.resolve(path.dirname(f), s).replace(/\.js$/, '.ts'));
    graph.set(f, [...new Set(deps.filter((t) => existsSync(t)))]);
  }
  return graph;
}

/** The relative module specifiers a source imports: static, `export … from`, type-only and dynamic. */
function relativeImports(source: string): string[] {
  const spec = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,]+?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;
  return [...source.matchAll(spec)].map((m) => (m[1] ?? m[2])!);
}

/** Every cycle found by depth-first search (each back edge gives one), as repo-relative paths. */
function cycles(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (state.get(d) === 'open') found.push([...stack.slice(stack.indexOf(d)), d].map((x) => path.relative(REPO, x)));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return found;
}

describe('import graph', () => {
  it('has no cycles', () => {
    const graph = importGraph();
    expect(graph.size).toBeGreaterThan(50);
    expect(cycles(graph).map((c) => c.join(' → '))).toEqual([]);
  });

  it('reads static, export-from, type-only, side-effect and dynamic imports; ignores packages', () => {
    const src = [
      "import { a } from './a.js';",
      "import type { B } from '../b.js';",
      "export { c } from './c.js';",
      "export * from './d.js';",
      "import './e.js';",
      "const f = await import('./f.js');",
      "import {\n  g,\n  type G,\n} from './g.js';",
      "import sharp from 'sharp';",
    ].join('\n');
    expect(relativeImports(src)).toEqual(['./a.js', '../b.js', './c.js', './d.js', './e.js', './f.js', './g.js']);
  });

  it('the detector finds a planted cycle', () => {
    const a = path.join(REPO, 'src', 'a.ts');
    const b = path.join(REPO, 'src', 'b.ts');
    const c = path.join(REPO, 'src', 'c.ts');
    expect(cycles(new Map([[a, [b]], [b, [c]], [c, [a]]]))).toEqual([['src/a.ts', 'src/b.ts', 'src/c.ts', 'src/a.ts']]);
    expect(cycles(new Map([[a, [b]], [b, []]]))).toEqual([]);
  });
});
