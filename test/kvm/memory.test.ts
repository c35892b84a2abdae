import { describe, expect, it } from 'vitest';
import { GuestMemoryError } from '@kvmpool/core';
import { collect, imm32, kvm, makeGuest } from '../support/guest.js';

const EXIT = [0x66, 0xba, 0x01, 0x05, 0xee]; // mov $0x501,%dx; out %al,(%dx)

/** mov $addr, %ebx; movb $1, (%rbx) */
const touch = (addr: number): number[] => [0xbb, ...imm32(addr), 0xc6, 0x03, 0x01];

describe('guest memory', () => {
  it('the dirty log lists exactly the pages the guest wrote, and reading it clears it', () => {
    using g = makeGuest('user', [...touch(0x30000), ...touch(0x31fff), ...touch(0x45000), ...touch(0x1f0000), ...EXIT], '2 MiB', { dirtyLog: true });
    g.vm.dirtyPages(0); // start from a clean log
    expect(collect(g.vcpu).exit).toMatchObject({ kind: 'io', port: 0x501 });
    const dirty = g.vm.dirtyPages(0);
    for (const page of [0x30, 0x31, 0x45, 0x1f0]) expect(dirty).toContain(page);
    // Untouched data pages stay clean (page tables may be dirtied by the CPU's A/D updates).
    for (const page of [0x32, 0x44, 0x100, 0x1ef]) expect(dirty).not.toContain(page);
    expect(g.vm.dirtyPages(0)).toEqual([]);
  });

  it('dirtyPages needs a slot created with dirtyLog', () => {
    using g = makeGuest('user', EXIT);
    expect(() => g.vm.dirtyPages(0)).toThrow(/not created with dirtyLog/);
  });

  it('translate maps guest-virtual to guest-physical through the vCPU page tables', () => {
    using g = makeGuest('long', [0xf4]);
    const t = g.vcpu.translate(0x12345n);
    expect(t).toMatchObject({ valid: true, physicalAddress: 0x12345n });
    expect(g.vcpu.translate(0x3fff_fff0n)).toMatchObject({ valid: true, physicalAddress: 0x3fff_fff0n });
    expect(g.vcpu.translate(0x8000_0000n).valid).toBe(false); // beyond the 1 GiB identity map
  });

  it('host access is zero-copy and bounds-checked with the offending range named', () => {
    using g = makeGuest('user', EXIT);
    const view = g.vm.memory.view(0x5000, 4);
    g.vm.memory.writeU32(0x5000, 0xa1b2c3d4);
    expect([...view]).toEqual([0xd4, 0xc3, 0xb2, 0xa1]);
    g.vm.memory.writeU64(0x5008, 0x1122334455667788n);
    expect(g.vm.memory.readU64(0x5008)).toBe(0x1122334455667788n);
    expect(() => g.vm.memory.read(0x1f_fffe, 4)).toThrow(GuestMemoryError);
    expect(() => g.vm.memory.read(0x1f_fffe, 4)).toThrow(/0x1ffffe\+4: crosses the end of slot 0/);
    expect(() => g.vm.memory.readU8(0x900_0000)).toThrow(/0x9000000\+1: no memory slot backs this address/);
  });

  it('slots are listed, overlapping slots are rejected, and a removed slot becomes MMIO', () => {
    using vm = kvm().createVm();
    vm.addMemory({ guestAddress: 0, size: '1 MiB' });
    const hi = vm.addMemory({ guestAddress: 0x100_0000, size: '64 KiB', dirtyLog: true });
    expect(vm.memorySlots()).toEqual([
      { slot: 0, guestAddress: 0n, size: 1 << 20, readOnly: false, dirtyLog: false },
      { slot: 1, guestAddress: 0x100_0000n, size: 65536, readOnly: false, dirtyLog: true },
    ]);
    expect(() => vm.addMemory({ guestAddress: 0x100_8000, size: '64 KiB' })).toThrow(/overlaps slot 1/);
    expect(() => vm.addMemory({ guestAddress: 0x1001, size: 4096 })).toThrow(/not 4 KiB aligned/);
    expect(() => vm.addMemory({ guestAddress: 0x20_0000, size: 'lots' })).toThrow(/cannot parse "lots"/);
    vm.removeMemory(hi);
    expect(vm.memorySlots().map((s) => s.slot)).toEqual([0]);
    expect(() => vm.memory.readU8(0x100_0000)).toThrow(GuestMemoryError);
  });
});
