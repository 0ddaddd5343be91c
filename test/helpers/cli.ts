import { execFile } from 'node:child_process';
import path from 'node:path';
import { REPO } from './shared.js';

/** One finished CLI run. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the `partscan` CLI as a real child process on the TypeScript sources (`node --import tsx
 * src/cli/main.ts`), progress bars off, stack traces off.
 */
export function cli(args: string[], timeoutMs = 120_000, env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts'), ...args],
      { cwd: REPO, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, PARTSCAN_NO_PROGRESS: '1', PARTSCAN_DEBUG: '', ...env } },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
