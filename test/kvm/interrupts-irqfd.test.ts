import { describe, expect, it } from 'vitest';
import { EventFd, type Vcpu, type Vm } from '@kvmpool/core';
import { kvm } from '../support/guest.js';

// Host-side view of the in-kernel irqchip: the IOAPIC state (KVM_GET_IRQCHIP chip 2) is
// `struct kvm_ioapic_state` { u64 base; u32 ioregsel, id, irr, pad; u64 redirtbl[24] }.
const IOAPIC_IRR = 16;
const IOAPIC_REDIR = 24;
const LAPIC_SVR = 0xf0;
const LAPIC_IRR = 0x200;
const MASKED = 1n << 16n;
const LEVEL = 1n << 15n;

function vmWithLapic(): { vm: Vm; vcpu: Vcpu } {
  const vm = kvm().createVm({ irqchip: true });
  vm.addMemory({ guestAddress: 0, size: '1 MiB' });
  const vcpu = vm.createVcpu(0);
  const lapic = vcpu.getLapic();
  new DataView(lapic.regs.buffer, lapic.regs.byteOffset).setUint32(LAPIC_SVR, 0x1ff, true); // software-enabled
  vcpu.setLapic(lapic);
  return { vm, vcpu };
}

function setRedirection(vm: Vm, pin: number, entry: bigint): void {
  const s = vm.getIrqchip(2);
  new DataView(s.buffer, s.byteOffset).setBigUint64(IOAPIC_REDIR + 8 * pin, entry, true);
  vm.setIrqchip(2, s);
}

const ioapicIrr = (vm: Vm): number => new DataView(vm.getIrqchip(2).buffer).getUint32(IOAPIC_IRR, true);
function lapicIrr(vcpu: Vcpu, vector: number): boolean {
  const r = vcpu.getLapic().regs;
  return (r[LAPIC_IRR + (vector >> 5) * 16 + ((vector & 31) >> 3)]! & (1 << (vector & 7))) !== 0;
}

/** irqfd injects from a kernel work item for IOAPIC routes: wait (bounded) for it to land. */
async function eventually(check: () => boolean, ms = 2000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 2));
  }
  return check();
}

describe('KVM_IRQFD', () => {
  it('an eventfd write raises the IOAPIC pin: the vector lands in the LAPIC IRR; after removeIrqfd it does not', async () => {
    const { vm, vcpu } = vmWithLapic();
    using efd = EventFd.create();
    try {
      setRedirection(vm, 5, 0x45n); // vector 0x45, fixed, physical destination APIC 0, edge, unmasked
      vm.irqfd(efd, 5);
      expect(lapicIrr(vcpu, 0x45)).toBe(false);
      efd.write();
      expect(await eventually(() => lapicIrr(vcpu, 0x45))).toBe(true);

      vm.removeIrqfd(efd, 5);
      const lapic = vcpu.getLapic();
      lapic.regs.fill(0, LAPIC_IRR, LAPIC_IRR + 0x80);
      vcpu.setLapic(lapic);
      efd.write();
      await new Promise((r) => setTimeout(r, 50));
      expect(lapicIrr(vcpu, 0x45)).toBe(false);
      // Nobody consumed the counter: the write went to the eventfd only.
      expect(efd.read()).toBe(1n);
    } finally {
      vm.close();
    }
  });

  it('a resample irqfd holds a level-triggered pin asserted (IOAPIC IRR) until deassigned', async () => {
    const { vm } = vmWithLapic();
    using efd = EventFd.create();
    using resample = EventFd.create();
    try {
      setRedirection(vm, 9, 0x49n | LEVEL | MASKED); // masked: the pin's IRR bit stays visible
      vm.irqfd(efd, 9, { resample });
      expect(ioapicIrr(vm) & (1 << 9)).toBe(0);
      efd.write();
      expect(await eventually(() => (ioapicIrr(vm) & (1 << 9)) !== 0)).toBe(true);
      // Deassigning a resample irqfd lowers its line.
      vm.removeIrqfd(efd, 9);
      expect(await eventually(() => (ioapicIrr(vm) & (1 << 9)) === 0)).toBe(true);
    } finally {
      vm.close();
    }
  });

  it('refuses without an irqchip, an out-of-range GSI, and a second binding of one eventfd', () => {
    using efd = EventFd.create();
    const bare = kvm().createVm();
    try {
      expect(() => bare.irqfd(efd, 4)).toThrow(/in-kernel irqchip/);
    } finally {
      bare.close();
    }
    const { vm } = vmWithLapic();
    try {
      expect(() => vm.irqfd(efd, 24)).toThrow(/not an IOAPIC pin/);
      expect(() => vm.irqfd(efd, -1)).toThrow(RangeError);
      vm.irqfd(efd, 4);
      expect(() => vm.irqfd(efd, 6)).toThrow(expect.objectContaining({ code: 'EBUSY' }));
      vm.removeIrqfd(efd, 4);
      expect(() => vm.removeIrqfd(efd, 4)).not.toThrow(); // KVM ignores an unknown pair
    } finally {
      vm.close();
    }
  });

  it('EventFd counts writes, reads reset it, a closed handle refuses', () => {
    const e = EventFd.create();
    expect(e.read()).toBeUndefined();
    e.write(2n);
    e.write();
    expect(e.read()).toBe(3n);
    expect(e.read()).toBeUndefined();
    expect(() => e.write(0n)).toThrow(RangeError);
    const other = EventFd.attach(e.fd);
    other.write(7n);
    other.close();
    expect(e.read()).toBe(7n);
    e.close();
    e.close();
    expect(() => e.write()).toThrow(/closed/i);
  });
});

describe('machine.irqfd()', () => {
  it('a guest takes one interrupt per eventfd write, from the main thread and from a worker; no irqchip refuses', async () => {
    const { createMachine } = await import('@kvmpool/core');
    const { buildFlatGuest } = await import('../support/build-c.js');
    const { Worker } = await import('node:worker_threads');
    const fixture = (n: string): string => new URL(`../fixtures/${n}`, import.meta.url).pathname;
    await using m = await createMachine({ memory: '4 MiB', irqchip: true, coalesce: false });
    let out = '';
    m.serial(0).on('data', (c: Buffer) => (out += c.toString('latin1')));
    m.load(0x10000, buildFlatGuest(fixture('irq-count.S')));
    const line = m.irqfd(10);
    expect(line.gsi).toBe(10);
    await m.start({ entry: 0x10000n, stack: 0x28000n, interrupts: { idt: 0x30000n, stack: 0x2f000n }, regs: () => ({ rdi: 10n, rsi: 4n }) });
    const until = async (want: string): Promise<void> => {
      const end = Date.now() + 5000;
      while (out !== want) {
        if (Date.now() > end) throw new Error(`guest output ${JSON.stringify(out)}, wanted ${JSON.stringify(want)}`);
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    await until('R');
    line.trigger();
    await until('R1');
    line.set(true);
    await until('R12');
    // A device thread: it only knows the fd number.
    const w = new Worker(fixture('eventfd-writer.mjs'), { workerData: { fd: line.fd } });
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    await w.terminate();
    await until('R123');
    line.trigger();
    expect(await m.waitForExit()).toEqual({ reason: 'halted' });
    expect(out).toBe('R1234');

    await using bare = await createMachine({ memory: '2 MiB' });
    expect(() => bare.irqfd(4)).toThrow(/in-kernel irqchip/);
  });
});
