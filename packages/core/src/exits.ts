/**
 * VcpuExit: what KVM_RUN returned, as a tagged union named after KVM_EXIT_*. Decoded straight
 * from the vCPU's kvm_run mapping; `data` of io/mmio exits is a view into that mapping, valid
 * until the next run. For an IN or an MMIO read, write the answer into `data` before running again.
 */
import {
  KVM_RUN_DEBUG, KVM_RUN_EX, KVM_RUN_FAIL_ENTRY, KVM_RUN_HYPERCALL, KVM_RUN_INTERNAL, KVM_RUN_IO, KVM_RUN_MMIO,
  KVM_RUN_STRUCT, KVM_RUN_SYSTEM_EVENT,
} from './ffi/index.js';

/**
 * The exit reasons of `kvm_run.exit_reason` (`KVM_EXIT_*` in <linux/kvm.h>) that kvmpool knows by name.
 * @enum
 */
export const KVM_EXIT = {
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6, IRQ_WINDOW_OPEN: 7, SHUTDOWN: 8,
  FAIL_ENTRY: 9, INTR: 10, SET_TPR: 11, TPR_ACCESS: 12, NMI: 16, INTERNAL_ERROR: 17, SYSTEM_EVENT: 24,
  IOAPIC_EOI: 26, X86_RDMSR: 29, X86_WRMSR: 30, X86_BUS_LOCK: 33, NOTIFY: 37,
} as const;

export const KVM_INTERNAL_ERROR = {
  1: 'EMULATION', 2: 'SIMUL_EX', 3: 'DELIVERY_EV', 4: 'UNEXPECTED_EXIT_REASON',
} as const satisfies Record<number, string>;

export const KVM_SYSTEM_EVENT = {
  1: 'SHUTDOWN', 2: 'RESET', 3: 'CRASH', 4: 'WAKEUP', 5: 'SUSPEND', 6: 'SEV_TERM',
} as const satisfies Record<number, string>;

/** A port I/O exit (`KVM_EXIT_IO`): an `in` or `out` instruction, or one element of `rep ins/outs`. */
export type IoExit = {
  /** Always `'io'`. */
  kind: 'io';
  /** The I/O port, 0 to 0xffff. */
  port: number;
  /** `out`: the guest wrote `data`; `in`: write the answer into `data` before the next run. */
  direction: 'in' | 'out';
  /** Access width in bytes: 1, 2 or 4. */
  size: 1 | 2 | 4;
  /** Repetitions of a string instruction (rep ins/outs); 1 otherwise. */
  count: number;
  /** `count × size` bytes: what the guest wrote, or where the answer to an IN goes. */
  data: Uint8Array;
};
/** A memory-mapped I/O exit (`KVM_EXIT_MMIO`): an access to a guest-physical address no writable slot backs. */
export type MmioExit = {
  /** Always `'mmio'`. */
  kind: 'mmio';
  /** The guest-physical address accessed. */
  address: bigint;
  /** `write`: the guest wrote `data`; `read`: write the answer into `data` before the next run. */
  direction: 'read' | 'write';
  /** 1 to 8 bytes. */
  size: number;
  /** `size` bytes inside the kvm_run mapping, valid until the next run. */
  data: Uint8Array;
};
/**
 * Why `Vcpu.run()` returned, tagged by `kind` (the `KVM_EXIT_*` name in lower case). The `data` of
 * io and mmio exits is a view into the vCPU's kvm_run mapping, valid until the next run.
 */
