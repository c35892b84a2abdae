// Pipelining under pressure (pool.ts): calls posted behind a running call when their worker is
// retired or dies while the pool closes, the order requeued calls run in, destroy() with calls
// pipelined. Every wait is bounded: a call that never settles fails the test instead of hanging it.
import { describe, expect, it } from 'vitest';
import { ClosedError, SandboxPool, SandboxTimeoutError, SandboxWorkerError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const hostModule = new URL('../fixtures/pool-host-functions.mjs', import.meta.url);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const guest = (): string => buildSandboxGuest('pool-guest.c');
const block = (pool: SandboxPool, ms: number, options = {}): Promise<Uint8Array> => pool.call('call_host', enc(`block\0${ms}`), options);
const upper = (pool: SandboxPool, s: string): Promise<string> => pool.call('call_host', enc(`upper\0${s}`)).then(dec);
const die = (pool: SandboxPool): Promise<Uint8Array> => pool.call('call_host', enc('die\0x'));

/** `p`, or a rejection naming `what` if it has not settled within `ms` (a hang fails the test). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const BOUND_MS = 20_000;

describe('SandboxPool pipelining, hostile', () => {
  it('close() while calls wait behind a call the watchdog retires: they still run and close() ends', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    const wedged = block(pool, 3000, { timeoutMs: 100 });
    const waiting = [upper(pool, 'b'), upper(pool, 'c')];
    expect(pool.stats().pipelined).toBe(2);
    const closing = pool.close();
    await expect(within(wedged, BOUND_MS, 'the wedged call')).rejects.toThrow(SandboxTimeoutError);
    expect(await within(Promise.all(waiting), BOUND_MS, 'the waiting calls')).toEqual(['B', 'C']);
    await within(closing, BOUND_MS, 'close()');
  });

  it('close() while a worker dies with calls pipelined and queued behind it: they all run and close() ends', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    const dying = die(pool);
    const rest = ['b', 'c', 'd', 'e'].map((s) => upper(pool, s));
    // Three wait in the channel behind the dying call, the fourth in the queue.
    expect(pool.stats().pipelined).toBe(3);
    const closing = pool.close();
    await expect(within(dying, BOUND_MS, 'the dying call')).rejects.toThrow(SandboxWorkerError);
    expect(await within(Promise.all(rest), BOUND_MS, 'the calls behind it')).toEqual(['B', 'C', 'D', 'E']);
    await within(closing, BOUND_MS, 'close()');
  });

  it('calls taken back from a dead worker run in the order they were made', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    const order: string[] = [];
    const dying = die(pool);
    const rest = ['b', 'c', 'd', 'e'].map((s) => upper(pool, s).then((u) => order.push(u)));
    await expect(within(dying, BOUND_MS, 'the dying call')).rejects.toThrow(SandboxWorkerError);
    await within(Promise.all(rest), BOUND_MS, 'the calls behind it');
    // One thread runs one call at a time: the order they finish in is the order they ran in.
    expect(order).toEqual(['B', 'C', 'D', 'E']);
    expect(pool.stats().pipelinedMoved).toBe(3);
  });

  it('calls taken back from a retired worker run in the order they were made', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    const order: string[] = [];
    const wedged = block(pool, 3000, { timeoutMs: 100 });
    const rest = ['b', 'c', 'd', 'e'].map((s) => upper(pool, s).then((u) => order.push(u)));
    await expect(within(wedged, BOUND_MS, 'the wedged call')).rejects.toThrow(SandboxTimeoutError);
    await within(Promise.all(rest), BOUND_MS, 'the calls behind it');
    expect(order).toEqual(['B', 'C', 'D', 'E']);
  });

  it('destroy() with three calls pipelined: every call rejects with ClosedError, none of the waiting ones runs, destroy() ends', async () => {
    const pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    const running = pool.call('spin', enc(''));
    // Had any of these run, its worker would have died (exit code 7, a replacement counted).
    const waiting = [die(pool), die(pool), die(pool)];
    expect(pool.stats().pipelined).toBe(3);
    const all = [running, ...waiting].map((p) => p.then(() => 'resolved', (e: unknown) => e));
    await within(pool.destroy(), BOUND_MS, 'destroy()');
    const settled = await within(Promise.all(all), BOUND_MS, 'the calls');
    for (const e of settled) expect(e).toBeInstanceOf(ClosedError);
    const st = pool.stats();
    expect(st.workerReplacements).toBe(0);
    expect(st.failed).toBe(4);
  });
});
