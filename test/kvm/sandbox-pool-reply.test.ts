// The reply path from a pool worker: guest text larger than any reply area is truncated with
// counts, never throws on the main thread, and never stops the pool from answering.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestError, SandboxPool } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

let pool: SandboxPool;
const prints: string[] = [];
beforeAll(() => {
  pool = new SandboxPool({ guest: buildSandboxGuest('pool-guest.c'), threads: 1, onPrint: (t) => prints.push(t) });
});
afterAll(async () => {
  await pool.close();
});

async function expectAnswers(): Promise<void> {
  expect(dec(await pool.call('echo', new TextEncoder().encode('still here')))).toBe('still here');
}

describe('SandboxPool reply path', () => {
  it('a 100 KB print arrives truncated, with the dropped bytes counted, and the pool answers on', async () => {
    prints.length = 0;
    await pool.call('print_big', u32(100_000));
    expect(prints.length).toBe(1);
    expect(prints[0]!.length).toBeGreaterThan(1000);
    expect(prints[0]!.length).toBeLessThan(100_000);
    expect(/^P+$/.test(prints[0]!)).toBe(true);
    expect(pool.stats().printBytesDropped).toBeGreaterThan(0);
    await expectAnswers();
  });

  it('2,000 prints arrive in order up to the reply bound, the rest are counted as dropped', async () => {
    prints.length = 0;
    const before = pool.stats();
    await pool.call('print_many', u32(2000));
    expect(prints.length).toBeGreaterThan(100);
    expect(prints.slice(0, 3)).toEqual(['line 0000', 'line 0001', 'line 0002']);
    const after = pool.stats();
    expect(prints.length + after.printsDropped - before.printsDropped).toBe(2000);
    await expectAnswers();
  });

  it('a 100 KB abort message rejects the call with a GuestError whose message is bounded', async () => {
    const err = await pool.call('abort_big', u32(100_000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestError);
    expect((err as GuestError).message).toMatch(/^guest aborted: AAAA/);
    expect((err as GuestError).message.length).toBeLessThan(100_000);
    expect((err as GuestError).status).toBe(-3);
    await expectAnswers();
  });
});
