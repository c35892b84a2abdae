/** The types of the machine API: options, exits, events. */
import type { Device } from '@kvmpool/devices';
import type { CpuMode } from '../cpu/modes.js';
import type { GuestCrashError } from '../errors.js';
import type { KvmRegs } from '../ffi/index.js';
import type { Size } from '../util/size.js';
import type { StandardDeviceOptions } from './standard-devices.js';
import type { VirtioDeviceSpec } from './virtio.js';

/** A device and where it sits. */
export interface DeviceSpec {
  /** The device model (any object with `read`/`write`, see `Device`). */
  device: Device;
  /** Its port range: `base` (0 to 0xffff) and `length` ports. */
  pio?: {
    /** First port. */
    base: number;
    /** Number of ports. */
    length: number;
  };
  /** Its MMIO range: `base` (guest-physical, outside every memory slot) and `length` bytes. */
  mmio?: {
    /** First guest-physical address. */
    base: bigint;
    /** Length in bytes. */
    length: number;
  };
  /**
   * The interrupt line the device drives (0–23): an in-kernel IOAPIC/PIC input with `irqchip: true`, else a
   * line of the machine's own controller (KVM_INTERRUPT; see docs/machines.md, Interrupts). Informational:
   * the device gets its IrqLine from `machine.irqLine(n)`.
   */
  irq?: number;
  /** An OUT to this device's ports stops the vCPU that made it (e.g. a debug-exit port). */
  stopsVcpu?: boolean;
}

/** Options of `createMachine()`. */
export interface MachineOptions extends StandardDeviceOptions {
  /**
   * Guest RAM at guest-physical 0: bytes or a size such as `'64 MiB'`, a multiple of 4096, at
   * most 4 GiB. One SharedArrayBuffer of this size, committed by the kernel page by page as the
   * guest or the host touch it.
   */
  memory: Size;
  /** How many vCPUs, each with its own worker thread. Default 1. */
  vcpus?: number;
  /**
   * Devices beyond the standard ones (`serial`, `debugExit`, `haltPort`, `i8042`, `rtc`): bus devices where you
   * place them, and virtio devices (`virtioBlk()`, `virtioConsole()`, `virtioRng()`) that the machine places:
   * the i-th virtio entry's virtio-mmio transport at 0xd0000000 + i × 0x1000, on interrupt line 5 + i
   * (`machine.virtio` lists them). The machine owns virtio devices: `close()` closes them (a disk's file).
   */
  devices?: (DeviceSpec | VirtioDeviceSpec)[];
  /**
   * Create the in-kernel irqchip (PIC, IOAPIC, a LAPIC per vCPU): device lines go to it with KVM_IRQ_LINE,
   * `machine.irqfd()` binds eventfds to its pins, and HLT waits in the kernel. Without it, device lines go to a
   * small controller of kvmpool's (ports 0x510–0x514, vectors 0x20 + line) that vCPU 0's thread delivers with
   * KVM_INTERRUPT. Default false.
   */
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
  /**
   * Longest a vCPU thread spins for the dispatcher's answer to a device read before it sleeps,
   * in µs (0–100, default 50; 0: never). The same policy as the dispatcher's spin: only while a
   * core is free for it and recent answers came that quickly. An answer that finds the thread
   * spinning costs neither a futex wake on the main thread nor a wake-up of the vCPU thread.
   */
  vcpuSpinUs?: number;
  /** The KVM device. Default `/dev/kvm`. */
  kvmPath?: string;
}

/** Options of `machine.start()`. */
export interface StartOptions {
  /** Guest address where every vCPU starts (rip). */
  entry: bigint;
  /** Stack pointer for each vCPU. */
  stack?: bigint | ((vcpu: number) => bigint);
  /** Extra registers for each vCPU (e.g. its index in rdi). */
  regs?: (vcpu: number) => Partial<KvmRegs>;
  /**
   * Let the guest take interrupts (64-bit modes): IDTR points at `idt` (256 gates the guest writes; its
   * CPL 0 handlers should be a few instructions, CPL 0 code is emulated on some hosts), TSS.RSP0 is
   * `stack`, the identity map covers 4 GiB (so the IOAPIC at 0xfec00000 and the LAPIC at 0xfee00000 are
   * reachable), and with `enabled` every vCPU starts with RFLAGS.IF set (a CPL 3 `sti` faults on kvm_pvm).
   */
  interrupts?: StartInterrupts;
}

/** `StartOptions.interrupts`: the IDT, the CPL 0 stack and IF at start. */
export interface StartInterrupts {
  /** Guest address of the IDT (4 KiB: 256 16-byte gates). */
  idt: bigint;
  /** TSS.RSP0: the stack interrupts from CPL 3 switch to (one for all vCPUs: one TSS). */
  stack: bigint;
  /** Start with RFLAGS.IF = 1. Default true. */
  enabled?: boolean;
}

/** How a machine ended, as `machine.waitForExit()` resolves and the `exit` event gives it. */
export type MachineExit =
  /** Every vCPU stopped by itself (HLT, or an OUT to a port that stops its vCPU). */
  | {
    /** Every vCPU stopped by itself (HLT, or an OUT to a port that stops its vCPU). */
    reason: 'halted';
  }
  /** `stop()` or `close()` was called. */
  | {
    /** `stop()` or `close()` was called. */
    reason: 'stopped';
  }
  | {
    /** The guest wrote to the debug-exit port. */
    reason: 'debug-exit';
    /** The value it wrote. */
    code: number;
  }
  /** The guest asked for a reset (i8042 command 0xFE); kvmpool stops the VM. */
  | {
    /** The guest asked for a reset (i8042 command 0xFE); kvmpool stops the VM. */
    reason: 'reset';
  }
  | {
    /** A vCPU crashed (shutdown, internal error, failed entry); the VM stopped. */
    reason: 'crashed';
    /** Names the vCPU, the exit and rip. */
    error: GuestCrashError;
  }
  | {
    /** A vCPU thread or a device failed; the VM stopped. */
    reason: 'error';
    /** A `VcpuThreadError`, or the device's error. */
    error: Error;
  };

/** A vCPU stopped at a KVM_EXIT_DEBUG (step, breakpoint, watchpoint); it stays paused. */
export interface DebugStop {
  /** The vCPU index. */
  vcpu: number;
  /** Its rip. */
  pc: bigint;
  /** Its DR6: which breakpoint hit, or BS for a single step. */
  dr6: bigint;
  /** 1 (#DB) or 3 (#BP). */
  exception: number;
}

export interface MachineEvents {
  exit: [MachineExit];
  error: [Error];
  debug: [DebugStop];
  /** The guest asked for a reset (i8042 command 0xFE); the machine then stops. */
  reset: [];
}

