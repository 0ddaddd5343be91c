/** Runs a call that may throw or reject, and returns what it threw (undefined when it did not). */
export async function thrown(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  return undefined;
}
