/**
 * The one way an options object is checked: a zod schema per public entry (src/options/schemas.ts),
 * and these helpers that turn the first zod issue into the typed 'OPTIONS' error every entry throws,
 * naming the field path (for an unknown key, the key itself, with the known key it was probably meant to be).
 */
import type { z } from 'zod';
import { PartscanError } from '../errors.js';
import { editDistance } from '../util/edit-distance.js';

type Issue = z.core.$ZodIssue;

/**
 * The issue to report: for a value that matches none of a union's forms, the issue of the form it came
 * closest to (the deepest path: `backbone.weights` rather than "not a string").
 */
function mostSpecific(issue: Issue): { issue: Issue; path: PropertyKey[] } {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return { issue, path: issue.path };
  let best: { issue: Issue; path: PropertyKey[] } | undefined;
  for (const branch of issue.errors) {
    const first = branch[0];
    if (!first) continue;
    const inner = mostSpecific(first);
    const typeOnly = inner.issue.code === 'invalid_type' && inner.path.length === 0;
    if (typeOnly && best) continue;
    if (!best || inner.path.length > best.path.length || (best.issue.code === 'invalid_type' && !typeOnly)) best = inner;
  }
  if (!best) return { issue, path: issue.path };
  return best.path.length === 0 && best.issue.code === 'invalid_type'
    ? { issue, path: issue.path }
    : { issue: best.issue, path: [...issue.path, ...best.path] };
}

/** The known key an unknown one was probably meant to be: same letters in another case, or 1–2 edits away. */
function closestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const sameCase = known.find((k) => k.toLowerCase() === lower);
  if (sameCase) return sameCase;
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(lower, k.toLowerCase());
    if (d <= Math.min(2, Math.floor(k.length / 3)) && (!best || d < best.d)) best = { k, d };
  }
  return best?.k;
}

/** The keys an object schema at `path` inside `schema` declares (for "did you mean"). */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: unknown = schema;
  for (const key of path) {
    s = unwrap(s);
    const shape = (s as { shape?: Record<string, unknown> }).shape;
    if (!shape || typeof key !== 'string' || !(key in shape)) return [];
    s = shape[key];
  }
  s = unwrap(s);
  const shape = (s as { shape?: Record<string, unknown> }).shape;
  if (shape) return Object.keys(shape);
  // A union of objects (e.g. a backbone name or spec): the keys of its object forms.
  const options = (s as { options?: unknown[] }).options;
  return options ? options.flatMap((o) => Object.keys((unwrap(o) as { shape?: Record<string, unknown> }).shape ?? {})) : [];
}

/** Optional / default / refined wrappers → the schema underneath. */
function unwrap(s: unknown): unknown {
  let cur = s as { def?: { innerType?: unknown; in?: unknown; schema?: unknown } } | undefined;
  for (let i = 0; i < 8 && cur?.def; i++) {
    const next = cur.def.innerType ?? cur.def.in ?? cur.def.schema;
    if (!next) break;
    cur = next as typeof cur;
  }
  return cur;
}

function optionsError(error: z.ZodError, schema: z.ZodType, entry: string, remedy: string | undefined): PartscanError {
  const { issue, path } = mostSpecific(error.issues[0]!);
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    const field = [...path, key].map(String).join('.');
    const near = closestKey(key, knownKeys(schema, path));
    return new PartscanError('OPTIONS', `Invalid ${entry} option ${field}: unknown option${near ? ` (did you mean ${[...path, near].map(String).join('.')}?)` : ''}.`, {
      remedy: near ? `rename ${key} to ${near}` : `remove ${field} (see the ${entry} options)`,
    });
  }
  const field = path.map(String).join('.') || '(options)';
  return new PartscanError('OPTIONS', `Invalid ${entry} option ${field}: ${issue.message}.`, {
    remedy: remedy ?? `fix ${field} (see the ${entry} options)`,
  });
}

/**
 * Checks `value` against `schema` and returns `value` itself, not zod's copy: callbacks and objects
 * passed through stay the caller's own, and absent fields stay absent, so valid options behave
 * exactly as before the check existed.
 *
 * @param entry the public entry, e.g. 'fit' or 'Model.score', named in the message.
 * @param remedy what to do, when the entry has a better hint than "fix <field>".
 */
export function parseOptions<T>(schema: z.ZodType, value: T, entry: string, remedy?: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw optionsError(parsed.error, schema, entry, remedy);
  return value;
}

/** Like {@link parseOptions}, but returns zod's output: for schemas whose `.default()`s fill the object. */
export function parseOptionsWithDefaults<S extends z.ZodType>(schema: S, value: unknown, entry: string, remedy?: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw optionsError(parsed.error, schema, entry, remedy);
  return parsed.data;
}
