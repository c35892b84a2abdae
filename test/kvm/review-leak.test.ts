// Review: what one call leaves behind in places the isolation tests do not look — the low area
// below 1 MiB, the scratch page, ymm upper halves, the x87 control word and stack, GS base, and
// the syscall layer's process state — is gone in the next call, from either start.
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool, type LinuxStart } from '@kvmpool/core';
import { buildMusl, text } from '../support/linux.js';

const program = buildMusl('../review/leak.c');
const PROBES = ['low-d000', 'low-80000', 'scratch-c800', 'ymm-high', 'x87-cw', 'x87-st', 'gs-base', 'fd', 'umask', 'sigmask', 'sigaction', 'stdin-pos'];
const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

describe('review: state one call leaves is invisible to the next', () => {
  for (const start of ['first-read', 'entry'] as LinuxStart[]) {
    it(`start '${start}'`, async () => {
      const pool = new LinuxPool({ program, start, threads: 1, timeoutMs: 5000 });
      pools.push(pool);
      const seen: string[] = [];
      for (const probe of PROBES) {
        const w = await pool.run(`w ${probe}\nEXTRA-INPUT`);
        const r = await pool.run(`r ${probe}\n`);
        seen.push(`${probe}: w ${w.exitCode ?? w.signal} r ${r.exitCode ?? r.signal} ${text(r.stdout).trim()}`);
      }
      for (const line of seen) expect(line).toMatch(/: w (0|SIGSEGV) r 0 \S+ clean$/);
      const b1 = text((await pool.run('w brk\n')).stdout);
      const b2 = text((await pool.run('w brk\n')).stdout);
      expect(b2).toBe(b1);
    });
  }
});
