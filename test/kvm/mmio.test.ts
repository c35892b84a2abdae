import { describe, expect, it } from 'vitest';
import { imm32, makeGuest } from '../support/guest.js';

const EXIT = [0x66, 0xba, 0x01, 0x05, 0xee]; // mov $0x501,%dx; out %al,(%dx)

describe('MMIO exits', () => {
  it('writes and reads of unmapped guest-physical memory exit as mmio, reads take the host answer', () => {
    const code = [
      0xbb, ...imm32(0x80_0000), //           mov   $0x800000, %ebx   (no slot there)
      0xc7, 0x03, ...imm32(0xdeadbeef), //    movl  $0xdeadbeef, (%rbx)
      0x8b, 0x03, //                          mov   (%rbx), %eax
      0x66, 0xba, 0xf8, 0x03, //              mov   $0x3f8, %dx
      0xef, //                                out   %eax, (%dx)
      0x48, 0x89, 0x43, 0x08, //              mov   %rax, 8(%rbx)
      ...EXIT,
    ];
    using g = makeGuest('user', code);
    const w = g.vcpu.run();
    expect(w).toMatchObject({ kind: 'mmio', address: 0x80_0000n, direction: 'write', size: 4 });
    if (w.kind !== 'mmio') throw new Error('unreachable');
    expect([...w.data]).toEqual([0xef, 0xbe, 0xad, 0xde]);

    const r = g.vcpu.run();
    expect(r).toMatchObject({ kind: 'mmio', address: 0x80_0000n, direction: 'read', size: 4 });
    if (r.kind !== 'mmio') throw new Error('unreachable');
    r.data.set([0x78, 0x56, 0x34, 0x12]);

    const o = g.vcpu.run();
    expect(o).toMatchObject({ kind: 'io', port: 0x3f8, size: 4 });
    if (o.kind !== 'io') throw new Error('unreachable');
    expect([...o.data]).toEqual([0x78, 0x56, 0x34, 0x12]);

    const w8 = g.vcpu.run();
    expect(w8).toMatchObject({ kind: 'mmio', address: 0x80_0008n, direction: 'write', size: 8 });
    if (w8.kind !== 'mmio') throw new Error('unreachable');
    expect([...w8.data]).toEqual([0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0]);
    expect(g.vcpu.run()).toMatchObject({ kind: 'io', port: 0x501 });
  });

  it('a read-only slot is readable by the guest and its writes become mmio exits', () => {
    const code = [
      0xbb, ...imm32(0x40_0000), //           mov   $0x400000, %ebx   (read-only slot)
      0x8b, 0x03, //                          mov   (%rbx), %eax
      0x66, 0xba, 0xf8, 0x03, //              mov   $0x3f8, %dx
      0xef, //                                out   %eax, (%dx)
      0xc7, 0x03, ...imm32(0x11223344), //    movl  $0x11223344, (%rbx)
      ...EXIT,
    ];
    using g = makeGuest('user', code);
    const rom = g.vm.addMemory({ guestAddress: 0x40_0000, size: '64 KiB', readOnly: true });
    rom.bytes.set([0xca, 0xfe, 0xf0, 0x0d]);
    const o = g.vcpu.run();
    expect(o).toMatchObject({ kind: 'io', port: 0x3f8, size: 4 });
    if (o.kind !== 'io') throw new Error('unreachable');
    expect([...o.data]).toEqual([0xca, 0xfe, 0xf0, 0x0d]);
    const w = g.vcpu.run();
    expect(w).toMatchObject({ kind: 'mmio', address: 0x40_0000n, direction: 'write', size: 4 });
    if (w.kind !== 'mmio') throw new Error('unreachable');
    expect([...w.data]).toEqual([0x44, 0x33, 0x22, 0x11]);
    expect(g.vcpu.run()).toMatchObject({ kind: 'io', port: 0x501 });
    expect([...rom.bytes.subarray(0, 4)]).toEqual([0xca, 0xfe, 0xf0, 0x0d]);
    expect(g.vm.memorySlots().find((s) => s.slot === rom.slot)).toMatchObject({ readOnly: true, size: 65536 });
  });
});
