import { describe, expect, it } from 'vitest';
import { collect, imm32, kvm, makeGuest } from '../support/guest.js';

const EXIT = [0x66, 0xba, 0x01, 0x05, 0xee]; // mov $0x501,%dx; out %al,(%dx)

describe('port I/O exits', () => {
  it('rep outsb delivers the string with count × size bytes per exit', () => {
    const code = [
      0xbe, ...imm32(0x18000), //  mov  $0x18000, %esi
      0xb9, ...imm32(13), //       mov  $13, %ecx
      0x66, 0xba, 0xf8, 0x03, //   mov  $0x3f8, %dx
      0xf3, 0x6e, //               rep outsb
      ...EXIT,
    ];
    using g = makeGuest('user', code);
    g.vm.memory.write(0x18000, Buffer.from('Hello, world!'));
    const counts: number[] = [];
    const bytes: number[] = [];
    for (;;) {
      const e = g.vcpu.run();
      if (e.kind !== 'io') throw new Error(`unexpected exit ${e.kind}`);
      if (e.port === 0x501) break;
      expect(e).toMatchObject({ direction: 'out', port: 0x3f8, size: 1 });
      expect(e.data.length).toBe(e.count * e.size);
      counts.push(e.count);
      bytes.push(...e.data);
    }
    expect(Buffer.from(bytes).toString()).toBe('Hello, world!');
    // KVM's emulator batches a rep outs into one exit (count 13); kvm_pvm exits once per byte.
    expect(counts).toEqual(kvm().module === 'kvm_pvm' ? new Array(13).fill(1) : [13]);
  });

  it('rep outsw carries 2-byte items', () => {
    const code = [
      0xbe, ...imm32(0x18000), //  mov  $0x18000, %esi
      0xb9, ...imm32(3), //        mov  $3, %ecx
      0x66, 0xba, 0xf8, 0x03, //   mov  $0x3f8, %dx
      0x66, 0xf3, 0x6f, //         rep outsw
      ...EXIT,
    ];
    using g = makeGuest('user', code);
    g.vm.memory.write(0x18000, [1, 2, 3, 4, 5, 6]);
    const { out, exit } = collect(g.vcpu);
    expect(out).toEqual([1, 2, 3, 4, 5, 6]);
    expect(exit).toMatchObject({ kind: 'io', port: 0x501 });
  });

  it('IN of 1, 2 and 4 bytes returns what the host wrote into the exit data', () => {
    const code = [
      0x66, 0xba, 0x00, 0x02, //   mov  $0x200, %dx
      0xec, //                     in   (%dx), %al
      0xee, //                     out  %al, (%dx)
      0x66, 0xed, //               in   (%dx), %ax
      0x66, 0xef, //               out  %ax, (%dx)
      0xed, //                     in   (%dx), %eax
      0xef, //                     out  %eax, (%dx)
      ...EXIT,
    ];
    using g = makeGuest('user', code);
    const answers: Record<number, number[]> = { 1: [0x41], 2: [0x34, 0x12], 4: [0xef, 0xbe, 0xad, 0xde] };
    const outs: number[][] = [];
    for (;;) {
      const e = g.vcpu.run();
      if (e.kind !== 'io') throw new Error(`unexpected exit ${e.kind}`);
      if (e.port === 0x501) break;
      expect(e.port).toBe(0x200);
      if (e.direction === 'in') e.data.set(answers[e.size]!);
      else outs.push([...e.data]);
    }
    expect(outs).toEqual([answers[1], answers[2], answers[4]]);
  });
});
