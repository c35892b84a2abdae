/**
 * A debug exit port in the manner of QEMU's isa-debug-exit: a guest write of value `v` (1, 2 or
 * 4 bytes, little-endian, at any offset of the device's range) asks the host to end the VM
 * with `v` as its code. Reads return 0.
 *
 * QEMU turns the write into the process exit status `(v << 1) | 1`, so that no guest value
 * can look like a clean exit of QEMU itself. We have no such ambiguity and pass `v` unchanged;
 * what to make of it is up to `onExit`.
 *
 * Conventional placement: port 0x501, length 2 (QEMU's default `iobase=0x501,iosize=2`).
 * Do not make its range coalescable: the exit must happen at the write, not at a later exit.
 */
import { bytesToValue, type Device } from './device.js';

/** Options of `new DebugExit()`. */
export interface DebugExitOptions {
  /** Device name for messages; default "debug-exit". */
  name?: string;
  /** Called with the raw value the guest wrote. */
  onExit: (code: number) => void;
}

/**
 * The debug-exit port (QEMU's isa-debug-exit): a guest write of a value calls `onExit(value)`; a machine ends
 * with `{ reason: 'debug-exit', code }`.
 */
export class DebugExit implements Device {
  readonly name: string;
  readonly #onExit: (code: number) => void;
  #lastCode: number | undefined;

  constructor(options: DebugExitOptions) {
    if (typeof options?.onExit !== 'function') throw new TypeError('DebugExit: options.onExit must be a function');
    this.name = options.name ?? 'debug-exit';
    this.#onExit = options.onExit;
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  write(_offset: number, data: Uint8Array): void {
    const code = bytesToValue(data);
    this.#lastCode = code;
    this.#onExit(code);
  }

  reset(): void {
    this.#lastCode = undefined;
  }

  /** Its state for snapshots: the name and the last code written. */
  exportState(): {
    /** The device name. */
    name: string;
    /** The last code the guest wrote, or null. */
    lastCode: number | null;
  } {
    return { name: this.name, lastCode: this.#lastCode ?? null };
  }
}
