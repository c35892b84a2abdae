/** Runs test/fixtures/pool-child.mjs in a child process (modes: idle, exit, close) and reports how it ended. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildSandboxGuest } from './build-c.js';

const CHILD = fileURLToPath(new URL('../fixtures/pool-child.mjs', import.meta.url));

export interface ChildEnd {
  code: number | null;
  stdout: string;
  /** Killed by the 20 s bound: the process did not end on its own. */
  killed: boolean;
}

export function runPoolChild(mode: 'idle' | 'exit' | 'close'): Promise<ChildEnd> {
  const guest = buildSandboxGuest('pool-guest.c');
  return new Promise((resolve) => {
    const p = execFile(process.execPath, [CHILD, guest, mode], { timeout: 20_000 }, (error, stdout) => {
      resolve({ code: error ? (error.code as number | null) ?? null : 0, stdout, killed: p.killed });
    });
  });
}
