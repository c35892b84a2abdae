// KVM_IOEVENTFD and the queue-notify watcher thread, below the virtio devices: a guest MMIO write that
// matches a binding signals its eventfd without an exit; one that does not (or after the binding is
// removed) exits as usual; the watcher wakes the main thread per notified eventfd and leaves no thread
// or fd behind when closed.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EventFd, NotifyWatcher, createMachine, drainVcpuThreads, virtioBlk, virtioConsole, virtioRng } from '@kvmpool/core/internal';
import { CODE as GUEST_CODE, MODE, STACK, guestMachine, readResults } from '../support/virtio-guest.js';
import { CODE, imm32, makeGuest } from '../support/guest.js';
import { until, within } from '../support/bounded.js';

const threads = (): number => readdirSync('/proc/self/task').length;
const fds = (): number => readdirSync('/proc/self/fd').length;
const DOORBELL = 0xd000_0050;

/** 32-bit protected mode (no paging, any address reachable): `mov dword [DOORBELL], v` for each v, then hlt. */
function doorbellGuest(values: number[]): number[] {
  return [...values.flatMap((v) => [0xc7, 0x05, ...imm32(DOORBELL), ...imm32(v)]), 0xf4];
}

describe('KVM_IOEVENTFD', () => {
  it('a matching write signals the eventfd with no exit; another value exits as MMIO; close() removes the binding', () => {
    using g = makeGuest('protected', doorbellGuest([1, 1, 7, 1]));
    using efd = EventFd.create();
    const binding = g.vm.ioeventfd(efd, { address: DOORBELL, length: 4, datamatch: 1 });
    expect(g.vm.ioeventfds).toEqual([binding]);
    // Writes of 1 never reach userspace: the first exit is the write of 7.
    const first = g.vcpu.run();
    expect(first.kind === 'mmio' && first.direction === 'write' ? [first.address, [...first.data]] : first).toEqual([BigInt(DOORBELL), [7, 0, 0, 0]]);
    expect(efd.read()).toBe(2n);
    expect(g.vcpu.run().kind).toBe('hlt');
    expect(efd.read()).toBe(1n);

    binding.close();
    binding.close(); // idempotent
    expect(binding.closed).toBe(true);
    expect(g.vm.ioeventfds).toEqual([]);
    // Unbound, the same guest's write of 1 exits.
    g.vm.memory.write(CODE, doorbellGuest([1]));
    const regs = g.vcpu.getRegs();
    g.vcpu.setRegs({ ...regs, rip: CODE });
    const again = g.vcpu.run();
    expect(again.kind === 'mmio' ? [...again.data] : again).toEqual([1, 0, 0, 0]);
    expect(efd.read()).toBeUndefined();
  });

  it('refuses bad lengths and values that do not fit, and a closed VM drops its bindings', () => {
    using g = makeGuest('protected', [0xf4]);
    using efd = EventFd.create();
    expect(() => g.vm.ioeventfd(efd, { address: DOORBELL, length: 3 as 4 })).toThrow(/length/);
    expect(() => g.vm.ioeventfd(efd, { address: DOORBELL, length: 1, datamatch: 256 })).toThrow(/datamatch/);
    const b = g.vm.ioeventfd(efd, { address: DOORBELL, length: 4 });
    g.vm.close();
    expect(b.closed).toBe(true);
    expect(() => b.close()).not.toThrow();
  });
});

describe('NotifyWatcher', () => {
  it('wakes the main thread once per notified eventfd, and close() ends its thread and closes its stop fd', async () => {
    const before = { threads: threads(), fds: fds() };
    const efds = [EventFd.create(), EventFd.create(), EventFd.create()];
    const seen: number[] = [];
    let batches = 0;
    const errors: Error[] = [];
    const w = await NotifyWatcher.start(efds.map((e) => e.fd), {
      beforeNotify: () => batches++,
      onNotify: (i) => seen.push(i),
      onError: (e) => errors.push(e),
    });
    try {
      expect(threads()).toBe(before.threads + 1);
      efds[2]!.write();
      await until(() => seen.length === 1, 5000, 'notify of eventfd 2');
      efds[0]!.write(3n);
      await until(() => seen.length === 2, 5000, 'notify of eventfd 0');
      expect(seen).toEqual([2, 0]);
      expect(batches).toBe(2);
      // The watcher took the counters: the eventfds read empty.
      expect(efds.map((e) => e.read())).toEqual([undefined, undefined, undefined]);
    } finally {
      await within(w.close(), 5000, 'watcher close');
      for (const e of efds) e.close();
    }
    expect(w.ended).toBe(true);
    expect(errors).toEqual([]);
    await until(() => threads() === before.threads, 5000, 'watcher thread gone');
    expect(fds()).toBe(before.fds);
  });
});

describe('a machine with virtio devices', () => {
  it('leaves no thread or fd behind: closed mid-I/O, after a crash, and when create() fails', async () => {
    const disk = new Uint8Array(64 * 512);
    const cycle = async (): Promise<void> => {
      // The guest makes a read available without notifying and spins on the used ring: close() meets a live guest.
      const m = await guestMachine({ devices: [virtioBlk({ backing: disk }), virtioConsole(), virtioRng()] }, { mode: MODE.SNAPSHOT, arg0: 1 });
      await m.start({ entry: GUEST_CODE, stack: STACK });
      await until(() => readResults(m).submitted === 1, 10_000, 'request submitted');
      await within(m.close(), 10_000, 'close');
      expect(m.virtioNotifyState.openEventfds).toBe(0);
    };
    await cycle(); // warm-up: koffi, worker code, the guest build
    await drainVcpuThreads();
    const before = { threads: threads(), fds: fds() };
    for (let i = 0; i < 3; i++) await cycle();
    {
      // A guest that crashes at once (ud2 at the entry).
      const m = await createMachine({ memory: '8 MiB', devices: [virtioRng()] });
      m.load(GUEST_CODE, Uint8Array.from([0x0f, 0x0b]));
      await m.start({ entry: GUEST_CODE, stack: STACK });
      expect((await within(m.waitForExit(), 10_000, 'crash')).reason).toBe('crashed');
      await m.close();
    }
    // Too many virtio devices for the no-irqchip controller's lines: refused before anything starts.
    await expect(createMachine({ memory: '8 MiB', devices: Array.from({ length: 12 }, () => virtioRng()) })).rejects.toThrow(/interrupt lines for 11/);
    // With the irqchip, refused after the first entries' irqfd lines were made: their eventfds are closed too.
    await expect(createMachine({ memory: '8 MiB', irqchip: true, devices: [virtioRng(), virtioRng(), { virtio: {} as never }] })).rejects.toThrow(/virtio entry 2 is not a VirtioDevice/);
    {
      await using m = await createMachine({ memory: '8 MiB', irqchip: true, devices: [virtioRng()] });
      expect(m.virtio[0]!.interrupt).toBe('irqfd');
    }
    await drainVcpuThreads();
    await until(() => threads() === before.threads, 5000, 'threads back to the baseline');
    expect(fds()).toBe(before.fds);
  });
});
