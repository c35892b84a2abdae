/** Variable-length KVM structs: a small header followed by `n` entries. */
import {
  KVM_CPUID2, KVM_CPUID_ENTRY2, KVM_MSR_ENTRY, KVM_MSR_LIST, KVM_MSRS, type KvmCpuidEntry, type KvmMsrEntry,
} from './kvm-abi.js';
import { readAt, writeAt } from './layout.js';
import { ioctlPtr } from './kvm-call.js';
import type { IoctlName } from './ioctls.js';
import { KvmError } from '../errors.js';

const E2BIG = 7;

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeCpuid(entries: readonly Partial<KvmCpuidEntry>[]): Uint8Array {
  const bytes = new Uint8Array(KVM_CPUID2.size + entries.length * KVM_CPUID_ENTRY2.size);
  const view = dv(bytes);
  view.setUint32(KVM_CPUID2.offsets.nent, entries.length, true);
  entries.forEach((e, i) => writeAt(view, KVM_CPUID2.size + i * KVM_CPUID_ENTRY2.size, KVM_CPUID_ENTRY2, e));
  return bytes;
}

export function decodeCpuid(bytes: Uint8Array): KvmCpuidEntry[] {
  const view = dv(bytes);
  const n = view.getUint32(KVM_CPUID2.offsets.nent, true);
  return Array.from({ length: n }, (_, i) => readAt(view, KVM_CPUID2.size + i * KVM_CPUID_ENTRY2.size, KVM_CPUID_ENTRY2));
}

/** Reads a kvm_cpuid2 list, growing the buffer while the kernel answers E2BIG. */
export function readCpuidList(fd: number, name: IoctlName, start = 128): KvmCpuidEntry[] {
  for (let n = start; n <= 1 << 16; n *= 2) {
    const bytes = encodeCpuid(new Array<Partial<KvmCpuidEntry>>(n).fill({}));
    try {
      ioctlPtr(fd, name, bytes);
      return decodeCpuid(bytes);
    } catch (e) {
      if (!(e instanceof KvmError) || e.errno !== E2BIG) throw e;
    }
  }
  throw new RangeError(`${name}: more than 65536 CPUID entries`);
}

/** Reads a kvm_msr_list (KVM_GET_MSR_INDEX_LIST / KVM_GET_MSR_FEATURE_INDEX_LIST). */
export function readMsrIndexList(fd: number, name: IoctlName): number[] {
  let n = 256;
  for (let attempt = 0; attempt < 8; attempt++) {
    const bytes = new Uint8Array(KVM_MSR_LIST.size + 4 * n);
    const view = dv(bytes);
    view.setUint32(0, n, true);
    try {
      ioctlPtr(fd, name, bytes);
    } catch (e) {
      if (!(e instanceof KvmError) || e.errno !== E2BIG) throw e;
      n = Math.max(view.getUint32(0, true), n * 2);
      continue;
    }
    const count = view.getUint32(0, true);
    return Array.from({ length: count }, (_, i) => view.getUint32(KVM_MSR_LIST.size + 4 * i, true));
  }
  throw new RangeError(`${name}: the MSR list kept growing`);
}

export function encodeMsrs(entries: readonly Pick<KvmMsrEntry, 'index' | 'data'>[]): Uint8Array {
  const bytes = new Uint8Array(KVM_MSRS.size + entries.length * KVM_MSR_ENTRY.size);
  const view = dv(bytes);
  view.setUint32(KVM_MSRS.offsets.nmsrs, entries.length, true);
  entries.forEach((e, i) => writeAt(view, KVM_MSRS.size + i * KVM_MSR_ENTRY.size, KVM_MSR_ENTRY, { index: e.index, reserved: 0, data: e.data }));
  return bytes;
}

/** The first `count` entries of a kvm_msrs buffer. */
export function decodeMsrs(bytes: Uint8Array, count: number): KvmMsrEntry[] {
  const view = dv(bytes);
  return Array.from({ length: count }, (_, i) => readAt(view, KVM_MSRS.size + i * KVM_MSR_ENTRY.size, KVM_MSR_ENTRY));
}
