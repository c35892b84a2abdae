/**
 * The kick protocol (machine/vcpu-lifecycle.ts) on its own: one event per kick, coalesced
 * while a kick is outstanding, never lost — against a second thread that plays the vCPU
 * thread around an emulated KVM_RUN (immediate_exit is looked at once, at entry).
 */
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { CONTROL, REQUEST, acknowledgeKicks, kickAcknowledged, recordKick } from '@kvmpool/core/internal';
import { within } from '../support/bounded.js';

const FIXTURE = new URL('../fixtures/ring-producer.mjs', import.meta.url);

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

describe('kick protocol', () => {
  it('a kick asks for a signal only when no earlier kick is outstanding', () => {
    const ctl = new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4));
    let ie = 0;
    const setIe = (): void => void (ie = 1);
    expect(recordKick(ctl, setIe)).toEqual({ want: 1, signal: true });
    expect(ie).toBe(1);
    // Outstanding: the next kicks ride on the first one's signal.
    expect(recordKick(ctl, setIe)).toEqual({ want: 2, signal: false });
    expect(recordKick(ctl, setIe)).toEqual({ want: 3, signal: false });
    let taken = 0;
    expect(acknowledgeKicks(ctl, () => void (ie = 0), () => void taken++)).toBe(true);
    expect(ie).toBe(0);
    expect(taken).toBe(1);
    expect(kickAcknowledged(ctl, 3)).toBe(true);
    // Nothing new: a safe point acknowledges nothing and takes no signal.
    expect(acknowledgeKicks(ctl, () => {}, () => void taken++)).toBe(false);
    expect(taken).toBe(1);
    expect(recordKick(ctl, setIe)).toEqual({ want: 4, signal: true });
  });

  it('kick numbers wrap at 2^32', () => {
    const ctl = new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4));
    Atomics.store(ctl, CONTROL.KICK_REQ, 0x7fffffff);
    Atomics.store(ctl, CONTROL.KICK_ACK, 0x7fffffff);
    const k = recordKick(ctl, () => {});
    expect(k).toEqual({ want: -0x80000000, signal: true });
    expect(kickAcknowledged(ctl, k.want)).toBe(false);
    acknowledgeKicks(ctl, () => {}, () => {});
    expect(kickAcknowledged(ctl, k.want)).toBe(true);
  });

  it('10k kicks, in bursts and one by one, to a thread in an emulated KVM_RUN are all acknowledged, with no resend', async () => {
    const kick = new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4));
    const sim = new Int32Array(new SharedArrayBuffer(16)); // [1] immediate_exit, [2] "signal"
    const worker = new Worker(FIXTURE, { workerData: { op: 'kick-target', ctl: sim.buffer, kick: kick.buffer } });
    workers.push(worker);
    const stopped = new Promise((resolve) => worker.once('message', resolve));
    let signals = 0;
    const one = (): number => {
      const k = recordKick(kick, () => Atomics.store(sim, 1, 1));
      if (k.signal) {
        signals++;
        Atomics.store(sim, 2, 1);
        Atomics.notify(sim, 2);
      }
      return k.want;
    };
    const acked = async (want: number): Promise<void> => {
      for (;;) {
        if (kickAcknowledged(kick, want)) return;
        const w = Atomics.waitAsync(kick, CONTROL.KICK_ACK, Atomics.load(kick, CONTROL.KICK_ACK), 1000);
        if (w.async) await w.value;
      }
    };
    let kicks = 0;
    for (let round = 0; round < 1000; round++) {
      let want = 0;
      const burst = round % 2 === 0 ? 1 : 19;
      for (let i = 0; i < burst; i++) want = one();
      kicks += burst;
      await within(acked(want), 10_000, `kick ${want}`);
    }
    expect(kicks).toBe(10_000);
    Atomics.store(kick, CONTROL.REQUEST, REQUEST.stop);
    await within(acked(one()), 10_000, 'the stop kick');
    expect(await within(stopped, 10_000, 'the thread')).toEqual({ outcome: 'stopped' });
    // 1,000 cross-thread round trips: 4–8 s inside the test runner's worker on these hosts. The
    // test is about every kick being acknowledged without a resend, not about their speed.
  }, 60_000);
});
