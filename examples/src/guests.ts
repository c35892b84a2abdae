/**
 * The kvm-hello-world guest (2 + 2, printed as "4\n" on port 0x3f8) for each CPU mode, as
 * bytes with the assembly beside each instruction. In user mode (CPL 3) HLT would fault, so
 * the guest ends by writing to the exit port instead.
 */
import type { CpuMode } from '@kvmpool/core';

export const SERIAL_PORT = 0x3f8;
export const EXIT_PORT = 0x501;

/** 16-bit code (real mode): operand size 16 by default. */
const HELLO_16 = [
  0xba, 0xf8, 0x03, //       mov  $0x3f8, %dx
  0x00, 0xd8, //             add  %bl, %al
  0x04, 0x30, //             add  $'0', %al
  0xee, //                   out  %al, (%dx)
  0xb0, 0x0a, //             mov  $'\n', %al
  0xee, //                   out  %al, (%dx)
  0xf4, //                   hlt
];

/** 32/64-bit code: the 16-bit `mov` to %dx needs the operand-size prefix. */
const HELLO_32 = [
  0x66, 0xba, 0xf8, 0x03, // mov  $0x3f8, %dx
  0x00, 0xd8, //             add  %bl, %al
  0x04, 0x30, //             add  $'0', %al
  0xee, //                   out  %al, (%dx)
  0xb0, 0x0a, //             mov  $'\n', %al
  0xee, //                   out  %al, (%dx)
  0xf4, //                   hlt
];

const HELLO_USER = [
  ...HELLO_32.slice(0, -1),
  0x66, 0xba, 0x01, 0x05, // mov  $0x501, %dx
  0x30, 0xc0, //             xor  %al, %al
  0xee, //                   out  %al, (%dx)     exit code 0
];

export function helloGuest(mode: CpuMode): Uint8Array {
  if (mode === 'real') return Uint8Array.from(HELLO_16);
  if (mode === 'user') return Uint8Array.from(HELLO_USER);
  return Uint8Array.from(HELLO_32);
}

/**
 * CPUID 0x40000000 from user mode: stores EBX, ECX, EDX (the hypervisor signature) in a
 * buffer and writes the 12 bytes to the serial port with one `rep outsb`.
 */
export function cpuidGuest(buffer: number): Uint8Array {
  const b = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
  return Uint8Array.from([
    0xb8, ...b(0x4000_0000), //   mov  $0x40000000, %eax
    0x31, 0xc9, //                xor  %ecx, %ecx
    0x0f, 0xa2, //                cpuid
    0xbe, ...b(buffer), //        mov  $buffer, %esi
    0x89, 0x1e, //                mov  %ebx, (%rsi)
    0x89, 0x4e, 0x04, //          mov  %ecx, 4(%rsi)
    0x89, 0x56, 0x08, //          mov  %edx, 8(%rsi)
    0xb9, ...b(12), //            mov  $12, %ecx
    0x66, 0xba, 0xf8, 0x03, //    mov  $0x3f8, %dx
    0xf3, 0x6e, //                rep outsb (%rsi), (%dx)
    0x66, 0xba, 0x01, 0x05, //    mov  $0x501, %dx
    0x30, 0xc0, //                xor  %al, %al
    0xee, //                      out  %al, (%dx)
  ]);
}