export type VcpuExit =
  | IoExit
  | MmioExit
  | {
    /** The guest executed HLT at CPL 0 (at CPL 3, HLT is a #GP, and with no guest kernel a shutdown). */
    kind: 'hlt';
  }
  | {
    /** The guest triple-faulted (with no guest kernel, any exception ends here). */
    kind: 'shutdown';
  }
  | {
    /** KVM could not enter the guest (`KVM_EXIT_FAIL_ENTRY`), e.g. invalid guest state. */
    kind: 'fail_entry';
    /** The hardware's entry-failure reason (`hardware_entry_failure_reason`). */
    hardwareReason: bigint;
    /** The host CPU it happened on. */
    cpu: number;
  }
  | {
    /** KVM's emulator or exit handling failed (`KVM_EXIT_INTERNAL_ERROR`). */
    kind: 'internal_error';
    /** `KVM_INTERNAL_ERROR_*` number. */
    suberror: number;
    /** Its name, e.g. `EMULATION`, or `SUBERROR_<n>`. */
    suberrorName: string;
    /** The words KVM reports with it (at most 16). */
    data: bigint[];
  }
  | {
    /** A debug event (`KVM_EXIT_DEBUG`): a single step or a hardware breakpoint. */
    kind: 'debug';
    /** The exception vector (1 for #DB, 3 for #BP). */
    exception: number;
    /** The guest rip. */
    pc: bigint;
    /** The guest's DR6 (which breakpoint, single step). */
    dr6: bigint;
    /** The guest's DR7. */
    dr7: bigint;
  }
  | {
    /** An exception KVM passed to user space (`KVM_EXIT_EXCEPTION`). */
    kind: 'exception';
    /** The exception vector. */
    exception: number;
    /** Its error code. */
    errorCode: number;
  }
  | {
    /** A hypercall exit (`KVM_EXIT_HYPERCALL`). */
    kind: 'hypercall';
    /** The hypercall number. */
    nr: bigint;
    /** Its six arguments. */
    args: bigint[];
  }
  | {
    /** KVM_RUN returned EINTR (a signal or immediate_exit): the vCPU stopped between instructions. */
    kind: 'intr';
  }
  | {
    /** The guest can take an interrupt now (asked for with `request_interrupt_window`). */
    kind: 'irq_window_open';
  }
  | {
    /** A system event (`KVM_EXIT_SYSTEM_EVENT`): shutdown, reset, crash… */
    kind: 'system_event';
    /** `KVM_SYSTEM_EVENT_*` number. */
    type: number;
    /** Its name, e.g. `RESET`, or `TYPE_<n>`. */
    typeName: string;
    /** The words KVM reports with it. */
    data: bigint[];
  }
  | {
    /** An exit reason kvmpool does not decode. */
    kind: 'unknown';
    /** The raw `exit_reason`. */
    reason: number;
  };

/** The `kind` of every `VcpuExit`. */
export type VcpuExitKind = VcpuExit['kind'];

const EXIT = KVM_RUN_STRUCT.offsets.exit;

