/** LinuxPool start: 'checkpoint': a program's costly start-up runs once; every run resumes at kvmpool_checkpoint(). */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool, SDK_DIR } from '@kvmpool/core';

const src = fileURLToPath(new URL('../fixtures/linux-checkpoint.c', import.meta.url));
const out = fileURLToPath(new URL('../.build/linux-checkpoint', import.meta.url));
mkdirSync(fileURLToPath(new URL('../.build/', import.meta.url)), { recursive: true });
execFileSync('musl-gcc', ['-static', '-O2', `-I${SDK_DIR}`, '-o', out, src]);

const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

describe('LinuxPool checkpoint', () => {
  it('resumes at kvmpool_checkpoint(): the start-up is paid once, each run sees pristine statics', async () => {
    const pool = new LinuxPool({ program: out, start: 'checkpoint', threads: 1, timeoutMs: 5000 });
    pools.push(pool);
    for (const [input, want] of [['1\n10\n', '2\n29\n'], ['100000\n', '1299709\n'], ['', '']] as const) {
      const r = await pool.run(input);
      expect(r.exitCode).toBe(0);
      expect(r.stats.start).toBe('checkpoint');
      // The start-up's own output is part of the pristine state: every run shows it, as a fresh run would.
      expect(text(r.stderr)).toBe('table of 148933 primes\n');
      expect(text(r.stdout)).toBe(`${want}runs 1 checkpoint 0\n`);
      // The run resumed after the sieve: a few syscalls, not the start-up's.
      expect(r.stats.syscalls).toBeLessThan(12);
    }
  });

  it('the same binary on the host: kvmpool_checkpoint() is ENOSYS and the program still works', () => {
    const r = execFileSync(out, { input: '1\n', stdio: ['pipe', 'pipe', 'ignore'] }).toString();
    expect(r).toBe('2\nruns 1 checkpoint -38\n');
  });

  it("start: 'first-read' captures at the first read of stdin instead", async () => {
    const pool = new LinuxPool({ program: out, threads: 1, timeoutMs: 5000 });
    pools.push(pool);
    const r = await pool.run('3\n');
    expect(r.stats.start).toBe('first-read');
    expect(text(r.stdout)).toBe('5\nruns 1 checkpoint 0\n');
  });
});
