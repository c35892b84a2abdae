/**
 * The pristine vCPU state of a sandbox VM, captured once after `kvmpool_init`, and the reset
 * that puts it back after every call.
 *
 * What reset restores, in this order, and why the set is complete for a CPL 3 guest with no
 * guest kernel:
 *  1. Any exit the call left pending is completed first (KVM_RUN with immediate_exit), so the
 *     half-done IN/MMIO/string instruction of a failed call cannot finish on top of the next
 *     call's registers. Completion may write guest memory, so it comes before the dirty log.
 *  2. Memory (sandbox-vm.ts): the pages the guest dirtied and the pages the host wrote.
 *  3. sregs (KVM_SET_SREGS): segment selectors/bases a CPL 3 guest can load (ds, es, fs, gs, ss),
 *     descriptor-table registers, CR0/CR3/CR4/EFER and CR2. CR3 is written back; the tables it
 *     points at cannot have changed (read-only to CPL 3, cpu/modes.ts `protectSystemArea`, so
 *     they are never dirty), so the translation the next call runs with is the pristine one.
 *  4. FPU/SSE/AVX: the XSAVE area (x87 stack, control/status/tag words, MXCSR, xmm/ymm and every
 *     component XCR0 enables). Where KVM has no XSAVE, KVM_SET_FPU; that struct carries MXCSR,
 *     but hosts that do not fill it (kvm_pvm) then leave MXCSR to pass between calls — the one
 *     documented limit of the fallback.
 *  5. Debug registers (KVM_SET_DEBUGREGS; not after a clean return, see `restore`) and vCPU
 *     events (KVM_SET_VCPU_EVENTS: pending or injected exceptions, interrupt shadow after
 *     `mov ss`/`sti`, NMI state).
 *  6. (Not after a clean return, see `restore`.) The MSRs a CPL 3 guest can observe: TSC_AUX
 *     (rdtscp/rdpid), FS_BASE, GS_BASE and KERNEL_GS_BASE. CR4.FSGSBASE is clear in sandbox mode, so wrfsbase/wrgsbase #UD and CPL 3
 *     cannot write any of them (nor any MSR: wrmsr is CPL 0); restoring them makes that a
 *     property of the reset rather than of the CPU mode.
 *  7. The general registers and RFLAGS are written whole at the start of every call.
 * Not restored: the TSC (it counts time; the guest cannot set it at CPL 3), XCR0 (xsetbv is
 * CPL 0), MP state (hlt is #GP at CPL 3), the LAPIC (none), CPUID (never changes).
 */
import { GuestCrashError } from '../errors.js';
import { describeExit } from '../exits.js';
import { KVM_SYNC_X86, KVM_VCPU_EVENTS, KVM_XSAVE } from '../ffi/index.js';
import type { Vcpu } from '../vcpu.js';
import type { Vm } from '../vm.js';

/** MSRs a CPL 3 guest can read directly or through an instruction (see 6. above). */
export const OBSERVABLE_MSRS = { FS_BASE: 0xc000_0100, GS_BASE: 0xc000_0101, KERNEL_GS_BASE: 0xc000_0102, TSC_AUX: 0xc000_0103 } as const;

/** How many KVM_RUNs completing a pending exit may take before the vCPU is given up on. */
const SETTLE_ROUNDS = 8;
/** kvm_vcpu_events.flags: also set the NMI pending state and the interrupt shadow. */
const EVENTS_VALID_NMI_PENDING = 0x1;
const EVENTS_VALID_SHADOW = 0x4;
const EVENTS_FLAGS = KVM_VCPU_EVENTS.offsets.flags;

/**
 * Completes whatever exit the vCPU left pending (an IN or MMIO read KVM finishes on the next
 * KVM_RUN, a fast-path OUT it skips, a string I/O instruction it continues) without running the
 * guest: KVM_RUN with immediate_exit set runs the completion, then returns EINTR. A `rep ins`
 * or `rep outs` makes another exit for the next batch of elements; setting RCX to 0 ends the
 * instruction (KVM's emulator re-reads the registers after KVM_SET_REGS). Throws when the vCPU
 * still does not settle; the VM must then be replaced.
 */
export function settlePendingExit(vcpu: Vcpu): void {
  vcpu.immediateExit = true;
  try {
    for (let round = 1; ; round++) {
      const exit = vcpu.run();
      if (exit.kind === 'intr') return;
      if (round >= SETTLE_ROUNDS) throw new GuestCrashError(vcpu.id, `a pending exit did not complete (${describeExit(exit)})`, 0n);
      vcpu.patchRegs({ rcx: 0n }); // ends a rep prefix; nothing else of the failed call matters now
    }
  } finally {
    vcpu.immediateExit = false;
  }
}

