/**
 * A vCPU's complete architectural state as KVM exposes it, captured and restored in the order
 * KVM expects (CPUID before the registers that depend on it, MP state and events last).
 */
import type {
  KvmCpuidEntry, KvmDebugregs, KvmFpu, KvmLapicState, KvmMsrEntry, KvmRegs, KvmSregs, KvmVcpuEvents, KvmXcrs,
} from './ffi/index.js';
import type { Kvm } from './kvm.js';
import type { MpState, Vcpu } from './vcpu.js';

/** A vCPU's whole state, as snapshots and `inspect()` save it. */
export interface VcpuSnapshot {
  /** The vCPU index. */
  id: number;
  /** Its CPUID leaves (KVM_GET_CPUID2). */
  cpuid: KvmCpuidEntry[];
  /** General-purpose registers, rip, rflags. */
  regs: KvmRegs;
  /** Segments, descriptor tables, control registers. */
  sregs: KvmSregs;
  /** x87 and SSE state. */
  fpu: KvmFpu;
  /** XCR0, where the host has KVM_CAP_XCRS. */
  xcrs: KvmXcrs | null;
  /** The MSRs this host lets a vCPU save and restore. */
  msrs: KvmMsrEntry[];
  /** Present when the VM has an in-kernel irqchip. */
  lapic: KvmLapicState | null;
  /** Its multiprocessing state. */
  mpState: MpState;
  /** Pending exceptions, interrupts and NMIs. */
  events: KvmVcpuEvents;
  /** DR0–DR3, DR6, DR7. */
  debugRegs: KvmDebugregs;
}

const readableMsrs = new WeakMap<Kvm, number[]>();

/**
 * The MSRs of KVM's save/restore list that this host lets a vCPU read and write back (probed
 * once per Kvm by writing each MSR's own value; some, e.g. KVM's async-PF MSRs without their
 * CPUID bit, read but refuse writes).
 */
function msrsToSave(kvm: Kvm, vcpu: Vcpu): number[] {
  let list = readableMsrs.get(kvm);
  if (!list) {
    list = kvm.msrIndexList().filter((index) => {
      const [entry] = vcpu.getMsrs([index]);
      if (!entry) return false;
      try {
        vcpu.setMsrs([{ index, data: entry.data }]);
        return true;
      } catch {
        return false;
      }
    });
    readableMsrs.set(kvm, list);
  }
  return list;
}

/**
 * Finishes an exit the vCPU has not completed yet (the data of an IN or MMIO read is taken by
 * KVM on the next KVM_RUN): runs KVM_RUN with immediate_exit set, which completes it and
 * returns at once. Call before reading state outside the run loop. Throws if completing it
 * makes another exit (a `rep ins`/`rep outs` continuing): a Machine's run loop must serve that
 * first. Sandboxes, whose failed calls leave exits nobody will serve, use
 * sandbox/reset.ts `settlePendingExit`, which ends such an instruction instead.
 */
export function completePendingExit(vcpu: Vcpu): void {
  vcpu.immediateExit = true;
  try {
    const exit = vcpu.run();
    if (exit.kind !== 'intr') throw new Error(`vCPU ${vcpu.id}: completing a pending exit returned ${exit.kind}`);
  } finally {
    vcpu.immediateExit = false;
  }
}

export function captureVcpuState(kvm: Kvm, vcpu: Vcpu, irqchip: boolean): VcpuSnapshot {
  completePendingExit(vcpu);
  let xcrs: KvmXcrs | null = null;
  if (kvm.checkExtension('KVM_CAP_XCRS')) xcrs = vcpu.getXcrs();
  return {
    id: vcpu.id,
    cpuid: vcpu.getCpuid(),
    regs: vcpu.getRegs(),
    sregs: vcpu.getSregs(),
    fpu: vcpu.getFpu(),
    xcrs,
    msrs: vcpu.getMsrs(msrsToSave(kvm, vcpu)),
    lapic: irqchip ? vcpu.getLapic() : null,
    mpState: vcpu.getMpState(),
    events: vcpu.getVcpuEvents(),
    debugRegs: vcpu.getDebugRegs(),
  };
}

export function restoreVcpuState(vcpu: Vcpu, s: VcpuSnapshot): void {
  vcpu.setCpuid(s.cpuid);
  vcpu.setSregs(s.sregs);
  vcpu.setRegs(s.regs);
  vcpu.setFpu(s.fpu);
  if (s.xcrs) vcpu.setXcrs(s.xcrs);
  if (s.msrs.length > 0) vcpu.setMsrs(s.msrs);
  if (s.lapic) vcpu.setLapic(s.lapic);
  vcpu.setMpState(s.mpState);
  vcpu.setVcpuEvents(s.events);
  vcpu.setDebugRegs(s.debugRegs);
}
