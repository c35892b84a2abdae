// Pipelining: with more calls pending than threads, a busy worker is handed the next call while
// it runs one (pool.ts, call-channel.ts). Every call still gets its own answer; a call waiting
// behind a slow one moves to a worker that falls idle; one whose worker dies or is retired before
// starting it runs elsewhere; an aborted waiting call never runs.
import { describe, expect, it } from 'vitest';
import { AbortError, SandboxPool, SandboxTimeoutError, SandboxWorkerError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const hostModule = new URL('../fixtures/pool-host-functions.mjs', import.meta.url);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const guest = (): string => buildSandboxGuest('pool-guest.c');
/** A call that blocks its worker for `ms` in a host function, then answers "woke". */
const block = (pool: SandboxPool, ms: number, options = {}): Promise<Uint8Array> => pool.call('call_host', enc(`block\0${ms}`), options);
const upper = (pool: SandboxPool, s: string): Promise<string> => pool.call('call_host', enc(`upper\0${s}`)).then(dec);

describe('SandboxPool pipelining', () => {
  it('many calls on one thread: each gets its own output, most are posted behind a running call', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1 });
    const inputs = Array.from({ length: 200 }, (_, i) => `call ${i} ${'x'.repeat(i % 37)}`);
    const outs = await Promise.all(inputs.map((s) => pool.call('echo', enc(s))));
    expect(outs.map(dec)).toEqual(inputs);
    const st = pool.stats();
    expect(st.completed).toBe(200);
    expect(st.pipelined).toBeGreaterThan(100);
    expect(st.pipelinedMoved).toBe(0);
  });

  it('a call waiting behind a slow call moves to the worker that falls idle first', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 2, hostFunctions: hostModule });
    await pool.ready(); // both workers: the calls below find two idle seats
    const before = pool.stats();
    expect(before.calls).toBe(0);
    const order: string[] = [];
    const slow = block(pool, 1500).then(() => order.push('slow'));
    const quick = block(pool, 100).then(() => order.push('quick'));
    // Both workers are busy: this call is posted behind the first seat's call (the slow one).
    const waiting = upper(pool, 'moved').then((s) => order.push(s));
    expect(pool.stats().pipelined - before.pipelined).toBe(1);
    await Promise.all([slow, quick, waiting]);
    expect(order).toEqual(['quick', 'MOVED', 'slow']);
    expect(pool.stats().pipelinedMoved - before.pipelinedMoved).toBe(1);
  });

  it('a waiting call whose worker dies runs on the replacement; the call that killed it fails', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    const dying = pool.call('call_host', enc('die\0x'));
    const waiting = upper(pool, 'after the death');
    expect(pool.stats().pipelined).toBe(1);
    await expect(dying).rejects.toThrow(SandboxWorkerError);
    await expect(waiting).resolves.toBe('AFTER THE DEATH');
    const st = pool.stats();
    expect(st.workerReplacements).toBe(1);
    expect(st.pipelinedMoved).toBe(1);
  });

  it('a waiting call behind a call that overruns its time limit runs on the replacement', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    // The host function blocks its worker past the deadline: the watchdog retires the seat.
    const wedged = block(pool, 3000, { timeoutMs: 100 });
    const waiting = upper(pool, 'still answered');
    await expect(wedged).rejects.toThrow(SandboxTimeoutError);
    await expect(waiting).resolves.toBe('STILL ANSWERED');
    expect(pool.stats().timeoutsByKind.watchdog).toBe(1);
  });

  it('an aborted waiting call never runs and rejects at once; the call before it is unaffected', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, hostFunctions: hostModule });
    await upper(pool, 'warm');
    const order: string[] = [];
    const running = block(pool, 800).then((b) => order.push(`running: ${dec(b)}`));
    const ac = new AbortController();
    const waiting = pool.call('call_host', enc('die\0never runs'), { signal: ac.signal });
    expect(pool.stats().pipelined).toBe(1);
    ac.abort(new Error('not needed'));
    await expect(waiting).rejects.toThrow(AbortError);
    order.push('waiting: aborted');
    await running;
    // Rejected before the running call ended; had it run, 'die' would have killed the worker.
    expect(order).toEqual(['waiting: aborted', 'running: woke']);
    expect(await upper(pool, 'next')).toBe('NEXT');
    expect(pool.stats().workerReplacements).toBe(0);
  });

  it('no pipelining with async host functions (a seat shares one host-call slot between its calls)', async () => {
    await using pool = new SandboxPool({ guest: guest(), threads: 1, asyncHostFunctions: { twice: async (a) => `${dec(a)}${dec(a)}` } });
    const outs = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => pool.call('call_host', enc(`twice\0${i}`))));
    expect(outs.map(dec)).toEqual(['00', '11', '22', '33', '44', '55']);
    expect(pool.stats().pipelined).toBe(0);
  });
});
