// Nothing a call leaves in memory or registers reaches the next call: heap, bss, stack, the
// break, mmap, xmm15 and the SSE rounding mode are as the pristine state had them, whether the
// state was captured at the first read of stdin or at the entry point; and every call gets fresh
// AT_RANDOM and getrandom bytes.
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool, type LinuxStart } from '@kvmpool/core';
import { buildMusl, text } from '../support/linux.js';

const program = buildMusl('isolation.c');
const PLACES = ['heap-small', 'heap-big', 'bss', 'stack', 'grown-brk', 'past-brk', 'mmap'];
const CALLS = 8;

const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

/** The fixture's report: place → [state, wrote, address]. */
function parse(out: Uint8Array): Map<string, string[]> {
  return new Map(text(out).trim().split('\n').map((l) => {
    const [k, ...v] = l.split(' ');
    return [k!, v];
  }));
}

describe('LinuxPool isolation between calls', () => {
  for (const start of ['first-read', 'entry'] as LinuxStart[]) {
    it(`start '${start}': call N's heap, stack, bss, brk and mmap contents are invisible to call N+1`, async () => {
      const pool = new LinuxPool({ program, start, threads: 1, timeoutMs: 5000 });
      pools.push(pool);
      const addresses = new Map<string, string>();
      for (let n = 0; n < CALLS; n++) {
        const r = await pool.run(`MARK-${n}\n`);
        expect(r.exitCode, text(r.stdout)).toBe(0);
        expect(r.stats.start).toBe(start);
        const got = parse(r.stdout);
        for (const place of PLACES) {
          const [state, wrote, address] = got.get(place) ?? [];
          expect(state, `call ${n}: ${place}`).toBe('clean');
          expect(wrote, `call ${n}: ${place}`).toBe('wrote');
          // The same address every call: the probe looked where the last call wrote.
          if (!addresses.has(place)) addresses.set(place, address!);
          expect(address, `call ${n}: ${place}`).toBe(addresses.get(place));
        }
        expect(got.get('mmap-again')?.[0], `call ${n}`).toBe('clean');
        expect(got.get('rounding')?.[0], `call ${n}: the last call set FE_TOWARDZERO`).toBe('nearest');
        expect(got.get('xmm15')?.[0], `call ${n}: the last call left its marker in xmm15`).toBe('0000000000000000');
      }
    });
  }

  it('growing the break over bytes the program wrote past it gives zeroed pages, as on Linux', async () => {
    const pool = new LinuxPool({ program, threads: 1, timeoutMs: 5000 });
    pools.push(pool);
    const got = parse((await pool.run('MARK-0\n')).stdout);
    expect(got.get('regrown-brk')?.[0]).toBe('clean');
  });

  it('every call sees different AT_RANDOM bytes and different getrandom bytes, on each thread and start', async () => {
    const seen = { 'at-random': new Set<string>(), getrandom: new Set<string>() };
    let calls = 0;
    for (const start of ['first-read', 'entry'] as LinuxStart[]) {
      const pool = new LinuxPool({ program, start, threads: 2, timeoutMs: 5000 });
      pools.push(pool);
      const results = await Promise.all(Array.from({ length: 12 }, (_, n) => pool.run(`MARK-${n}\n`)));
      for (const r of results) {
        const got = parse(r.stdout);
        for (const k of ['at-random', 'getrandom'] as const) {
          const v = got.get(k)![0]!;
          expect(v).toMatch(/^[0-9a-f]{32}$/);
          expect(v).not.toBe('0'.repeat(32));
          seen[k].add(v);
        }
        calls++;
      }
    }
    expect(seen['at-random'].size).toBe(calls);
    expect(seen.getrandom.size).toBe(calls);
  });
});
