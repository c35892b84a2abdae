/** CPU exceptions in a Linux program end it as Linux's signal would, and the next call runs normally. */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool } from '@kvmpool/core';

const src = fileURLToPath(new URL('../fixtures/linux-fault.c', import.meta.url));
const out = fileURLToPath(new URL('../.build/linux-fault', import.meta.url));
mkdirSync(fileURLToPath(new URL('../.build/', import.meta.url)), { recursive: true });
execFileSync('musl-gcc', ['-static', '-O1', '-o', out, src]);

const pool = new LinuxPool({ program: out, threads: 1, timeoutMs: 5000 });
afterAll(() => pool.close());

describe('LinuxPool faults', () => {
  it.each([
    ['n', 'SIGSEGV', /^page fault \(#PF\) at 0x0, rip 0x[0-9a-f]+ \(main\+0x[0-9a-f]+\)$/],
    ['u', 'SIGILL', /^invalid opcode \(#UD\), rip /],
    ['d', 'SIGFPE', /^divide error \(#DE\), rip /],
    ['w', 'SIGSEGV', /^page fault \(#PF\) at 0x2000, rip /],
    ['h', 'SIGSEGV', /^page fault \(#PF\) at 0x10000000000, rip /],
  ])('%s → %s, and the next call is clean', async (input, signal, fault) => {
    const r = await pool.run(input);
    expect(r).toMatchObject({ exitCode: null, signal });
    expect(r.fault).toMatch(fault);
    const next = await pool.run('x');
    expect(next).toMatchObject({ exitCode: 0 });
    expect(next.fault).toBeUndefined();
    expect(new TextDecoder().decode(next.stdout)).toBe('ok x\n');
  });

  it('the same program on the host dies of the same signals', () => {
    for (const [input, signal] of [['n', 'SIGSEGV'], ['u', 'SIGILL'], ['d', 'SIGFPE']]) {
      try {
        execFileSync(out, { input });
        expect.unreachable();
      } catch (e) {
        expect((e as { signal?: string }).signal).toBe(signal);
      }
    }
  });
});
