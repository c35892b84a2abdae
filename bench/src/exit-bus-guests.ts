/**
 * Guest programs of the `exit-bus` benchmark: 64-bit user-mode code (CPL 3), as bytes with
 * their assembly. The C baseline (bench/c/exit-bus.c) runs the same OUT_LOOP, IN_LOOP and
 * UART_BULK code.
 */

/** Port the OUT loops write to (a sink device), and the marker port of FAST_IN_MARKED. */
export const SINK_PORT = 0x3f0;
/** An OUT here ends UART_BULK (registered with `stopsVcpu`). */
export const DONE_PORT = 0x3f1;
/** Port the IN loops read. */
export const IN_PORT = 0x3f2;
/** COM1: THR is at offset 0. */
export const UART_PORT = 0x3f8;
/** Where UART_BULK_REP takes its 1 KiB of source bytes from. */
export const REP_SOURCE = 0x100000n;
export const REP_CHUNK = 1024;

function imm32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** OUT to SINK_PORT forever: one exit per iteration. */
export const OUT_LOOP = Uint8Array.from([
  0x66, 0xba, 0xf0, 0x03, //       mov  $0x3f0, %dx
  0xee, //                    1:   out  %al, (%dx)
  0xeb, 0xfd, //                   jmp  1b
]);

/** IN from IN_PORT forever: one exit per iteration. */
export const IN_LOOP = Uint8Array.from([
  0x66, 0xba, 0xf2, 0x03, //       mov  $0x3f2, %dx
  0xec, //                    1:   in   (%dx), %al
  0xeb, 0xfd, //                   jmp  1b
]);

/**
 * Forever: `k` INs from IN_PORT, then one OUT to SINK_PORT (a marker the host timestamps:
 * reads answered in the vCPU worker never reach the main thread). `k + 1` exits per round.
 */
export function fastInMarked(k: number): Uint8Array {
  return Uint8Array.from([
    0xb9, ...imm32(k), //       2:   mov  $k, %ecx
    0x66, 0xba, 0xf2, 0x03, //       mov  $0x3f2, %dx
    0xec, //                    1:   in   (%dx), %al
    0xff, 0xc9, //                   dec  %ecx
    0x75, 0xfb, //                   jnz  1b
    0x66, 0xba, 0xf0, 0x03, //       mov  $0x3f0, %dx
    0xee, //                         out  %al, (%dx)
    0xeb, 0xeb, //                   jmp  2b
  ]);
}

/**
 * Writes %rcx bytes to the UART's THR, one `out` each (the byte is the low byte of the
 * down-counter: n, n-1, … 1 mod 256), then OUTs to DONE_PORT.
 */
export const UART_BULK = Uint8Array.from([
  0x66, 0xba, 0xf8, 0x03, //       mov  $0x3f8, %dx
  0x88, 0xc8, //              1:   mov  %cl, %al
  0xee, //                         out  %al, (%dx)
  0xff, 0xc9, //                   dec  %ecx
  0x75, 0xf9, //                   jnz  1b
  0x66, 0xba, 0xf1, 0x03, //       mov  $0x3f1, %dx
  0xee, //                         out  %al, (%dx)
]);

/** The byte UART_BULK writes at position `i` (0-based) of an `n`-byte run. */
export function uartBulkByte(n: number, i: number): number {
  return (n - i) & 0xff;
}

/**
 * Writes %rcx bytes (a multiple of REP_CHUNK) to the UART's THR with `rep outsb`, REP_CHUNK
 * bytes from REP_SOURCE at a time, then OUTs to DONE_PORT.
 */
export const UART_BULK_REP = Uint8Array.from([
  0x89, 0xcb, //                   mov  %ecx, %ebx
  0x66, 0xba, 0xf8, 0x03, //       mov  $0x3f8, %dx
  0xbe, ...imm32(Number(REP_SOURCE)), // 2: mov $REP_SOURCE, %esi
  0xb9, ...imm32(REP_CHUNK), //    mov  $REP_CHUNK, %ecx
  0xf3, 0x6e, //                   rep outsb %ds:(%rsi), (%dx)
  0x81, 0xeb, ...imm32(REP_CHUNK), // sub $REP_CHUNK, %ebx
  0x75, 0xec, //                   jnz  2b
  0x66, 0xba, 0xf1, 0x03, //       mov  $0x3f1, %dx
  0xee, //                         out  %al, (%dx)
]);

/** The REP_CHUNK source bytes of UART_BULK_REP. */
export function repSource(): Uint8Array {
  return Uint8Array.from({ length: REP_CHUNK }, (_, i) => (i * 7 + 1) & 0xff);
}

/** Spins forever at CPL 3 (no exits), counting in %rax. */
export const SPIN = Uint8Array.from([
  0x48, 0xff, 0xc0, //        1:   inc  %rax
  0xeb, 0xfb, //                   jmp  1b
]);
