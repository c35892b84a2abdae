// Deadlines the pool keeps whatever the guest or a host function does: kvmpool_init, sync and
// async host functions, process exit, and close({ force: true }).
import { describe, expect, it } from 'vitest';
import { ClosedError, SandboxPool, SandboxTimeoutError, SandboxWorkerError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';
import { runPoolChild } from '../support/pool-child.js';

const hostModule = new URL('../fixtures/pool-host-functions.mjs', import.meta.url);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const guest = (): string => buildSandboxGuest('pool-guest.c');

describe('SandboxPool deadlines', () => {
  it('a kvmpool_init that never returns fails the first call with SandboxWorkerError (cause: a time-out)', async () => {
    const pool = new SandboxPool({ guest: buildSandboxGuest('pool-guest-slow-init.c'), threads: 1, initTimeoutMs: 200 });
    try {
      const err = await pool.call('echo', enc('x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxWorkerError);
      expect((err as Error).cause).toBeInstanceOf(SandboxTimeoutError);
      expect((err as Error).message).toMatch(/kvmpool_init/);
    } finally {
      await pool.close();
    }
  });

  it('a sync host function that blocks past timeoutMs fails the call before it returns, and the worker is replaced', async () => {
    const pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    try {
      expect(dec(await pool.call('echo', enc('warm')))).toBe('warm');
      const t0 = performance.now();
      const err = await pool.call('call_host', enc('block\x005000'), { timeoutMs: 100 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxTimeoutError);
      expect(performance.now() - t0).toBeLessThan(5000); // it did not wait for the host function
      // The old worker is still blocked: only a replacement can answer this.
      expect(dec(await pool.call('echo', enc('replaced')))).toBe('replaced');
      expect(pool.stats()).toMatchObject({ workerReplacements: 1, timeouts: 1, timeoutsByKind: { watchdog: 1 } });
    } finally {
      await pool.close();
    }
  });

  it('an async host function that never settles times out, and the next call and close() still finish', async () => {
    const pool = new SandboxPool({ guest: guest(), threads: 1, asyncHostFunctions: { never: () => new Promise<never>(() => {}), fast: async (a) => a } });
    await expect(pool.call('call_host', enc('never\0x'), { timeoutMs: 100 })).rejects.toThrow(SandboxTimeoutError);
    expect(dec(await pool.call('call_host', enc('fast\0next')))).toBe('next');
    expect(pool.stats().timeoutsByKind.hostCall).toBe(1);
    await pool.close();
  });

  it('a late answer of an abandoned host call is never applied to a later call', async () => {
    let release!: () => void;
    const late = new Promise<void>((r) => (release = r));
    const pool = new SandboxPool({
      guest: guest(),
      threads: 1,
      asyncHostFunctions: {
        slow: async () => {
          await late;
          return 'LATE ANSWER';
        },
        fast: async (a) => a,
      },
    });
    try {
      await expect(pool.call('call_host', enc('slow\0x'), { timeoutMs: 100 })).rejects.toThrow(SandboxTimeoutError);
      const next = pool.call('call_host', enc('fast\0mine'));
      release();
      expect(dec(await next)).toBe('mine');
      await new Promise((r) => setTimeout(r, 20));
      for (let i = 0; i < 5; i++) expect(dec(await pool.call('call_host', enc(`fast\0mine ${i}`)))).toBe(`mine ${i}`);
    } finally {
      await pool.close();
    }
  });

  it('close({ force: true }) ends at once and fails running and queued calls with ClosedError', async () => {
    const pool = new SandboxPool({ guest: guest(), threads: 1 });
    expect(dec(await pool.call('echo', enc('warm')))).toBe('warm');
    const running = pool.call('spin', new Uint8Array(0)).catch((e: unknown) => e);
    const queued = pool.call('echo', enc('never')).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    await pool.close({ force: true });
    expect(await running).toBeInstanceOf(ClosedError);
    expect(await queued).toBeInstanceOf(ClosedError);
    await expect(pool.call('echo', enc('x'))).rejects.toThrow(ClosedError);
  });

  it('process.exit() ends the process while a call with no time limit runs', async () => {
    const result = await runPoolChild('exit');
    expect(result).toEqual({ code: 0, stdout: 'ping\n', killed: false });
  });
});
