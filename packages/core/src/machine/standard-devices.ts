/** The PC devices a machine can add by option: COM UARTs, debug-exit, a halt port, i8042, CMOS RTC. */
import { CmosRtc, DebugExit, I8042, Uart16550, type Device, type IrqLine } from '@kvmpool/devices';
import type { DeviceSpec } from './machine.js';

/** The PC serial ports COM1–COM4: the UARTs of `serial: n` go there, in this order. */
export const COM_PORTS: readonly {
  /** First of the UART's 8 ports. */
  readonly base: number;
  /** Its ISA interrupt line (with `irqchip: true`). */
  readonly irq: number;
}[] = [
  { base: 0x3f8, irq: 4 },
  { base: 0x2f8, irq: 3 },
  { base: 0x3e8, irq: 4 },
  { base: 0x2e8, irq: 3 },
];

/** The debug-exit port: a guest write of a value ends the machine with `{ reason: 'debug-exit', code }`. */
export const DEFAULT_DEBUG_EXIT_PORT = 0x501;
/**
 * The halt port: an OUT to it stops the vCPU that made it, which is how a CPL 3 guest (where HLT
 * faults) ends; when every vCPU has stopped so, the machine exits with `{ reason: 'halted' }`.
 */
export const DEFAULT_HALT_PORT = 0x500;

/** The standard PC devices `createMachine()` adds by option. */
export interface StandardDeviceOptions {
  /** How many 16550 UARTs (COM1…COM4). Default 1. */
  serial?: number;
  /**
   * Bytes each UART keeps for a reader that does not read; past it guest output is dropped and
   * counted (`machine.serial(i).stats()`). Default 1 MiB.
   */
  serialTxLimit?: number;
  /** Bytes waiting at which each UART's LSR reads busy (back-pressure on a polling guest). Default 64 KiB. */
  serialTxHighWater?: number;
  /** Port of the debug-exit device (a guest write ends the VM with that code), or false. Default 0x501. */
  debugExit?: number | false;
  /** Port whose OUT stops the vCPU that made it (what HLT is for a kernel), or false. Default 0x500. */
  haltPort?: number | false;
  /** i8042 at 0x60/0x64, for the reset command. Default false. */
  i8042?: boolean;
  /** CMOS RTC at 0x70/0x71. Default false. */
  rtc?: boolean;
}

export interface StandardDeviceHooks {
  irqLine: (irq: number) => IrqLine | undefined;
  onExitCode: (code: number) => void;
  onReset: () => void;
}

/** Builds the device specs; returns the UARTs separately (for `machine.serial(i)`). */
export function standardDevices(o: StandardDeviceOptions, hooks: StandardDeviceHooks): { specs: DeviceSpec[]; uarts: Uart16550[] } {
  const specs: DeviceSpec[] = [];
  const uarts: Uart16550[] = [];
  const count = o.serial ?? 1;
  if (!Number.isInteger(count) || count < 0 || count > COM_PORTS.length) {
    throw new RangeError(`serial: ${count} UARTs requested; 0 to ${COM_PORTS.length} are possible`);
  }
  for (let i = 0; i < count; i++) {
    const com = COM_PORTS[i]!;
    const irq = hooks.irqLine(com.irq);
    const uart = new Uart16550({
      name: `uart${i}`,
      ...(irq ? { irq } : {}),
      ...(o.serialTxLimit === undefined ? {} : { txLimit: o.serialTxLimit }),
      ...(o.serialTxHighWater === undefined ? {} : { txHighWater: o.serialTxHighWater }),
    });
    uarts.push(uart);
    specs.push({ device: uart, pio: { base: com.base, length: 8 }, ...(irq ? { irq: com.irq } : {}) });
  }
  if (o.debugExit !== false) {
    const device = new DebugExit({ onExit: hooks.onExitCode });
    specs.push({ device, pio: { base: o.debugExit ?? DEFAULT_DEBUG_EXIT_PORT, length: 2 }, stopsVcpu: true });
  }
  if (o.haltPort !== false) {
    specs.push({ device: haltDevice, pio: { base: o.haltPort ?? DEFAULT_HALT_PORT, length: 1 }, stopsVcpu: true });
  }
  if (o.i8042) specs.push({ device: new I8042({ onReset: hooks.onReset }), pio: { base: 0x60, length: 5 } });
  if (o.rtc) specs.push({ device: new CmosRtc(), pio: { base: 0x70, length: 2 } });
  return { specs, uarts };
}

/** Takes the write; the vCPU worker stops the vCPU that made it (`stopsVcpu`). */
const haltDevice: Device = {
  name: 'halt-port',
  read: (_offset, data) => {
    data.fill(0);
  },
  write: () => {},
};
