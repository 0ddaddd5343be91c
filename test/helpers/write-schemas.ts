/**
 * Writes docs/schemas/*.schema.json from src/cli/output-schemas.ts (`npm run schemas`).
 * test/json-contract.test.ts fails when the committed files differ from what this writes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { jsonSchemaFiles } from '../../src/cli/output-schemas.js';
import { REPO } from './shared.js';

const dir = path.join(REPO, 'docs', 'schemas');
mkdirSync(dir, { recursive: true });
for (const [name, text] of Object.entries(jsonSchemaFiles())) writeFileSync(path.join(dir, name), text);
console.log(`wrote ${Object.keys(jsonSchemaFiles()).length} schemas to ${dir}`);
