#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm install` (the package's `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write('partscan: the compiled CLI is missing (dist/). Run `npm install` or `npm run build` in the partscan folder.\n');
  process.exit(2);
}
// Large buffers want transparent huge pages (see src/util/huge-pages.ts): re-run once with glibc's
// tunable set, unless PARTSCAN_HUGE_PAGES=0.
const hugePages = fileURLToPath(new URL('../dist/util/huge-pages.js', import.meta.url));
// The relaunching parent forwards SIGINT/SIGTERM/SIGHUP to the child and ends as the child ended.
if (existsSync(hugePages)) await (await import(hugePages)).relaunchWithHugePages();
await import(entry);
