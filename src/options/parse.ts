/**
 * The one way an options object is checked: a zod schema per public entry (src/options/schemas.ts),
 * and these helpers that turn the first zod issue into the typed 'OPTIONS' error every entry throws,
 * naming the field path.
 */
import type { z } from 'zod';
import { PartscanError } from '../errors.js';

function optionsError(error: z.ZodError, entry: string, remedy: string | undefined): PartscanError {
  const issue = error.issues[0]!;
  const field = issue.path.map(String).join('.') || '(options)';
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
  if (!parsed.success) throw optionsError(parsed.error, entry, remedy);
  return value;
}

/** Like {@link parseOptions}, but returns zod's output: for schemas whose `.default()`s fill the object. */
export function parseOptionsWithDefaults<S extends z.ZodType>(schema: S, value: unknown, entry: string, remedy?: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw optionsError(parsed.error, entry, remedy);
  return parsed.data;
}
