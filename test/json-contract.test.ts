/**
 * The `--json` contract (issue: one key style, one documented shape per command): docs/schemas/ holds
 * a JSON Schema for every `--json` output and for results.json, generated from src/cli/output-schemas.ts;
 * every field they declare is camelCase. test/cli.test.ts validates the real outputs against these files.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { jsonSchemaFiles } from '../src/cli/output-schemas.js';
import { nonCamelKeys, schemaFile } from './helpers/json-contract.js';
import { REPO } from './helpers/shared.js';

const dir = path.join(REPO, 'docs', 'schemas');

/** Every property name a JSON Schema declares, with its path. */
function declaredNames(schema: unknown, at = '$'): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => declaredNames(s, `${at}[${i}]`));
  if (typeof schema !== 'object' || schema === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'properties' && typeof v === 'object' && v !== null) {
      for (const [name, sub] of Object.entries(v)) out.push(`${at}.${name}`, ...declaredNames(sub, `${at}.${name}`));
    } else out.push(...declaredNames(v, at));
  }
  return out;
}

describe('JSON contract', () => {
  it('docs/schemas/ is what src/cli/output-schemas.ts generates (run `npm run schemas` after changing an output)', () => {
    const generated = jsonSchemaFiles();
    expect(readdirSync(dir).sort()).toEqual(Object.keys(generated).sort());
    for (const [name, text] of Object.entries(generated)) expect(readFileSync(path.join(dir, name), 'utf8'), name).toBe(text);
  });

  it('every declared field is camelCase (verdict names OK / NG / UNCERTAIN are the only capitals)', () => {
    for (const name of readdirSync(dir)) {
      const names = declaredNames(JSON.parse(readFileSync(path.join(dir, name), 'utf8')));
      expect(names.length, name).toBeGreaterThan(0);
      const bad = names.filter((p) => !/\.([a-z][A-Za-z0-9]*|OK|NG|UNCERTAIN)$/.test(p));
      expect(bad, name).toEqual([]);
    }
  });

  it('the schemas reject what the contract forbids: snake_case keys, missing fields, regions as a count', () => {
    const metrics = { imageAuroc: 1, pixelAuroc: null, aupro: 0.9, imageF1Max: 1, nGood: 2, nDefect: 1 };
    const evalOut = { ...metrics, perDefect: { broken_large: metrics }, verdicts: null, operatingPoints: [], shippedOperatingPoint: null, seconds: 1, model: '/m', dataset: '/d' };
    expect(schemaFile('eval').safeParse(evalOut).success).toBe(true);
    expect(schemaFile('eval').safeParse({ ...evalOut, image_auroc: 1 }).success).toBe(false);
    const { nGood: _n, ...withoutCount } = evalOut;
    expect(schemaFile('eval').safeParse(withoutCount).success).toBe(false);
    const result = { file: 'a.png', imageScore: 1, normalizedScore: 0.3, verdict: 'OK', regions: 0, width: 10, height: 10 };
    const score = { outDir: '/o', counts: { OK: 1, NG: 0, UNCERTAIN: 0, failed: 0 }, results: [result], failures: [], seconds: 1 };
    expect(schemaFile('score').safeParse(score).success).toBe(false);
    expect(schemaFile('score').safeParse({ ...score, results: [{ ...result, regions: [] }] }).success).toBe(true);
    expect(schemaFile('error').safeParse({ error: { code: 'OPTIONS', message: 'm', remedy: null } }).success).toBe(true);
    expect(schemaFile('error').safeParse({ error: { code: 'OPTIONS' } }).success).toBe(false);
  });

  it('the key-style check finds snake_case keys and leaves data maps alone', () => {
    expect(nonCamelKeys({ perDefect: { broken_large: { nGood: 1 } }, confusion: { good: { OK: 1 } } })).toEqual([]);
    expect(nonCamelKeys({ a: [{ image_auroc: 1 }] })).toEqual(['$.a[0].image_auroc']);
  });
});
