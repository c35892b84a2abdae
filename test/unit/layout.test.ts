import { describe, expect, it } from 'vitest';
import { abi, formatBytes, parseSize } from '@kvmpool/core/internal';

describe('struct codec', () => {
  it('round-trips nested structs, arrays and u64 as bigint', () => {
    const s = {
      ...abi.decode(abi.KVM_SREGS, new Uint8Array(abi.KVM_SREGS.size)),
      cr3: 0xffff_ffff_ffff_f000n,
    };
    s.cs.selector = 0x1b;
    s.cs.l = 1;
    s.gdt.limit = 0x37;
    s.interrupt_bitmap[3] = 1n << 63n;
    const bytes = abi.encode(abi.KVM_SREGS, s);
    expect(bytes.length).toBe(312);
    const view = new DataView(bytes.buffer);
    expect(view.getUint16(abi.KVM_SREGS.offsets.cs + abi.KVM_SEGMENT.offsets.selector, true)).toBe(0x1b);
    expect(view.getBigUint64(abi.KVM_SREGS.offsets.cr3, true)).toBe(0xffff_ffff_ffff_f000n);
    expect(abi.decode(abi.KVM_SREGS, bytes)).toEqual(s);
  });

  it('arrays of structs', () => {
    const pit = abi.decode(abi.KVM_PIT_STATE2, new Uint8Array(112));
    expect(pit.channels).toHaveLength(3);
    pit.channels[2]!.count_load_time = -5n;
    expect(abi.decode(abi.KVM_PIT_STATE2, abi.encode(abi.KVM_PIT_STATE2, pit)).channels[2]!.count_load_time).toBe(-5n);
  });
});

describe('sizes', () => {
  it('parses units and rejects nonsense with the value named', () => {
    expect(parseSize('64 MiB')).toBe(64 << 20);
    expect(parseSize('2MiB')).toBe(2 << 20);
    expect(parseSize('4 KiB')).toBe(4096);
    expect(parseSize(8192)).toBe(8192);
    expect(parseSize('1 GiB')).toBe(1 << 30);
    expect(() => parseSize('12 parsecs')).toThrow('size: cannot parse "12 parsecs"');
    expect(() => parseSize(-1)).toThrow(/-1 is not a whole, non-negative byte count/);
    expect(formatBytes(64 << 20)).toBe('64 MiB');
  });
});
