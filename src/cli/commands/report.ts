/** `partscan report`: the HTML QA report of a scored run. */

import { writeReport } from '../../report/html.js';
import { EXIT_OK } from '../exit-codes.js';
import { toJson, type CliIo } from '../format.js';

export async function reportCommand(runDir: string, f: { out?: string; title?: string; json?: boolean }, io: CliIo): Promise<number> {
  const file = await writeReport(runDir, { ...(f.out ? { out: f.out } : {}), ...(f.title ? { title: f.title } : {}) });
  io.out(f.json ? toJson({ report: file }) + '\n' : `${file}\n`);
  return EXIT_OK;
}
