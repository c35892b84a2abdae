/**
 * An i8042 PS/2 controller with no keyboard or mouse attached: enough for guests to probe it,
 * and to reboot the machine the PC way (command 0xFE, "pulse the reset line").
 *
 * Register the device over ports [0x60, 0x65): offset 0 is the data port (0x60), offset 4 the
 * status (read) / command (write) port (0x64). Offsets 1..3 (0x61..0x63) are not the
 * controller's: they read 0xff and drop writes. Port 0x61 (PC speaker / PIT gate) is handled
 * in-kernel when KVM's PIT is created (KVM_CREATE_PIT2); a VMM emulating 0x61 itself cannot map
 * it on the same bus, since this range covers it.
 *
 * Commands (to 0x64):
 *   0x20..0x3F  read controller RAM byte n (0x20: the command byte, "CTR") → output buffer
 *   0x60..0x7F  write controller RAM byte n (0x60: the CTR) ← next byte written to 0x60
 *   0xA7/0xA8   disable / enable the aux (mouse) port      0xA9  test aux port → 0x00
 *   0xAA        self-test → 0x55 (and sets the system flag)  0xAB  test kbd port → 0x00
 *   0xAD/0xAE   disable / enable the keyboard port
 *   0xD0        read the output port → output buffer
 *   0xD1        write the output port ← next data byte; bit 0 clear pulses the CPU reset line
 *   0xD2/0xD3   next data byte goes to the output buffer as if from the keyboard / the mouse
 *   0xD4        next data byte goes to the mouse (none attached: dropped)
 *   0xF0..0xFF  pulse output port lines whose bit is 0 in the low nibble; bit 0 is the CPU
 *               reset, so 0xFE (and any even value) resets
 * Other commands are ignored. Bytes written to 0x60 for the keyboard are dropped (no device),
 * so Linux guests boot fastest with `i8042.nokbd i8042.noaux` (or Firecracker's set:
 * `i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd`).
 *
 * Status (read 0x64): OBF, the system flag (CTR bit 2), A2 "last write was a command", and
 * "keyboard not inhibited" — 0x1C at power-on. IBF is always 0: commands complete at once.
 * The CPU reset is reported through `onReset()`; the VMM resets the machine (and calls this
 * device's `reset()`). A20 (output port bit 1) is recorded only: KVM guests always have A20.
 */
import type { Device, IrqLine } from './device.js';

/**
 * The i8042's ports: data 0x60, command/status 0x64 (one 5-port range from 0x60).
 * @enum
 */
export const I8042_PORT = { DATA: 0x60, COMMAND: 0x64, BASE: 0x60, LENGTH: 5 } as const;
/**
 * Offsets of the data and command ports in that range.
 * @enum
 */
export const I8042_OFFSET = { DATA: 0, COMMAND: 4 } as const;
/**
 * Status register bits.
 * @enum
 */
export const I8042_STATUS = { OBF: 0x01, IBF: 0x02, SYS: 0x04, A2: 0x08, UNLOCKED: 0x10, AUX_OBF: 0x20, TIMEOUT: 0x40, PARITY: 0x80 } as const;
/**
 * Controller command byte (CTR) bits.
 * @enum
 */
export const I8042_CTR = { KBD_INT: 0x01, AUX_INT: 0x02, SYS: 0x04, KBD_DISABLE: 0x10, AUX_DISABLE: 0x20, XLATE: 0x40 } as const;
/**
 * Controller commands written to port 0x64 (0xFE pulses the reset line).
 * @enum
 */
export const I8042_CMD = {
  READ_CTR: 0x20, WRITE_CTR: 0x60, AUX_DISABLE: 0xa7, AUX_ENABLE: 0xa8, AUX_TEST: 0xa9, SELF_TEST: 0xaa,
  KBD_TEST: 0xab, KBD_DISABLE: 0xad, KBD_ENABLE: 0xae, READ_OUTPUT: 0xd0, WRITE_OUTPUT: 0xd1,
  WRITE_KBD_OBUF: 0xd2, WRITE_AUX_OBUF: 0xd3, WRITE_AUX: 0xd4, PULSE_RESET: 0xfe,
} as const;
/**
 * Output port bits.
 * @enum
 */
export const I8042_OUTPUT = { RESET: 0x01, A20: 0x02, KBD_OBF: 0x10, AUX_OBF: 0x20 } as const;

