// Abort: one cancel flag and one kick end a running call, wherever it is (guest code or a host
// call wait); a queued call leaves the queue; AbortError carries the signal's reason.
import { describe, expect, it } from 'vitest';
import { AbortError, SandboxPool } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

describe('SandboxPool abort', () => {
  it('aborts running and queued calls with AbortError (code ABORT_ERR, cause the reason); the pool goes on', async () => {
    const pool = new SandboxPool({ guest: buildSandboxGuest('pool-guest.c'), threads: 1 });
    try {
      expect(dec(await pool.call('echo', enc('warm')))).toBe('warm');
      const running = new AbortController();
      const queued = new AbortController();
      const a = pool.call('spin', new Uint8Array(0), { signal: running.signal });
      const b = pool.call('echo', enc('never'), { signal: queued.signal });
      await new Promise((r) => setTimeout(r, 30));
      const reasonB = new Error('not needed');
      queued.abort(reasonB);
      const errB = await b.catch((e: unknown) => e);
      expect(errB).toBeInstanceOf(AbortError);
      expect(errB).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: reasonB });
      const reasonA = new Error('user gave up');
      running.abort(reasonA);
      const errA = await a.catch((e: unknown) => e);
      expect(errA).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: reasonA });
      expect(dec(await pool.call('echo', enc('goes on')))).toBe('goes on');
      expect(pool.stats()).toMatchObject({ aborted: 2, workerReplacements: 0 });
    } finally {
      await pool.close();
    }
  });

  it('an abort during a host call that never settles frees the worker for the next call', async () => {
    const pool = new SandboxPool({ guest: buildSandboxGuest('pool-guest.c'), threads: 1, asyncHostFunctions: { never: () => new Promise<never>(() => {}) } });
    try {
      const ac = new AbortController();
      const a = pool.call('call_host', enc('never\0x'), { signal: ac.signal });
      await new Promise((r) => setTimeout(r, 50));
      ac.abort();
      await expect(a).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
      expect(dec(await pool.call('echo', enc('next')))).toBe('next');
      expect(pool.stats().workerReplacements).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('an already-aborted signal rejects at once with its reason as cause', async () => {
    const pool = new SandboxPool({ guest: buildSandboxGuest('pool-guest.c'), threads: 1 });
    try {
      const reason = new Error('before');
      const err = await pool.call('echo', enc('x'), { signal: AbortSignal.abort(reason) }).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: reason });
    } finally {
      await pool.close();
    }
  });
});
