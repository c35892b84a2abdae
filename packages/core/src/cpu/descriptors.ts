/** x86 segment descriptors and control-register bits used to set up guest CPU modes. */
import type { KvmSegment } from '../ffi/index.js';

export const CR0 = { PE: 1n << 0n, MP: 1n << 1n, ET: 1n << 4n, NE: 1n << 5n, WP: 1n << 16n, AM: 1n << 18n, PG: 1n << 31n } as const;
export const CR4 = { PSE: 1n << 4n, PAE: 1n << 5n, OSFXSR: 1n << 9n, OSXMMEXCPT: 1n << 10n } as const;
export const EFER = { SCE: 1n << 0n, LME: 1n << 8n, LMA: 1n << 10n, NXE: 1n << 11n } as const;
export const RFLAGS = { FIXED: 0x2n, IF: 0x200n, IOPL3: 0x3000n } as const;

/** Page-table entry bits. A (accessed) and D (dirty) are preset by kvmpool's tables, so the CPU
 * never writes a table during a guest's run: no write faults, and no table pages in the dirty log. */
export const PTE = { P: 1n, RW: 2n, US: 4n, A: 0x20n, D: 0x40n, PS: 0x80n } as const;

/** GDT selectors laid out by `setupCpuMode`. */
export const SELECTOR = { KERNEL_CODE: 0x08, KERNEL_DATA: 0x10, USER_CODE: 0x1b, USER_DATA: 0x23, TSS: 0x28 } as const;

/** Segment type nibbles. */
export const SEG_TYPE = { CODE_XRA: 11, DATA_RWA: 3, TSS_BUSY: 11 } as const;

export function segment(fields: Partial<KvmSegment>): KvmSegment {
  return {
    base: 0n, limit: 0, selector: 0, type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0, padding: 0,
    ...fields,
  };
}

/** Flat 4 GiB code/data segment at `dpl`, in 16/32/64-bit flavour. */
export function flatSegment(kind: 'code' | 'data', dpl: 0 | 3, bits: 32 | 64, selector: number): KvmSegment {
  return segment({
    base: 0n,
    limit: 0xffff_ffff,
    selector,
    type: kind === 'code' ? SEG_TYPE.CODE_XRA : SEG_TYPE.DATA_RWA,
    present: 1,
    dpl,
    db: bits === 64 && kind === 'code' ? 0 : 1,
    s: 1,
    l: bits === 64 && kind === 'code' ? 1 : 0,
    g: 1,
  });
}

/** The 8-byte GDT descriptor for a code/data segment (limit in pages when `g`). */
export function encodeDescriptor(seg: KvmSegment): bigint {
  const limit = BigInt(seg.g ? seg.limit >>> 12 : seg.limit);
  const base = seg.base;
  let d = limit & 0xffffn;
  d |= (base & 0xffffffn) << 16n;
  d |= BigInt(seg.type & 0xf) << 40n;
  d |= BigInt(seg.s & 1) << 44n;
  d |= BigInt(seg.dpl & 3) << 45n;
  d |= BigInt(seg.present & 1) << 47n;
  d |= ((limit >> 16n) & 0xfn) << 48n;
  d |= BigInt(seg.avl & 1) << 52n;
  d |= BigInt(seg.l & 1) << 53n;
  d |= BigInt(seg.db & 1) << 54n;
  d |= BigInt(seg.g & 1) << 55n;
  d |= ((base >> 24n) & 0xffn) << 56n;
  return d;
}

/** The 16-byte 64-bit system descriptor (TSS) as two 8-byte words. */
export function encodeSystemDescriptor(seg: KvmSegment): [bigint, bigint] {
  return [encodeDescriptor(seg), (seg.base >> 32n) & 0xffff_ffffn];
}
