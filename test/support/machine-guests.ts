/** Guest programs (user mode, CPL 3) for exit-bus tests, as bytes with their assembly. */
import { imm32 } from './guest.js';
import { bytesToValue, type Device } from '@kvmpool/devices';

/** DATA_PORT and READ_PORT take 32-bit accesses: a device there spans 4 ports (the bus routes an access only to a device that holds all of it). */
export const DATA_PORT = 0x3f0;
/** An OUT here stops the vCPU that made it (registered with `stopsVcpu`). */
export const DONE_PORT = 0x3ef;
export const READ_PORT = 0x3f4;

const done = [
  0x66, 0xba, 0xef, 0x03, //   mov  $DONE_PORT, %dx
  0xee, //                     out  %al, (%dx)
];

/** vCPU `rdi` posts `n` 32-bit writes (rdi << 24 | seq) to DATA_PORT, then stops. */
export function postedWrites(n: number): Uint8Array {
  return Uint8Array.from([
    0x66, 0xba, 0xf0, 0x03, //   mov  $DATA_PORT, %dx
    0x89, 0xf8, //               mov  %edi, %eax
    0xc1, 0xe0, 0x18, //         shl  $24, %eax
    0xb9, ...imm32(n), //        mov  $n, %ecx
    0xef, //               1:    out  %eax, (%dx)
    0xff, 0xc0, //               inc  %eax
    0xff, 0xc9, //               dec  %ecx
    0x75, 0xf9, //               jnz  1b
    ...done,
  ]);
}

/** vCPU `rdi` does `n` × (in READ_PORT → %eax; out (rdi << 24 | %eax) to DATA_PORT), then stops. */
export function readsEchoed(n: number): Uint8Array {
  return Uint8Array.from([
    0x89, 0xfb, //               mov  %edi, %ebx
    0xc1, 0xe3, 0x18, //         shl  $24, %ebx
    0xb9, ...imm32(n), //        mov  $n, %ecx
    0x66, 0xba, 0xf4, 0x03, //1: mov  $READ_PORT, %dx
    0xed, //                     in   (%dx), %eax
    0x09, 0xd8, //               or   %ebx, %eax
    0x66, 0xba, 0xf0, 0x03, //   mov  $DATA_PORT, %dx
    0xef, //                     out  %eax, (%dx)
    0xff, 0xc9, //               dec  %ecx
    0x75, 0xf0, //               jnz  1b
    ...done,
  ]);
}

/** Spins forever at CPL 3 (native speed), counting in %rax. */
export const SPIN = Uint8Array.from([
  0x48, 0xff, 0xc0, //   1:  inc  %rax
  0xeb, 0xfb, //             jmp  1b
]);

/** Reads READ_PORT forever. */
export const READ_FOREVER = Uint8Array.from([
  0x66, 0xba, 0xf4, 0x03, //   mov  $READ_PORT, %dx
  0xed, //               1:    in   (%dx), %eax
  0xeb, 0xfd, //               jmp  1b
]);

/** A device that keeps every value written to it (as a little-endian number) and reads as 0. */
export class Recorder implements Device {
  readonly name = 'recorder';
  readonly values: number[] = [];
  read(_o: number, d: Uint8Array): void {
    d.fill(0);
  }
  write(_o: number, d: Uint8Array): void {
    this.values.push(bytesToValue(d));
  }
}
