/**
 * What guest debugging this host really does, measured rather than assumed: tiny throwaway
 * VMs, run in the calling thread, try single-step, hardware breakpoints, software breakpoints
 * (int3) and watchpoints at CPL 0 (64-bit kernel mode) and CPL 3 (user mode). A feature that
 * fails here (on kvm_pvm a CPL 3 single step shuts the guest down) is refused up front with a
 * clear error instead of being tried on a real guest.
 */
import { DebugUnsupportedError } from '../errors.js';
import type { Kvm } from '../kvm.js';
import { guestCpuid } from '../cpu/cpuid.js';
import { setEntryPoint, setupCpuMode } from '../cpu/modes.js';
import { KICK_SIGNAL, type GuestDebugConfig } from '../machine/vcpu-lifecycle.js';
import { ThreadTimer, blockSignal, consumePending, runMaskWithout } from '../signals.js';
import type { VcpuExit } from '../exits.js';
import { guestDebugRegisters } from './guest-debug.js';

/** Which debugging features work at one privilege level, as measured. */
export interface DebugSupportLevel {
  /** Single-stepping (RFLAGS.TF / KVM_GUESTDBG_SINGLESTEP). */
  singleStep: boolean;
  /** Instruction breakpoints in DR0–DR3. */
  hardwareBreakpoints: boolean;
  /** int3 intercepted as a debug exit. */
  softwareBreakpoints: boolean;
  /** Data watchpoints in DR0–DR3. */
  watchpoints: boolean;
}

/** What `debugSupport()` measured on this host, per CPL. */
export interface DebugSupport {
  /** In CPL 0 guest code (emulated on kvm_pvm). */
  cpl0: DebugSupportLevel;
  /** In CPL 3 guest code (the default `user` mode). */
  cpl3: DebugSupportLevel;
}

const CODE = 0x10000n;
const DATA = 0x18000n;
// inc %rax; inc %rax; inc %rax; jmp 1b   (offsets 0, 3, 6, 9)
const LOOP = [0x48, 0xff, 0xc0, 0x48, 0xff, 0xc0, 0x48, 0xff, 0xc0, 0xeb, 0xf5];
// inc %rax; int3; jmp .
const INT3 = [0x48, 0xff, 0xc0, 0xcc, 0xeb, 0xfe];
// movb $1, DATA; jmp .
const STORE = [0xc6, 0x04, 0x25, ...[0x00, 0x80, 0x01, 0x00], 0x01, 0xeb, 0xfe];

let cached: DebugSupport | undefined;

function attempt(kvm: Kvm, timer: ThreadTimer, mode: 'long' | 'user', code: number[], config: GuestDebugConfig): VcpuExit {
  using vm = kvm.createVm();
  vm.addMemory({ guestAddress: 0, size: '2 MiB' });
  vm.memory.write(CODE, code);
  const vcpu = vm.createVcpu(0);
  vcpu.setCpuid(guestCpuid(kvm));
  setupCpuMode(vcpu, vm.memory, mode);
  setEntryPoint(vcpu, mode, CODE, 0x20000n);
  vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
  vcpu.setGuestDebug(guestDebugRegisters(config));
  timer.arm(30);
  try {
    return vcpu.run();
  } finally {
    timer.disarm();
    consumePending(KICK_SIGNAL);
  }
}

function level(kvm: Kvm, timer: ThreadTimer, mode: 'long' | 'user'): DebugSupportLevel {
  const step = attempt(kvm, timer, mode, LOOP, { singleStep: true });
  const bp = attempt(kvm, timer, mode, LOOP, { breakpoints: [CODE + 6n] });
  const sw = attempt(kvm, timer, mode, INT3, { softwareBreakpoints: true });
  const watch = attempt(kvm, timer, mode, STORE, { watchpoints: [{ address: DATA, length: 1, kind: 'write' }] });
  return {
    singleStep: step.kind === 'debug' && step.pc === CODE + 3n,
    hardwareBreakpoints: bp.kind === 'debug' && bp.pc === CODE + 6n,
    softwareBreakpoints: sw.kind === 'debug' && sw.exception === 3,
    watchpoints: watch.kind === 'debug',
  };
}

/** Probes once per process (a few throwaway VMs, tens of milliseconds), then answers from cache. */
export function debugSupport(kvm: Kvm): DebugSupport {
  if (cached) return cached;
  blockSignal(KICK_SIGNAL);
  const timer = new ThreadTimer(KICK_SIGNAL);
  try {
    cached = { cpl0: level(kvm, timer, 'long'), cpl3: level(kvm, timer, 'user') };
  } finally {
    timer.close();
  }
  return cached;
}

export { DebugUnsupportedError };
