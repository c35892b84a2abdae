/**
 * The virtio guest driver (examples/guests/virtio-guest.c) for tests and benchmarks: its image, the
 * parameter page the host fills before start and the result page it reads after (offsets as in the C
 * structs), and a runner that starts a machine with it.
 */
import { createMachine, type Machine, type MachineOptions } from '@kvmpool/core/internal';
import { buildFlatCGuest, exampleGuest } from './build-c.js';

export const CODE = 0x10000n;
export const STACK = 0x80000n;
export const PARAMS = 0xf000n;
export const RESULTS = 0xf400n;

/** The guest's modes (enum in virtio-guest.c). */
export const MODE = { TOUR: 1, HOSTILE: 2, BENCH_BLK: 3, BENCH_CONSOLE: 4, NOTIFY: 5, SNAPSHOT: 6, IRQ: 7 } as const;
export const FLAG_NO_ECHO = 1;

export interface GuestParams {
  mode: number;
  flags?: number;
  arg0?: bigint | number;
  arg1?: bigint | number;
  writeSector?: bigint | number;
}

/** The polling driver, or with `irq` the one linked with virtio-irq.S (MODE_IRQ). */
export function virtioGuestImage(irq = false): Uint8Array {
  const c = exampleGuest('virtio-guest.c');
  return irq ? buildFlatCGuest([c, exampleGuest('virtio-irq.S')], ['VIRTIO_IRQ']) : buildFlatCGuest([c]);
}

export function writeParams(m: Machine, p: GuestParams): void {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, p.mode, true);
  dv.setUint32(4, p.flags ?? 0, true);
  dv.setBigUint64(8, BigInt(p.arg0 ?? 0), true);
  dv.setBigUint64(16, BigInt(p.arg1 ?? 0), true);
  dv.setBigUint64(24, BigInt(p.writeSector ?? 0), true);
  m.load(PARAMS, b);
}

/** `struct results` of virtio-guest.c. */
export interface GuestResults {
  done: number;
  error: number;
  devices: number;
  deviceIds: number[];
  blkFeatures: number;
  blkCapacity: bigint;
  stId: number;
  stRead: number;
  stWrite: number;
  stReadback: number;
  id: Uint8Array;
  rngLen: number;
  rng: Uint8Array;
  sector0: Uint8Array;
  readback: Uint8Array;
  statusAfter: number;
  stRecovered: number;
  submitted: number;
  interrupts: number;
  echo: string;
}

export function readResults(m: Machine): GuestResults {
  const b = m.readPhysical(RESULTS, 0x200);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const u32 = (o: number): number => dv.getUint32(o, true);
  const echoLen = Math.min(u32(0x110), 64);
  return {
    done: u32(0), error: u32(4), devices: u32(8), deviceIds: Array.from({ length: Math.min(u32(8), 8) }, (_, i) => u32(0xc + 4 * i)),
    blkFeatures: u32(0x2c), blkCapacity: dv.getBigUint64(0x30, true),
    stId: u32(0x38), stRead: u32(0x3c), stWrite: u32(0x40), stReadback: u32(0x44),
    id: b.slice(0x48, 0x48 + 20), rngLen: u32(0x5c), rng: b.slice(0x60, 0x80), sector0: b.slice(0x80, 0xc0), readback: b.slice(0xc0, 0x100),
    statusAfter: u32(0x100), stRecovered: u32(0x104), submitted: u32(0x108), interrupts: u32(0x10c),
    echo: Buffer.from(b.subarray(0x114, 0x114 + echoLen)).toString('latin1'),
  };
}

/** Collects a virtio console's output as text; `waitFor(s)` resolves once it contains `s`. */
export class ConsoleText {
  text = '';
  #waiters: { s: string; resolve: () => void }[] = [];
  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (chunk: Buffer) => {
      this.text += chunk.toString('latin1');
      this.#waiters = this.#waiters.filter((w) => {
        if (!this.text.includes(w.s)) return true;
        w.resolve();
        return false;
      });
    });
  }
  waitFor(s: string): Promise<void> {
    if (this.text.includes(s)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ s, resolve }));
  }
}

/** A machine with the guest loaded and `params` written, not started yet. */
export async function guestMachine(options: Partial<MachineOptions> & Pick<MachineOptions, 'devices'>, params: GuestParams, irq = false): Promise<Machine> {
  const m = await createMachine({ memory: '8 MiB', ...options });
  try {
    m.load(CODE, virtioGuestImage(irq));
    writeParams(m, params);
    return m;
  } catch (e) {
    await m.close();
    throw e;
  }
}
