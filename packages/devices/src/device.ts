/** The device model interface: a device answers reads and takes writes at offsets in its range. */

/** A guest interrupt line (an irqchip input). Devices raise and lower it; the VM wires it to KVM_IRQ_LINE. */
export interface IrqLine {
  /** Drives the line high (`true`) or low. */
  set(level: boolean): void;
}

/** A register a vCPU worker answers on its own from shared state, without a main-thread round trip. */
export interface FastRegister {
  /** Offset within the device's range. */
  offset: number;
  /** Access size in bytes (1, 2 or 4). */
  size: number;
  /** Index in the device's `fastState` Int32Array; the worker returns its low `size` bytes. */
  index: number;
}

/**
 * A device model on a bus: `read`/`write` get the offset inside the device's range and the access
 * bytes. Any object of this shape can go in `MachineOptions.devices`.
 */
export interface Device {
  /** A short name for messages ("uart0", "debug-exit"). */
  readonly name: string;
  /**
   * Fill `data` (length = access size) with the value read at `offset`. `source` is the vCPU
   * (or sandbox slot) that made the access. A device may answer later by returning a promise:
   * the vCPU waits, the dispatcher goes on with other rings, and the reply is sent when the
   * promise settles (a rejection answers all-ones and is reported as a device error).
   */
  read(offset: number, data: Uint8Array, source?: number): void | Promise<void>;
  /** Take the `data.length`-byte value written at `offset`. */
  write(offset: number, data: Uint8Array, source?: number): void;
  /** Back to power-on state. */
  reset?(): void;
  /** A JSON-serialisable snapshot of the device's state. */
  exportState?(): unknown;
  /** Puts back a state `exportState()` returned (snapshot restore). */
  importState?(state: unknown): void;
  /** Registers the vCPU worker may answer from `fastState` (shared with the worker). */
  readonly fastRegisters?: readonly FastRegister[];
  /** Shared words the worker reads `fastRegisters` from (the device keeps them current). */
  readonly fastState?: Int32Array;
  /** Offsets whose guest writes KVM may batch (coalesced PIO/MMIO), where the device semantics allow. */
  readonly coalescable?: readonly {
    /** First register offset. */
    offset: number;
    /** Bytes from there. */
    length: number;
  }[];
}

/** Little-endian value of up to 4 bytes. */
export function bytesToValue(data: Uint8Array): number {
  let v = 0;
  for (let i = Math.min(data.length, 4) - 1; i >= 0; i--) v = (v * 256 + data[i]!) >>> 0;
  return v;
}

/** Writes `value` little-endian into `data`. */
export function valueToBytes(value: number, data: Uint8Array): void {
  for (let i = 0; i < data.length; i++) data[i] = i < 4 ? (value >>> (8 * i)) & 0xff : 0;
}
