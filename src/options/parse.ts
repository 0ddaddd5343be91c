/**
 * The one way an options object is checked: a zod schema per public entry, and this helper that turns
 * the first zod issue into the typed 'OPTIONS' error every entry throws, naming the field path.
 */
import type { z } from 'zod';
import { PartscanError } from '../errors.js';

/**
 * Checks `value` against `schema` and returns `value` itself (not zod's copy), so that functions and
 * class instances passed through are the caller's own and absent fields stay absent.
 *
 * @param entry the public entry, e.g. 'fit' or 'Model.score', named in the message.
 * @param remedy what to do, when the entry has a better hint than the zod message.
 */
export function parseOptions<T>(schema: z.ZodType, value: T, entry: string, remedy?: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return value;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.map(String).join('.') || '(options)';
  throw new PartscanError('OPTIONS', `Invalid ${entry} option ${field}: ${issue.message}.`, {
    remedy: remedy ?? `fix ${field} (see the ${entry} options)`,
  });
}

/** Like {@link parseOptions} but returns zod's output, for schemas whose defaults fill the object. */
export function parseOptionsWithDefaults<S extends z.ZodType>(schema: S, value: unknown, entry: string, remedy?: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  parseOptions(schema, value, entry, remedy);
  throw new Error('unreachable');
}
