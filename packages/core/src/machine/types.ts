/** The types of the machine API: options, exits, events. */
import type { Device } from '@kvmpool/devices';
import type { CpuMode } from '../cpu/modes.js';
import type { GuestCrashError } from '../errors.js';
import type { KvmRegs } from '../ffi/index.js';
import type { Size } from '../util/size.js';
import type { StandardDeviceOptions } from './standard-devices.js';

/** A device and where it sits. */
export interface DeviceSpec {
  device: Device;
  pio?: { base: number; length: number };
  mmio?: { base: bigint; length: number };
  /** irqchip input the device drives (needs `irqchip: true`). */
  irq?: number;
  /** An OUT to this device's ports stops the vCPU that made it (e.g. a debug-exit port). */
  stopsVcpu?: boolean;
}

export interface MachineOptions extends StandardDeviceOptions {
  memory: Size;
  vcpus?: number;
  devices?: DeviceSpec[];
  /** Create the in-kernel irqchip (device interrupts via KVM_IRQ_LINE). */
  irqchip?: boolean;
  /** CPU mode every vCPU starts in. Default `user` (CPL 3: native speed on every host). */
  mode?: CpuMode;
  /** Let KVM batch writes to devices' coalescable registers. Default true. */
  coalesce?: boolean;
  /**
   * How long a posted write (an OUT or MMIO write the vCPU does not wait for) may wait before
   * the main-thread dispatcher hands it to its device, in ms. Default 1. Posted writes do not
   * wake the main thread each; it takes them at least this often while the guest posts them,
   * and always before it answers a later read, pause, snapshot or stop of the VM. 0: every
   * posted write wakes it at once.
   */
  postedWriteBoundMs?: number;
  /**
   * Longest the main-thread dispatcher spins for the next exit before it sleeps, in µs (0–100,
   * default 100; 0: never). It spins only while a core is free for it (no other thread of the
   * host runnable but one) and the guest's recent exits came that quickly (devices'
   * spin-policy.ts); it then answers reads without a wake-up, at the price of holding the
   * event loop for up to this long per wait (it still yields to it every 4 ms of work).
   */
  dispatcherSpinUs?: number;
  kvmPath?: string;
}

export interface StartOptions {
  entry: bigint;
  /** Stack pointer for each vCPU. */
  stack?: bigint | ((vcpu: number) => bigint);
  /** Extra registers for each vCPU (e.g. its index in rdi). */
  regs?: (vcpu: number) => Partial<KvmRegs>;
}

export type MachineExit =
  /** Every vCPU stopped by itself (HLT, or an OUT to a port that stops its vCPU). */
  | { reason: 'halted' }
  /** `stop()` or `close()` was called. */
  | { reason: 'stopped' }
  | { reason: 'debug-exit'; code: number }
  /** The guest asked for a reset (i8042 command 0xFE); kvmpool stops the VM. */
  | { reason: 'reset' }
  | { reason: 'crashed'; error: GuestCrashError }
  | { reason: 'error'; error: Error };

/** A vCPU stopped at a KVM_EXIT_DEBUG (step, breakpoint, watchpoint); it stays paused. */
export interface DebugStop {
  vcpu: number;
  pc: bigint;
  dr6: bigint;
  exception: number;
}

export interface MachineEvents {
  exit: [MachineExit];
  error: [Error];
  debug: [DebugStop];
  /** The guest asked for a reset (i8042 command 0xFE); the machine then stops. */
  reset: [];
}

