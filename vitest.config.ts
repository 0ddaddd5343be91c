import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // examples/ import the package by its name, as users do; in the repository that is the sources.
  resolve: {
    alias: [
      { find: /^partscan\/advanced$/, replacement: path.resolve('src/advanced.ts') },
      { find: /^partscan$/, replacement: path.resolve('src/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    // Built backbone graphs are cached; keep tests out of the user's real cache.
    env: { PARTSCAN_CACHE_DIR: process.env.PARTSCAN_TEST_CACHE_DIR ?? path.join(os.tmpdir(), 'partscan-test-cache') },
    hookTimeout: 300_000,
    // ORT sessions are heavy: run files in a few forks, not one per core.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
