import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ElfError, GuestCrashError, GuestError, HostFunctionError, SandboxPool, SandboxTimeoutError } from '@kvmpool/core';
import { parseElf } from '@kvmpool/core/internal';
import { buildSandboxGuest } from '../support/build-c.js';

const MEMORY = 8 << 20;
const hostModule = new URL('../fixtures/host-functions.mjs', import.meta.url);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const u64 = (b: Uint8Array, at = 0): bigint => new DataView(b.buffer, b.byteOffset).getBigUint64(at, true);
const i64 = (b: Uint8Array, at = 0): bigint => new DataView(b.buffer, b.byteOffset).getBigInt64(at, true);

let guest: string;
let pool: SandboxPool;
const prints: string[] = [];
beforeAll(() => {
  guest = buildSandboxGuest('sandbox-guest.c');
  pool = new SandboxPool({
    guest,
    memory: MEMORY,
    threads: 2,
    hostFunctions: hostModule,
    asyncHostFunctions: {
      lookup: async (arg) => {
        await new Promise((r) => setTimeout(r, 5));
        return `value of ${dec(arg)}`;
      },
      reject: async () => {
        throw new Error('async kaboom');
      },
    },
    onPrint: (text) => prints.push(text),
  });
});
afterAll(async () => {
  await pool.close();
});

async function expectHealthy(p: SandboxPool): Promise<void> {
  expect(dec(await p.call('echo', enc('still fine')))).toBe('still fine');
}

