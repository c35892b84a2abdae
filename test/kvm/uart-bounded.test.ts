/**
 * Guest output through the UART is bounded on the host: a guest that writes without looking at
 * LSR loses bytes beyond the limit (counted) instead of growing the heap; a guest that polls LSR
 * is slowed to the host reader and loses nothing.
 */
import { describe, expect, it } from 'vitest';
import { createMachine, type Machine, type UartLine } from '@kvmpool/core';
import { imm32 } from '../support/guest.js';

const debugExit = [
  0x66, 0xba, 0x01, 0x05, //         mov  $0x501, %dx      (debug exit)
  0x31, 0xc0, //                     xor  %eax, %eax
  0xee, //                           out  %al, (%dx)
];

/** Writes `n` bytes (i & 0xff) to THR without ever reading LSR. */
function floodThr(n: number): Uint8Array {
  return Uint8Array.from([
    0x31, 0xc9, //                     xor  %ecx, %ecx
    0xbb, ...imm32(n), //              mov  $n, %ebx
    0x66, 0xba, 0xf8, 0x03, //         mov  $0x3f8, %dx      (THR, coalesced)
    0x89, 0xc8, //               1:    mov  %ecx, %eax
    0xee, //                           out  %al, (%dx)
    0xff, 0xc1, //                     inc  %ecx
    0x39, 0xd9, //                     cmp  %ebx, %ecx
    0x72, 0xf7, //                     jb   1b
    ...debugExit,
  ]);
}

/** Writes `n` bytes (i & 0xff) to THR, each after LSR shows THRE. */
function politeThr(n: number): Uint8Array {
  return Uint8Array.from([
    0x31, 0xc9, //                     xor  %ecx, %ecx
    0xbb, ...imm32(n), //              mov  $n, %ebx
    0x66, 0xba, 0xfd, 0x03, //   1:    mov  $0x3fd, %dx      (LSR, worker fast path)
    0xec, //                     2:    in   (%dx), %al
    0xa8, 0x20, //                     test $0x20, %al       (THRE)
    0x74, 0xfb, //                     jz   2b
    0x89, 0xc8, //                     mov  %ecx, %eax
    0x66, 0xba, 0xf8, 0x03, //         mov  $0x3f8, %dx      (THR, coalesced)
    0xee, //                           out  %al, (%dx)
    0xff, 0xc1, //                     inc  %ecx
    0x39, 0xd9, //                     cmp  %ebx, %ecx
    0x72, 0xea, //                     jb   1b
    ...debugExit,
  ]);
}

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// Coalesced PIO costs ~10 µs a byte under kvm_pvm (an LSR poll another exit), so the guests
// write hundreds of KiB into a UART with small bounds rather than megabytes into the defaults
// (the default 1 MiB limit is covered by the unit tests).
const LIMIT = 16 * 1024;
const HIGH_WATER = 4 * 1024;

/** A machine whose COM1 has small bounds (createMachine's serialTxLimit / serialTxHighWater). */
async function machineWithUart(): Promise<{ vm: Machine; serial: UartLine }> {
  const vm = await createMachine({ memory: '2 MiB', serialTxLimit: LIMIT, serialTxHighWater: HIGH_WATER });
  return { vm, serial: vm.serial(0) };
}

describe('UART output bounds on a real guest', () => {
  it('a guest flooding an unread serial line without looking at LSR gets LIMIT bytes buffered and the rest dropped, counted', async () => {
    const n = 256 * 1024;
    const { vm, serial } = await machineWithUart();
    await using _ = vm;
    vm.load(0x10000, floodThr(n));
    await vm.start({ entry: 0x10000n, stack: 0x100000n });
    expect(await vm.waitForExit()).toEqual({ reason: 'debug-exit', code: 0 });
    await new Promise((r) => setImmediate(r));
    const stats = serial.stats();
    expect(stats).toMatchObject({ txBytes: LIMIT, txDropped: n - LIMIT, txBuffered: LIMIT });
    expect(serial.readableLength).toBe(LIMIT);
    // What was kept is the start of the output, in order.
    const kept = serial.read() as Buffer;
    expect(kept.length).toBe(LIMIT);
    expect(kept.findIndex((b, i) => b !== (i & 0xff))).toBe(-1);
  });

  it('a guest that polls LSR waits at the high-water mark while nobody reads, then delivers everything', async () => {
    const n = 64 * 1024;
    const { vm, serial } = await machineWithUart();
    await using _ = vm;
    vm.load(0x10000, politeThr(n));
    await vm.start({ entry: 0x10000n, stack: 0x100000n });
    // Nobody reads: the guest fills the buffer to the high-water mark and no further.
    await until(() => serial.readableLength >= HIGH_WATER, 'the buffer to reach its high-water mark');
    // Held: half a second later it has written nothing more (unthrottled, it would have written
    // thousands of bytes in that time, and reached LIMIT and lost bytes soon after).
    await new Promise((r) => setTimeout(r, 100));
    const first = serial.stats();
    await new Promise((r) => setTimeout(r, 500));
    const held = serial.stats();
    expect(held.txBytes).toBe(first.txBytes);
    expect(held.txBytes).toBeLessThan(n);
    expect(held.txBuffered).toBeLessThan(LIMIT);
    expect(held.txDropped).toBe(0);
    // Now read everything: the guest goes on to the end.
    const chunks: Buffer[] = [];
    serial.on('data', (c: Buffer) => chunks.push(c));
    expect(await vm.waitForExit()).toEqual({ reason: 'debug-exit', code: 0 });
    await until(() => chunks.reduce((s, c) => s + c.length, 0) >= n, 'all output');
    const out = Buffer.concat(chunks);
    expect(out.length).toBe(n);
    expect(out.findIndex((b, i) => b !== (i & 0xff))).toBe(-1);
    expect(serial.stats()).toMatchObject({ txBytes: n, txDropped: 0 });
  });
});
