/** Guest CPUID: the host-supported set, plus KVM's hypervisor signature leaf. */
import type { Kvm } from '../kvm.js';
import type { KvmCpuidEntry } from '../ffi/index.js';

export const KVM_CPUID_SIGNATURE = 0x4000_0000;
export const KVM_SIGNATURE = 'KVMKVMKVM\0\0\0';

function u32le(s: string): number {
  return (s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24)) >>> 0;
}

/** Decodes the 12-byte vendor/signature string held in ebx, ecx, edx (in that order). */
export function cpuidSignature(e: Pick<KvmCpuidEntry, 'ebx' | 'ecx' | 'edx'>): string {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint32(0, e.ebx, true);
  v.setUint32(4, e.ecx, true);
  v.setUint32(8, e.edx, true);
  return String.fromCharCode(...b);
}

export function cpuidEntry(fields: Partial<KvmCpuidEntry> & { function: number }): KvmCpuidEntry {
  return { index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, padding: new Uint32Array(3), ...fields };
}

/**
 * The CPUID table to give a vCPU: what KVM supports on this host, with the KVM signature
 * leaf (0x40000000: "KVMKVMKVM\0\0\0") present even where the host table lacks it.
 * `apicId` is placed in leaf 1 EBX[31:24] so each vCPU sees its own id.
 */
export function guestCpuid(kvm: Kvm, apicId = 0): KvmCpuidEntry[] {
  const entries = kvm.supportedCpuid();
  if (!entries.some((e) => e.function === KVM_CPUID_SIGNATURE)) {
    entries.push(cpuidEntry({
      function: KVM_CPUID_SIGNATURE,
      eax: KVM_CPUID_SIGNATURE + 1,
      ebx: u32le(KVM_SIGNATURE.slice(0, 4)),
      ecx: u32le(KVM_SIGNATURE.slice(4, 8)),
      edx: u32le(KVM_SIGNATURE.slice(8, 12)),
    }));
  }
  for (const e of entries) {
    if (e.function === 1) e.ebx = ((e.ebx & 0x00ff_ffff) | (apicId << 24)) >>> 0;
  }
  return entries;
}
