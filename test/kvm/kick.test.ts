/**
 * Kicks on a real machine: one event each, acknowledged at the vCPU's next safe point wherever
 * it is — inside KVM_RUN, waiting for a device's answer, paused, or stopped — and never resent.
 */
import { describe, expect, it } from 'vitest';
import { createMachine } from '@kvmpool/core';
import { signalsSent } from '@kvmpool/core/internal';
import { bytesToValue, type Device } from '@kvmpool/devices';
import { until, within } from '../support/bounded.js';
import { DATA_PORT, DONE_PORT, READ_PORT, SPIN, readsEchoed } from '../support/machine-guests.js';

const CODE = 0x10000n;
const stack = (i: number): bigint => 0x80000n + BigInt(i) * 0x1000n;
const BOUND = 30_000;

describe('kick', () => {
  it('10k kicks to a vCPU waiting on a device read are acknowledged; the read then gets its answer', async () => {
    const values: number[] = [];
    let answer: (() => void) | undefined;
    const reader: Device = {
      name: 'slow',
      read: (_o, d) => new Promise<void>((resolve) => {
        answer = () => {
          d.set([0x2a, 0, 0, 0]);
          resolve();
        };
      }),
      write: () => {},
    };
    const rec: Device = { name: 'rec', read: (_o, d) => void d.fill(0), write: (_o, d) => void values.push(bytesToValue(d)) };
    const done: Device = { name: 'done', read: (_o, d) => void d.fill(0), write: () => {} };
    await using m = await createMachine({
      memory: '2 MiB',
      devices: [
        { device: done, pio: { base: DONE_PORT, length: 1 }, stopsVcpu: true },
        { device: rec, pio: { base: DATA_PORT, length: 4 } },
        { device: reader, pio: { base: READ_PORT, length: 4 } },
      ],
    });
    m.load(CODE, readsEchoed(1));
    await m.start({ entry: CODE, stack });
    await until(() => answer !== undefined, BOUND, 'the device read');
    await within((async () => {
      for (let i = 0; i < 10_000; i++) await m.kick(0);
    })(), BOUND, '10k kicks to a vCPU in a device wait');
    expect(m.vcpuStates()).toEqual(['running']);
    answer!();
    expect(await within(m.waitForExit(), BOUND, 'the guest')).toEqual({ reason: 'halted' });
    expect(values).toEqual([0x2a]);
  });

  it('kicks that are never acknowledged (a hung vCPU thread) send one signal, not one per kick or per wait', async () => {
    const m = await createMachine({ memory: '2 MiB', vcpus: 1 });
    try {
      m.load(CODE, SPIN);
      await m.start({ entry: CODE, stack });
      await m.pause(); // the thread is in its event loop: the fault blocks it for good
      await m.injectThreadFault(0, 'hang', { hang: true });
      const before = signalsSent();
      const N = 20;
      // Each kick waits 20 ms for an acknowledgement that never comes: a handle that resent
      // its signal until acknowledged would send many per kick.
      await within((async () => {
        for (let i = 0; i < N; i++) await m.kick(0, 20);
      })(), BOUND, 'kicks to a hung vCPU thread');
      const sent = signalsSent() - before;
      expect(sent).toBeLessThanOrEqual(N);
      // And the protocol sends none while an earlier kick is unacknowledged: the first kick's only.
      expect(sent).toBe(1);
    } finally {
      await within(m.close(), BOUND, 'close() of a machine with a hung vCPU thread');
    }
  });

  it('kicks to a paused vCPU and to a stopped one resolve, and leave them as they are', async () => {
    await using m = await createMachine({ memory: '2 MiB', vcpus: 2 });
    m.load(CODE, SPIN);
    await m.start({ entry: CODE, stack });
    await m.pause();
    await within((async () => {
      for (let i = 0; i < 1000; i++) await m.kick(i % 2);
    })(), BOUND, 'kicks to paused vCPUs');
    expect(m.vcpuStates()).toEqual(['paused', 'paused']);
    const rax = (await m.getRegs(0)).rax;
    await m.resume();
    await m.kick(0);
    await m.pause();
    expect((await m.getRegs(0)).rax).toBeGreaterThanOrEqual(rax);
    expect(await m.stop()).toEqual({ reason: 'stopped' });
    await within(m.kick(0), BOUND, 'a kick to a stopped vCPU');
    expect(m.vcpuStates()).toEqual(['stopped', 'stopped']);
  });
});
