/**
 * The bulk-serial runs of the `exit-bus` benchmark: a fresh machine per run with a Uart16550 at
 * COM1 (the machine registers KVM coalesced PIO for its THR) and a stop port; the guest writes
 * `n` bytes to THR and stops; the host reads them all from `uart.stream()`, checking the count
 * and the order. Timed from `m.start()` to the stream having delivered the last byte.
 */
import { createMachine } from '@kvmpool/core/internal';
import { Uart16550, type Device } from '@kvmpool/devices';
import { CODE, STACK } from './exit-bus-machines.js';
import { DONE_PORT, REP_CHUNK, REP_SOURCE, UART_BULK, UART_BULK_REP, UART_PORT, repSource, uartBulkByte } from './exit-bus-guests.js';

const now = (): bigint => process.hrtime.bigint();

const doneDevice: Device = {
  name: 'done',
  read: (_o, d) => {
    d.fill(0);
  },
  write: () => {},
};

export interface UartRun {
  /** From the start() call to the last byte out of the stream. */
  ns: number;
  /** How long start() itself took (vCPU set-up through the worker), inside `ns`. */
  startNs: number;
  /** Userspace exits of the vCPU (KVM_RUN returns: ring-full spills, the stop port). */
  exits: number;
  /** Stream bytes that differ from what the guest wrote at that position. */
  misordered: number;
}

/**
 * One run: `rep` picks the guest — UART_BULK (`out %al,(%dx)`, one guest exit per byte) or
 * UART_BULK_REP (`rep outsb` of REP_CHUNK bytes; `n` must be a multiple of REP_CHUNK).
 */
export async function uartBulkRun(n: number, rep: boolean): Promise<UartRun> {
  if (rep && n % REP_CHUNK !== 0) throw new RangeError(`uart bulk: ${n} is not a multiple of ${REP_CHUNK}`);
  const uart = new Uart16550({ name: 'uart-bulk' });
  const m = await createMachine({
    memory: '2 MiB',
    serial: 0,
    devices: [
      { device: uart, pio: { base: UART_PORT, length: 8 } },
      { device: doneDevice, pio: { base: DONE_PORT, length: 1 }, stopsVcpu: true },
    ],
  });
  try {
    m.load(CODE, rep ? UART_BULK_REP : UART_BULK);
    const source = repSource();
    if (rep) m.load(REP_SOURCE, source);
    const expected = rep ? (i: number) => source[i % REP_CHUNK]! : (i: number) => uartBulkByte(n, i);
    let bytes = 0;
    let misordered = 0;
    const all = new Promise<bigint>((resolve) => {
      uart.stream().on('data', (chunk: Buffer) => {
        for (let i = 0; i < chunk.length; i++) if (chunk[i] !== expected(bytes + i)) misordered++;
        bytes += chunk.length;
        if (bytes >= n) resolve(now());
      });
    });
    const t0 = now();
    await m.start({ entry: CODE, stack: STACK, regs: () => ({ rcx: BigInt(n) }) });
    const t1 = now();
    // The machine halts at the stop port after a final drain; give the stream a turn after that.
    const exited = m.waitForExit().then(async (exit) => {
      await new Promise((r) => setTimeout(r, 20));
      return exit;
    });
    const end = await Promise.race([all, exited]);
    if (typeof end !== 'bigint') throw new Error(`uart bulk: the machine stopped (${end.reason}) after ${bytes} of ${n} bytes`);
    const exit = await m.waitForExit();
    if (exit.reason !== 'halted') throw new Error(`uart bulk: the machine ended with ${exit.reason}`);
    if (bytes !== n) throw new Error(`uart bulk: the stream delivered ${bytes} bytes, the guest wrote ${n}`);
    return { ns: Number(end - t0), startNs: Number(t1 - t0), exits: m.vcpuExits()[0] ?? 0, misordered };
  } finally {
    await m.close();
  }
}
