/**
 * The vCPU state machine seen from the machine: a pause while a device read waits on a
 * promise, requests the state does not allow, pause holders, close on a machine never started.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClosedError, GuestDebugger, VcpuStateError, createMachine, type Machine } from '@kvmpool/core';
import type { Device } from '@kvmpool/devices';
import { within, until } from '../support/bounded.js';
import { DATA_PORT, DONE_PORT, READ_PORT, SPIN, readsEchoed, Recorder } from '../support/machine-guests.js';

const CODE = 0x10000n;
const stack = (i: number): bigint => 0x80000n + BigInt(i) * 0x1000n;
const BOUND = 10_000;

/** Records every 32-bit value written to it. */
/** Answers each read with a promise the test settles when it wants. */
class Deferred implements Device {
  readonly name = 'deferred';
  reads = 0;
  #answer: ((v: number) => void) | undefined;
  read(_o: number, d: Uint8Array): Promise<void> {
    this.reads++;
    return new Promise<void>((resolve) => {
      this.#answer = (v) => {
        new DataView(d.buffer, d.byteOffset, d.length).setUint32(0, v, true);
        resolve();
      };
    });
  }
  write(): void {}
  answer(v: number): void {
    this.#answer?.(v);
  }
}

const done: Device = { name: 'done', read: (_o, d) => void d.fill(0), write: () => {} };

async function readingMachine(): Promise<{ m: Machine; rec: Recorder; dev: Deferred }> {
  const rec = new Recorder();
  const dev = new Deferred();
  const m = await createMachine({
    memory: '2 MiB',
    devices: [
      { device: done, pio: { base: DONE_PORT, length: 1 }, stopsVcpu: true },
      { device: rec, pio: { base: DATA_PORT, length: 4 } },
      { device: dev, pio: { base: READ_PORT, length: 4 } },
    ],
  });
  m.load(CODE, readsEchoed(1)); // in READ_PORT → eax; out eax → DATA_PORT; out → DONE_PORT
  return { m, rec, dev };
}

describe('vCPU lifecycle', () => {
  it('pause() while a device read waits on a promise: registers readable while paused; after resume the guest gets the answer', async () => {
    const { m, rec, dev } = await readingMachine();
    await using _ = m;
    await m.start({ entry: CODE, stack });
    await until(() => dev.reads === 1, BOUND, 'the device read');
    await within(m.pause(), BOUND, 'pause() with a read pending');
    expect(m.vcpuStates()).toEqual(['paused']);
    const regs = await within(m.getRegs(0), BOUND, 'getRegs() of a paused vCPU with a read pending');
    expect(regs.rdx).toBe(BigInt(READ_PORT)); // the guest sits at its `in (%dx), %eax`
    // The device answers while the vCPU is paused; the vCPU takes the answer once resumed.
    dev.answer(0x00c0ffee);
    await within(m.resume(), BOUND, 'resume()');
    expect(await within(m.waitForExit(), BOUND, 'the guest')).toEqual({ reason: 'halted' });
    expect(rec.values).toEqual([0x00c0ffee]);
    expect(dev.reads).toBe(1);
  });

  it('snapshot and inspect of a vCPU whose device read is pending are refused with VcpuStateError; a debugger stops it; nothing hangs', async () => {
    const { m, rec, dev } = await readingMachine();
    await using _ = m;
    await m.start({ entry: CODE, stack });
    await until(() => dev.reads === 1, BOUND, 'the device read');
    const path = join(tmpdir(), `kvmpool-pending-${process.pid}.snap`);
    const snap = within(m.snapshot(path), BOUND, 'snapshot()');
    await expect(snap).rejects.toThrow(VcpuStateError);
    await expect(snap).rejects.toThrow(new RegExp(`read of port 0x${READ_PORT.toString(16)} is still waiting for the device`));
    await expect(within(m.inspect(), BOUND, 'inspect()')).rejects.toThrow(VcpuStateError);
    // A debugger attaching (as gdb does) stops it too, and lets it go on when it detaches.
    const dbg = new GuestDebugger(m);
    await within(dbg.interrupt(), BOUND, 'a debugger stopping a vCPU with a read pending');
    expect(m.vcpuStates()).toEqual(['paused']);
    await within(dbg.detach(), BOUND, 'detach');
    // The refusals let the vCPU go on waiting: the guest still gets its answer.
    expect(m.vcpuStates()).toEqual(['running']);
    dev.answer(7);
    expect(await within(m.waitForExit(), BOUND, 'the guest')).toEqual({ reason: 'halted' });
    expect(rec.values).toEqual([7]);
  });

  it('getRegs() on a running vCPU is refused with VcpuStateError at once; so is loadState() after start', async () => {
    await using m = await createMachine({ memory: '2 MiB' });
    m.load(CODE, SPIN);
    await m.start({ entry: CODE, stack });
    const r = within(m.getRegs(0), BOUND, 'getRegs() of a running vCPU');
    await expect(r).rejects.toThrow(VcpuStateError);
    await expect(r).rejects.toMatchObject({ code: 'ERR_KVMPOOL_VCPU_STATE', vcpu: 0, state: 'running' });
    await expect(r).rejects.toThrow(/^vCPU 0 is running: getRegs\(\) is allowed only when it is created, paused, stopped, crashed; pause it first$/);
    await m.pause();
    const saved = await m.saveVcpuState(0);
    await expect(m.loadVcpuState(0, saved)).rejects.toThrow(/loadState\(\) is allowed only when it is created$/);
    await m.resume();
    await expect(m.loadVcpuState(0, saved)).rejects.toThrow(VcpuStateError);
  });

  it('waitForExit() on a machine never started settles with stopped on close(); later calls throw ClosedError', async () => {
    const m = await createMachine({ memory: '2 MiB' });
    const exit = m.waitForExit();
    await m.close();
    expect(await within(exit, BOUND, 'waitForExit()')).toEqual({ reason: 'stopped' });
    expect(() => m.getRegs(0)).toThrow(ClosedError);
    await expect(m.start({ entry: CODE })).rejects.toThrow(ClosedError);
  });

  it("'1 TiB' of memory is a RangeError naming memory and the limit", async () => {
    const made = createMachine({ memory: '1 TiB' });
    await expect(made).rejects.toThrow(RangeError);
    await expect(made).rejects.toThrow(/^memory: 1024 GiB is more than one memory slot can hold \(at most 4 GiB/);
  });

  it('pause holds are counted: an inspect while a debugger holds the vCPUs paused leaves them paused', async () => {
    await using m = await createMachine({ memory: '2 MiB', vcpus: 2 });
    m.load(CODE, SPIN);
    await m.start({ entry: CODE, stack });
    // A debugger stops the guest while an inspect is under way; the inspect's end must not
    // let the guest run under the debugger.
    const dbg = new GuestDebugger(m);
    await m.whilePaused(async () => {
      await dbg.interrupt();
    });
    expect(m.vcpuStates()).toEqual(['paused', 'paused']);
    expect(m.pauseHolds).toBe(1);
    await m.inspect();
    expect(m.vcpuStates()).toEqual(['paused', 'paused']);
    // The user's pause/resume is one more hold: resume() gives up only that one.
    await m.pause();
    await m.resume();
    expect(m.vcpuStates()).toEqual(['paused', 'paused']);
    await dbg.detach();
    expect(m.pauseHolds).toBe(0);
    expect(m.vcpuStates()).toEqual(['running', 'running']);
  });
});