/** Decodes the exit in a kvm_run mapping. `bytes` and `view` cover the whole mapping. */
export function decodeExit(view: DataView, bytes: Uint8Array): VcpuExit {
  const reason = view.getUint32(KVM_RUN_STRUCT.offsets.exit_reason, true);
  switch (reason) {
    case KVM_EXIT.IO: {
      const o = KVM_RUN_IO.offsets;
      const size = view.getUint8(EXIT + o.size) as 1 | 2 | 4;
      const count = view.getUint32(EXIT + o.count, true);
      const offset = Number(view.getBigUint64(EXIT + o.data_offset, true));
      return {
        kind: 'io',
        port: view.getUint16(EXIT + o.port, true),
        direction: view.getUint8(EXIT + o.direction) === 1 ? 'out' : 'in',
        size,
        count,
        data: bytes.subarray(offset, offset + size * count),
      };
    }
    case KVM_EXIT.MMIO: {
      const o = KVM_RUN_MMIO.offsets;
      const size = view.getUint32(EXIT + o.len, true);
      return {
        kind: 'mmio',
        address: view.getBigUint64(EXIT + o.phys_addr, true),
        direction: view.getUint8(EXIT + o.is_write) ? 'write' : 'read',
        size,
        data: bytes.subarray(EXIT + o.data, EXIT + o.data + Math.min(size, 8)),
      };
    }
    case KVM_EXIT.HLT:
      return { kind: 'hlt' };
    case KVM_EXIT.SHUTDOWN:
      return { kind: 'shutdown' };
    case KVM_EXIT.INTR:
      return { kind: 'intr' };
    case KVM_EXIT.IRQ_WINDOW_OPEN:
      return { kind: 'irq_window_open' };
    case KVM_EXIT.FAIL_ENTRY: {
      const o = KVM_RUN_FAIL_ENTRY.offsets;
      return {
        kind: 'fail_entry',
        hardwareReason: view.getBigUint64(EXIT + o.hardware_entry_failure_reason, true),
        cpu: view.getUint32(EXIT + o.cpu, true),
      };
    }
    case KVM_EXIT.INTERNAL_ERROR: {
      const o = KVM_RUN_INTERNAL.offsets;
      const suberror = view.getUint32(EXIT + o.suberror, true);
      const ndata = Math.min(view.getUint32(EXIT + o.ndata, true), 16);
      return {
        kind: 'internal_error',
        suberror,
        suberrorName: (KVM_INTERNAL_ERROR as Record<number, string>)[suberror] ?? `SUBERROR_${suberror}`,
        data: Array.from({ length: ndata }, (_, i) => view.getBigUint64(EXIT + o.data + 8 * i, true)),
      };
    }
    case KVM_EXIT.DEBUG: {
      const o = KVM_RUN_DEBUG.offsets;
      return {
        kind: 'debug',
        exception: view.getUint32(EXIT + o.exception, true),
        pc: view.getBigUint64(EXIT + o.pc, true),
        dr6: view.getBigUint64(EXIT + o.dr6, true),
        dr7: view.getBigUint64(EXIT + o.dr7, true),
      };
    }
    case KVM_EXIT.EXCEPTION: {
      const o = KVM_RUN_EX.offsets;
      return { kind: 'exception', exception: view.getUint32(EXIT + o.exception, true), errorCode: view.getUint32(EXIT + o.error_code, true) };
    }
    case KVM_EXIT.HYPERCALL: {
      const o = KVM_RUN_HYPERCALL.offsets;
      return {
        kind: 'hypercall',
        nr: view.getBigUint64(EXIT + o.nr, true),
        args: Array.from({ length: 6 }, (_, i) => view.getBigUint64(EXIT + o.args + 8 * i, true)),
      };
    }
    case KVM_EXIT.SYSTEM_EVENT: {
      const o = KVM_RUN_SYSTEM_EVENT.offsets;
      const type = view.getUint32(EXIT + o.type, true);
      const ndata = Math.min(view.getUint32(EXIT + o.ndata, true), 16);
      return {
        kind: 'system_event',
        type,
        typeName: (KVM_SYSTEM_EVENT as Record<number, string>)[type] ?? `TYPE_${type}`,
        data: Array.from({ length: ndata }, (_, i) => view.getBigUint64(EXIT + o.data + 8 * i, true)),
      };
    }
    default:
      return { kind: 'unknown', reason };
  }
}

/** A one-line description of an exit, for errors and logs. */
export function describeExit(exit: VcpuExit): string {
  switch (exit.kind) {
    case 'io':
      return `io ${exit.direction} port 0x${exit.port.toString(16)} size ${exit.size}${exit.count > 1 ? ` ×${exit.count}` : ''}`;
    case 'mmio':
      return `mmio ${exit.direction} 0x${exit.address.toString(16)} size ${exit.size}`;
    case 'fail_entry':
      return `fail_entry (hardware reason 0x${exit.hardwareReason.toString(16)}, cpu ${exit.cpu})`;
    case 'internal_error':
      return `internal_error ${exit.suberrorName} [${exit.data.map((d) => `0x${d.toString(16)}`).join(', ')}]`;
    case 'system_event':
      return `system_event ${exit.typeName}`;
    case 'unknown':
      return `unknown exit reason ${exit.reason}`;
    default:
      return exit.kind;
  }
}