describe('SandboxPool', () => {
  it('runs exported functions, each call from the state kvmpool_init left', async () => {
    expect(dec(await pool.call('echo', enc('hello sandbox')))).toBe('hello sandbox');
    for (let i = 0; i < 20; i++) {
      const out = await pool.call('state', new Uint8Array(0));
      expect([u64(out, 0), u64(out, 8)]).toEqual([42n, 1n]); // init ran once; no call sees another's
    }
    expect(pool.exports).toEqual(expect.arrayContaining(['echo', 'state', 'store_secret', 'find_secret', 'spin']));
  });

  it('isolation: a secret one call leaves in memory, on the stack or in xmm registers is gone for the next', async () => {
    const solo = new SandboxPool({ guest, memory: MEMORY, threads: 1 });
    try {
      const secret = enc('TOP-SECRET:4f1d9a7c2b');
      const masked = secret.map((b) => b ^ 0x55);
      const query = new Uint8Array(8 + masked.length);
      new DataView(query.buffer).setBigUint64(0, BigInt(MEMORY), true);
      query.set(masked, 8);
      // The secret sits past the end of the finder's own (shorter) input, so leftover input
      // bytes would be found too.
      const padded = new Uint8Array([...new Uint8Array(64).fill(0x78), ...secret]);
      for (let i = 0; i < 5; i++) {
        expect(dec(await solo.call('store_secret', padded))).toBe(dec(padded));
        expect(i64(await solo.call('find_secret', query))).toBe(-1n);
      }
      expect(solo.stats().resets).toBe(10);
    } finally {
      await solo.close();
    }
  });

  it('sync host functions run in the worker, async ones on the main thread', async () => {
    expect(dec(await pool.call('call_host', enc('upper\0shout this')))).toBe('SHOUT THIS');
    expect(dec(await pool.call('call_host', enc('lookup\0key-7')))).toBe('value of key-7');
    const many = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.call('call_host', enc(`lookup\0k${i}`))));
    expect(many.map(dec)).toEqual(Array.from({ length: 40 }, (_, i) => `value of k${i}`));
  });

  it('host function failures reach the caller as HostFunctionError and the pool stays healthy', async () => {
    await expect(pool.call('call_host', enc('boom\0x'))).rejects.toThrow(HostFunctionError);
    await expect(pool.call('call_host', enc('boom\0x'))).rejects.toThrow('host function boom: kaboom');
    await expect(pool.call('call_host', enc('reject\0x'))).rejects.toThrow('host function reject: async kaboom');
    await expect(pool.call('call_host', enc('nope\0x'))).rejects.toThrow('host function nope: no such host function');
    await expect(pool.call('call_host', enc('big\0x'))).rejects.toThrow(/host function big: returned 2097152 bytes; the guest's buffer holds 1048576/);
    await expect(pool.call('bad_pointer', new Uint8Array(0))).rejects.toThrow(/host function upper: argument \[0x7fff00000000, \+16\) is outside guest memory/);
    await expectHealthy(pool);
  });

  it('a call over its time limit is stopped with SandboxTimeoutError and the VM is reused', async () => {
    const t0 = performance.now();
    await expect(pool.call('spin', new Uint8Array(0), { timeoutMs: 50 })).rejects.toThrow(SandboxTimeoutError);
    expect(performance.now() - t0).toBeLessThan(5000);
    await expect(pool.call('spin', new Uint8Array(0), { timeoutMs: 30 })).rejects.toThrow('sandbox call spin exceeded its 30 ms time limit');
    await expectHealthy(pool);
    expect(pool.stats().timeouts).toBe(2);
  });

  it('a guest crash gives GuestCrashError with rip, reason and the symbol it crashed in', async () => {
    const err = await pool.call('crash', new Uint8Array(0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestCrashError);
    const rip = (err as GuestCrashError).rip;
    expect((err as GuestCrashError).exit).toBe('shutdown');
    expect(rip).toBeGreaterThanOrEqual(0x100000n);
    // The symbol crosses the worker boundary too: `crash` plus rip's offset in it (the ud2).
    const start = parseElf(new Uint8Array(readFileSync(guest)), guest).functions.get('crash')!;
    expect(rip - start).toBeGreaterThanOrEqual(0n);
    expect(rip - start).toBeLessThan(16n);
    expect((err as GuestCrashError).symbol).toBe(rip === start ? 'crash' : `crash+0x${(rip - start).toString(16)}`);
    expect((err as Error).message).toMatch(/ \(crash(\+0x[0-9a-f]+)?\)$/);
    expect(pool.stats().crashes).toBe(1);
    await expectHealthy(pool);
  });

  it('guest errors: negative return, kvmpool_abort, output larger than its region, unknown export, prints', async () => {
    await expect(pool.call('fail', new Uint8Array(0))).rejects.toThrow(new GuestError('guest function fail returned error -22', -22));
    await expect(pool.call('give_up', new Uint8Array(0))).rejects.toThrow('guest aborted: cannot go on');
    await expect(pool.call('too_much', new Uint8Array(0))).rejects.toThrow(/returned 1048577 bytes of output; the output region holds 1048576/);
    await expect(pool.call('no_such_export', new Uint8Array(0))).rejects.toThrow(/the guest exports no function "no_such_export"/);
    await expect(pool.call('echo', new Uint8Array(2 << 20))).rejects.toThrow(/input of 2097152 bytes exceeds the 1048576-byte input region/);
    await pool.call('greet', new Uint8Array(0));
    expect(prints).toContain('hello from the guest');
    await expectHealthy(pool);
  });

  it('AbortSignal cancels a running call and a queued one; the pool goes on', async () => {
    const solo = new SandboxPool({ guest, memory: MEMORY, threads: 1 });
    try {
      await expectHealthy(solo); // the worker's VM is warm
      const running = new AbortController();
      const queued = new AbortController();
      const a = solo.call('spin', new Uint8Array(0), { signal: running.signal });
      const b = solo.call('echo', enc('never'), { signal: queued.signal });
      await new Promise((r) => setTimeout(r, 30));
      queued.abort();
      await expect(b).rejects.toMatchObject({ name: 'AbortError' });
      running.abort();
      await expect(a).rejects.toMatchObject({ name: 'AbortError' });
      await expectHealthy(solo);
      expect(solo.stats().aborted).toBe(2);
    } finally {
      await solo.close();
    }
  });

  it('a bad guest file is refused when the pool is created', () => {
    expect(() => new SandboxPool({ guest: enc('definitely not an ELF file at all, but long enough to have a header........') })).toThrow(ElfError);
    expect(() => new SandboxPool({ guest: '/bin/true' })).toThrow(/not a static executable/);
    expect(() => new SandboxPool({ guest: '/no/such/guest.elf' })).toThrow(/cannot read guest \/no\/such\/guest.elf/);
    expect(() => new SandboxPool({ guest, memory: '1 MiB' })).toThrow(/memory of 1048576 bytes is too small: .*65536 bytes of stack.* needs at least \d+ bytes/);
  });

  it('close() waits for running calls and then refuses new ones', async () => {
    const p = new SandboxPool({ guest, memory: MEMORY, threads: 1 });
    const pending = p.call('echo', enc('last one'));
    await p.close();
    expect(dec(await pending)).toBe('last one');
    await expect(p.call('echo', enc('x'))).rejects.toThrow('SandboxPool is closed');
    const s = p.stats();
    expect(s).toMatchObject({ calls: 1, completed: 1, resets: 1 });
    expect(s.latency.count).toBe(1);
  });
});