/** The KVM_CAP_SYNC_REGS parts the resets use: registers, sregs and events. */
export const SYNC_ALL = KVM_SYNC_X86.REGS | KVM_SYNC_X86.SREGS | KVM_SYNC_X86.EVENTS;

/** Whether KVM takes and gives all of `SYNC_ALL` through kvm_run on this host. */
export function hasSyncRegs(vm: Vm): boolean {
  return (vm.checkExtension('KVM_CAP_SYNC_REGS') & SYNC_ALL) === SYNC_ALL;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Events equal but for `flags` (which says which fields a KVM_SET_VCPU_EVENTS takes, not state). */
function sameEvents(got: Uint8Array, pristine: Uint8Array): boolean {
  for (let i = 0; i < got.length; i++) if (got[i] !== pristine[i] && (i < EVENTS_FLAGS || i >= EVENTS_FLAGS + 4)) return false;
  return true;
}

export class PristineCpu {
  readonly #sregs: Uint8Array;
  readonly #xsave: Uint8Array | null;
  readonly #fpu: Uint8Array;
  readonly #debugRegs: Uint8Array;
  readonly #events: Uint8Array;
  readonly #msrs: { index: number; data: bigint }[];

  /** Captures the vCPU's state now (after its pending exit is settled). */
  constructor(vm: Vm, vcpu: Vcpu) {
    settlePendingExit(vcpu);
    this.#sregs = vcpu.getSregsBytes();
    this.#fpu = vcpu.getFpuBytes();
    this.#xsave = null;
    if (vm.checkExtension('KVM_CAP_XSAVE')) {
      const size = vm.checkExtension('KVM_CAP_XSAVE2');
      this.#xsave = vcpu.getXsaveBytes(size > KVM_XSAVE.size ? size : KVM_XSAVE.size);
    }
    this.#debugRegs = vcpu.getDebugRegsBytes();
    this.#events = vcpu.getVcpuEventsBytes();
    const ev = new DataView(this.#events.buffer);
    ev.setUint32(EVENTS_FLAGS, ev.getUint32(EVENTS_FLAGS, true) | EVENTS_VALID_NMI_PENDING | EVENTS_VALID_SHADOW, true);
    // Only the MSRs this host lets us read and write back.
    this.#msrs = vcpu.getMsrs(Object.values(OBSERVABLE_MSRS)).filter((m) => {
      try {
        vcpu.setMsrs([m]);
        return true;
      } catch {
        return false;
      }
    }).map((m) => ({ index: m.index, data: m.data }));
  }

  /** Whether the FPU state is restored through XSAVE (else KVM_SET_FPU, see 4. above). */
  get xsave(): boolean {
    return this.#xsave !== null;
  }

  /** Settles any pending exit. Call before the memory reset (completion may write memory). */
  settle(vcpu: Vcpu): void {
    settlePendingExit(vcpu);
  }

  /**
   * Writes the captured state back (steps 3–6 above). `sync`: sregs and events go in through
   * kvm_run (KVM_CAP_SYNC_REGS), taken at the next KVM_RUN before anything runs — the same
   * kernel functions as the ioctls, one ioctl fewer each. `short` (the call ended by a clean
   * return, nothing left pending): the debug registers and MSRs are not written, because only
   * CPL 0 can change them (mov to DRn, wrmsr; CR4.FSGSBASE is clear, and FS/GS_BASE come back
   * with sregs anyway), DR6 changes only on a #DB, which would have ended the call at the
   * fault handler or in a triple fault, not at the return port.
   */
  restore(vcpu: Vcpu, how: { short?: boolean; sync?: boolean; compare?: boolean } = {}): void {
    if (how.sync) {
      // `compare`: KVM copied sregs and events out at the last exit (syncValid has them); after
      // a clean return, what the call left equal to the pristine state needs no writing back.
      const keep = how.short === true && how.compare === true;
      if (!keep || !sameBytes(vcpu.synced('sregs'), this.#sregs)) vcpu.queueSync('sregs', this.#sregs);
      if (!keep || !sameEvents(vcpu.synced('events'), this.#events)) vcpu.queueSync('events', this.#events);
    } else {
      vcpu.setSregsBytes(this.#sregs);
      vcpu.setVcpuEventsBytes(this.#events);
    }
    if (this.#xsave) vcpu.setXsaveBytes(this.#xsave);
    else vcpu.setFpuBytes(this.#fpu);
    if (how.short) return;
    vcpu.setDebugRegsBytes(this.#debugRegs);
    if (this.#msrs.length > 0) vcpu.setMsrs(this.#msrs);
  }
}