/** Power-on command byte: keyboard interrupt, system flag, scancode translation. */
const INITIAL_CTR = I8042_CTR.KBD_INT | I8042_CTR.SYS | I8042_CTR.XLATE;
const INITIAL_OUTPUT_PORT = I8042_OUTPUT.RESET | I8042_OUTPUT.A20;

/** Options of `new I8042()`. */
export interface I8042Options {
  /** Device name for messages; default "i8042". */
  name?: string;
  /** Called when the guest pulses the CPU reset line. */
  onReset: () => void;
  /** IRQ 1: output buffer full with keyboard-side data, while CTR.KBD_INT is set. */
  irq?: IrqLine;
  /** IRQ 12: output buffer full with mouse-side data, while CTR.AUX_INT is set. */
  auxIrq?: IrqLine;
}

/** The i8042's state, as `exportState()` returns it for snapshots. */
export interface I8042State {
  /** The device name. */
  name: string;
  /** The status register (`I8042_STATUS`). */
  status: number;
  /** The controller command byte (`I8042_CTR`). */
  ctr: number;
  /** The controller's internal RAM. */
  ram: number[];
  /** The output port (`I8042_OUTPUT`). */
  outputPort: number;
  /** The byte in the output buffer. */
  outputBuffer: number;
  /** Whether the output buffer holds a byte. */
  outputFull: boolean;
  /** Whether that byte came from the aux (mouse) port. */
  outputFromAux: boolean;
  /** The command waiting for its data byte, or null. */
  pendingCommand: number | null;
}

/**
 * The PC keyboard controller at ports 0x60/0x64, enough for guests that probe it and for the reset command:
 * command 0xFE (pulse reset) calls `onReset`, which a machine turns into `{ reason: 'reset' }`.
 */
export class I8042 implements Device {
  readonly name: string;
  readonly #onReset: () => void;
  readonly #irq: IrqLine | undefined;
  readonly #auxIrq: IrqLine | undefined;
  /** Controller RAM; byte 0 is the command byte (CTR). */
  readonly #ram = new Uint8Array(32);
  #outputPort: number = INITIAL_OUTPUT_PORT;
  #obuf = 0;
  #obf = false;
  #obufAux = false;
  #lastWasCommand = true;
  #pending: number | undefined;
  #irqLevel = false;
  #auxIrqLevel = false;

