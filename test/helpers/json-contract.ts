/**
 * Checks a real `--json` output (or results.json) against its committed JSON Schema in docs/schemas/
 * (read as a user's validator would read it) and against the key style: camelCase everywhere.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { z } from 'zod';
import { REPO } from './shared.js';

const cache = new Map<string, z.ZodType>();

/** The committed schema file docs/schemas/<name>.schema.json as a validator. */
export function schemaFile(name: string): z.ZodType {
  let s = cache.get(name);
  if (!s) {
    const json = JSON.parse(readFileSync(path.join(REPO, 'docs', 'schemas', `${name}.schema.json`), 'utf8')) as Record<string, unknown>;
    s = z.fromJSONSchema(json);
    cache.set(name, s);
  }
  return s;
}

/** Keys whose children are data (defect names, drift feature names), not field names. */
const DATA_KEYS = new Set(['perDefect', 'minShift']);
/** Field names allowed besides camelCase: verdict names used as counts. */
const VERDICT_KEYS = new Set(['OK', 'NG', 'UNCERTAIN']);

/** Paths of object keys that are not camelCase (data maps excepted). */
export function nonCamelKeys(value: unknown, at = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => nonCamelKeys(v, `${at}[${i}]`));
  if (typeof value !== 'object' || value === null) return [];
  const bad: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (!/^[a-z][A-Za-z0-9]*$/.test(k) && !VERDICT_KEYS.has(k)) bad.push(`${at}.${k}`);
    if (DATA_KEYS.has(k) && typeof v === 'object' && v !== null) {
      for (const [name, child] of Object.entries(v)) bad.push(...nonCamelKeys(child, `${at}.${k}[${JSON.stringify(name)}]`));
    } else bad.push(...nonCamelKeys(v, `${at}.${k}`));
  }
  return bad;
}

/** Asserts that `value` is valid against docs/schemas/<name>.schema.json and camelCase throughout. */
export function expectContract(name: string, value: unknown): void {
  const r = schemaFile(name).safeParse(value);
  expect(r.success ? [] : r.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`), `${name}.schema.json`).toEqual([]);
  expect(nonCamelKeys(value), `${name}: keys not in camelCase`).toEqual([]);
}