  constructor(options: I8042Options) {
    if (typeof options?.onReset !== 'function') throw new TypeError('I8042: options.onReset must be a function');
    this.name = options.name ?? 'i8042';
    this.#onReset = options.onReset;
    this.#irq = options.irq;
    this.#auxIrq = options.auxIrq;
    this.#ram[0] = INITIAL_CTR;
  }

  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      data[i] = at === I8042_OFFSET.DATA ? this.#readData() : at === I8042_OFFSET.COMMAND ? this.#status() : 0xff;
    }
    this.#updateIrqs();
  }

  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at === I8042_OFFSET.DATA) this.#writeData(data[i]!);
      else if (at === I8042_OFFSET.COMMAND) this.#command(data[i]!);
    }
    this.#updateIrqs();
  }

  reset(): void {
    this.#ram.fill(0);
    this.#ram[0] = INITIAL_CTR;
    this.#outputPort = INITIAL_OUTPUT_PORT;
    this.#obuf = 0;
    this.#obf = false;
    this.#obufAux = false;
    this.#lastWasCommand = true;
    this.#pending = undefined;
    this.#updateIrqs();
  }

  exportState(): I8042State {
    return {
      name: this.name,
      status: this.#status(),
      ctr: this.#ram[0]!,
      ram: [...this.#ram],
      outputPort: this.#outputPort,
      outputBuffer: this.#obuf,
      outputFull: this.#obf,
      outputFromAux: this.#obufAux,
      pendingCommand: this.#pending ?? null,
    };
  }

  importState(state: unknown): void {
    const s = state as I8042State;
    if (!Array.isArray(s.ram) || typeof s.outputPort !== 'number') throw new TypeError(`${this.name}: importState: not an i8042 state`);
    s.ram.forEach((v, i) => {
      if (i < this.#ram.length) this.#ram[i] = v & 0xff;
    });
    this.#outputPort = s.outputPort;
    this.#obuf = s.outputBuffer;
    this.#obf = s.outputFull;
    this.#obufAux = s.outputFromAux;
    this.#pending = s.pendingCommand ?? undefined;
  }

  #status(): number {
    return (
      (this.#obf ? I8042_STATUS.OBF : 0) |
      (this.#obf && this.#obufAux ? I8042_STATUS.AUX_OBF : 0) |
      (this.#ram[0]! & I8042_CTR.SYS ? I8042_STATUS.SYS : 0) |
      (this.#lastWasCommand ? I8042_STATUS.A2 : 0) |
      I8042_STATUS.UNLOCKED
    );
  }

  /** Reading the data port empties the output buffer (an empty one still yields its last byte). */
  #readData(): number {
    this.#obf = false;
    this.#obufAux = false;
    return this.#obuf;
  }

  #output(byte: number, aux = false): void {
    this.#obuf = byte & 0xff;
    this.#obf = true;
    this.#obufAux = aux;
  }

  #command(cmd: number): void {
    this.#lastWasCommand = true;
    this.#pending = undefined;
    if (cmd >= 0x20 && cmd <= 0x3f) {
      this.#output(this.#ram[cmd - 0x20]!);
      return;
    }
    if ((cmd >= 0x60 && cmd <= 0x7f) || (cmd >= I8042_CMD.WRITE_OUTPUT && cmd <= I8042_CMD.WRITE_AUX)) {
      this.#pending = cmd;
      return;
    }
    if (cmd >= 0xf0) {
      if ((cmd & I8042_OUTPUT.RESET) === 0) this.#onReset();
      return;
    }
    switch (cmd) {
      case I8042_CMD.AUX_DISABLE:
        this.#ram[0]! |= I8042_CTR.AUX_DISABLE;
        return;
      case I8042_CMD.AUX_ENABLE:
        this.#ram[0]! &= ~I8042_CTR.AUX_DISABLE;
        return;
      case I8042_CMD.AUX_TEST:
      case I8042_CMD.KBD_TEST:
        this.#output(0x00);
        return;
      case I8042_CMD.SELF_TEST:
        this.#ram[0]! |= I8042_CTR.SYS;
        this.#output(0x55);
        return;
      case I8042_CMD.KBD_DISABLE:
        this.#ram[0]! |= I8042_CTR.KBD_DISABLE;
        return;
      case I8042_CMD.KBD_ENABLE:
        this.#ram[0]! &= ~I8042_CTR.KBD_DISABLE;
        return;
      case I8042_CMD.READ_OUTPUT:
        this.#output(
          this.#outputPort |
            (this.#obf && !this.#obufAux ? I8042_OUTPUT.KBD_OBF : 0) |
            (this.#obf && this.#obufAux ? I8042_OUTPUT.AUX_OBF : 0),
        );
        return;
      default:
        // Unimplemented (vendor, password, input port…): ignored.
        return;
    }
  }

  #writeData(value: number): void {
    this.#lastWasCommand = false;
    const cmd = this.#pending;
    this.#pending = undefined;
    if (cmd === undefined) return; // For the keyboard, which is not there.
    if (cmd >= 0x60 && cmd <= 0x7f) {
      this.#ram[cmd - 0x60] = value;
      return;
    }
    switch (cmd) {
      case I8042_CMD.WRITE_OUTPUT:
        // Bit 0 is the CPU reset line, active low; treated as a pulse, so it reads back as 1.
        this.#outputPort = (value | I8042_OUTPUT.RESET) & ~(I8042_OUTPUT.KBD_OBF | I8042_OUTPUT.AUX_OBF);
        if ((value & I8042_OUTPUT.RESET) === 0) this.#onReset();
        return;
      case I8042_CMD.WRITE_KBD_OBUF:
        this.#output(value);
        return;
      case I8042_CMD.WRITE_AUX_OBUF:
        this.#output(value, true);
        return;
      default:
        // WRITE_AUX: for the mouse, which is not there.
        return;
    }
  }

  #updateIrqs(): void {
    const ctr = this.#ram[0]!;
    const kbd = this.#obf && !this.#obufAux && (ctr & I8042_CTR.KBD_INT) !== 0;
    const aux = this.#obf && this.#obufAux && (ctr & I8042_CTR.AUX_INT) !== 0;
    if (kbd !== this.#irqLevel) {
      this.#irqLevel = kbd;
      this.#irq?.set(kbd);
    }
    if (aux !== this.#auxIrqLevel) {
      this.#auxIrqLevel = aux;
      this.#auxIrq?.set(aux);
    }
  }
}
