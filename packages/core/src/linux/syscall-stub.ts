/**
 * The guest side of kvmpool's syscall layer: a stub at LSTAR that hands a `syscall` to the host
 * through one port exit, and the MSRs that point `syscall` at it. There is no guest kernel.
 *
 * The stub stores the syscall's number and arguments in a scratch page, does one `out` (the
 * exit the vCPU thread serves, linux-vm.ts), loads the result the host left in the scratch page
 * into rax and returns. It touches no other register and never the program's stack (leaf
 * functions keep data in the 128-byte red zone below rsp across an inline `syscall`).
 *
 * Where it runs: on VT-x/AMD-V `syscall` enters at CPL 0 and the stub returns with `sysretq`;
 * kvm_pvm runs `syscall` at CPL 3 (CS keeps RPL 3, HOST-FACTS) where `sysretq` is #GP, so the
 * stub tests CS's RPL and returns with `popfq` of r11 (on a one-slot stack of its own in the
 * scratch page) and `jmp *%rcx`. The same bytes serve both.
 *
 * Memory: the stub's page is read-only to CPL 3 (cpu/modes.ts `protectedEnd`), so the program
 * cannot change code that runs at CPL 0 on VT-x; the scratch page is writable (it must be, at
 * CPL 3 on kvm_pvm) and holds nothing but the program's own registers, which the host treats
 * as hostile like every other guest value. Ordering: the vCPU is stopped in KVM_RUN's exit while
 * the host reads and writes the scratch page, and the same thread runs both, so plain accesses
 * are ordered by the ioctl itself.
 */
import type { Vcpu } from '../vcpu.js';

/** Guest address of the stub (one page, read-only to the program). */
export const STUB_ADDRESS = 0xb000n;
/** Guest address of the scratch page. */
export const SCRATCH_ADDRESS = 0xc000;
/** The port the stub's `out %al` uses (an 8-bit immediate: the stub must not clobber rdx). */
export const SYSCALL_PORT = 0xf5;

/** Byte offsets in the scratch page. */
export const SCRATCH = {
  /** rax: the syscall number in, the result out. */
  NR: 0x00,
  ARGS: 0x08, // rdi, rsi, rdx, r10, r8, r9 at ARGS + 8 * i
  /** rcx: where the program resumes (the instruction after its `syscall`). */
  RIP: 0x38,
  CS: 0x40,
  SAVED_RSP: 0x48,
} as const;

const d32 = (a: number): number[] => [a & 0xff, (a >> 8) & 0xff, (a >> 16) & 0xff, (a >> 24) & 0xff];
const at = (off: number): number[] => [0x25, ...d32(SCRATCH_ADDRESS + off)]; // SIB: no base, no index, disp32

/** The CPL 3 return path: 28 bytes, jumped over at CPL 0. */
const CPL3_RETURN = [
  0x48, 0x89, 0x24, ...at(SCRATCH.SAVED_RSP), //  mov %rsp, SAVED_RSP
  0x48, 0xc7, 0xc4, ...d32(SCRATCH_ADDRESS + 0x1000), //  mov $scratch_end, %rsp
  0x41, 0x53, //                                 push %r11          (RFLAGS at the syscall)
  0x9d, //                                       popfq
  0x48, 0x8b, 0x24, ...at(SCRATCH.SAVED_RSP), //  mov SAVED_RSP, %rsp
  0xff, 0xe1, //                                 jmp *%rcx
];

/** The stub's bytes, with the assembly beside each instruction. */
export const STUB_CODE = Uint8Array.from([
  0x48, 0x89, 0x04, ...at(SCRATCH.NR), //        mov %rax, NR
  0x48, 0x89, 0x3c, ...at(SCRATCH.ARGS), //      mov %rdi, ARGS+0
  0x48, 0x89, 0x34, ...at(SCRATCH.ARGS + 8), //  mov %rsi, ARGS+8
  0x48, 0x89, 0x14, ...at(SCRATCH.ARGS + 16), // mov %rdx, ARGS+16
  0x4c, 0x89, 0x14, ...at(SCRATCH.ARGS + 24), // mov %r10, ARGS+24
  0x4c, 0x89, 0x04, ...at(SCRATCH.ARGS + 32), // mov %r8,  ARGS+32
  0x4c, 0x89, 0x0c, ...at(SCRATCH.ARGS + 40), // mov %r9,  ARGS+40
  0x48, 0x89, 0x0c, ...at(SCRATCH.RIP), //       mov %rcx, RIP
  0xe6, SYSCALL_PORT, //                         out %al, $SYSCALL_PORT   (the host serves it)
  0x48, 0x8b, 0x04, ...at(SCRATCH.NR), //        mov NR, %rax             (the result)
  0x8c, 0x0c, ...at(SCRATCH.CS), //              mov %cs, CS
  0xf6, 0x04, ...at(SCRATCH.CS), 0x03, //        testb $3, CS
  0x74, CPL3_RETURN.length, //                   jz cpl0
  ...CPL3_RETURN,
  0x48, 0x0f, 0x07, //                   cpl0: sysretq
]);

/** Offset of the instruction after the stub's `out`: where a served syscall resumes. */
export const STUB_RESUME_OFFSET = 8 * 8 + 2;

const MSR = { STAR: 0xc000_0081, LSTAR: 0xc000_0082, CSTAR: 0xc000_0083, FMASK: 0xc000_0084 } as const;

/**
 * Points `syscall` at the stub: STAR (kernel CS 0x08; sysret to user CS 0x1b), LSTAR, and FMASK
 * 0 (RFLAGS passes unchanged, so the CPL 3 path can restore it exactly). EFER.SCE is set by the
 * caller with the rest of the mode (linux-vm.ts).
 */
export function enableSyscalls(vcpu: Vcpu): void {
  vcpu.setMsrs([
    { index: MSR.STAR, data: (0x08n << 48n) | (0x08n << 32n) },
    { index: MSR.LSTAR, data: STUB_ADDRESS },
    { index: MSR.CSTAR, data: STUB_ADDRESS },
    { index: MSR.FMASK, data: 0n },
  ]);
}

/**
 * CPU exceptions become signals: an IDT of 32 interrupt gates (CPL 0, on the stack TSS.RSP0
 * gives, in the scratch page below the stub's own slot) whose handlers each do
 * `mov $vector, %al; out %al, $FAULT_PORT; hlt`. The host then ends the call as killed by the
 * signal Linux would send (FAULT_SIGNALS) and reads the faulting rip from the exception frame.
 * The handlers run at CPL 0 (emulated on kvm_pvm: a few instructions, once per fatal fault).
 */
export const FAULT_PORT = 0xf6;
export const FAULT_HANDLERS = STUB_ADDRESS + 0x200n;
export const IDT_ADDRESS = STUB_ADDRESS + 0x400n;
export const IDT_VECTORS = 32;
/** TSS.RSP0: where the CPU pushes the exception frame (ss, rsp, rflags, cs, rip[, error code]). */
export const FAULT_STACK = SCRATCH_ADDRESS + 0xf00;
/** Vectors that push an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX). */
export const ERROR_CODE_VECTORS: ReadonlySet<number> = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
/** The signal Linux sends for each exception at CPL 3 (arch/x86/kernel/traps.c); SIGSEGV otherwise. */
export const FAULT_SIGNALS: Readonly<Record<number, number>> = { 0: 8, 1: 5, 3: 5, 4: 11, 5: 11, 6: 4, 7: 8, 16: 8, 17: 7, 19: 8 };
export const VECTOR_NAMES: readonly string[] = [
  'divide error (#DE)', 'debug (#DB)', 'NMI', 'breakpoint (#BP)', 'overflow (#OF)', 'bound range (#BR)', 'invalid opcode (#UD)',
  'device not available (#NM)', 'double fault (#DF)', 'coprocessor segment overrun', 'invalid TSS (#TS)', 'segment not present (#NP)',
  'stack fault (#SS)', 'general protection (#GP)', 'page fault (#PF)', 'reserved', 'x87 error (#MF)', 'alignment check (#AC)',
  'machine check (#MC)', 'SIMD error (#XM)', 'virtualization (#VE)', 'control protection (#CP)',
];

/** The handlers' bytes (8 per vector) and the IDT's (16 per gate), to write at FAULT_HANDLERS and IDT_ADDRESS. */
export function faultTables(): { handlers: Uint8Array; idt: Uint8Array } {
  const handlers = new Uint8Array(8 * IDT_VECTORS);
  const idt = new Uint8Array(16 * IDT_VECTORS);
  const v = new DataView(idt.buffer);
  for (let n = 0; n < IDT_VECTORS; n++) {
    //                mov $n, %al   out %al, $FAULT_PORT   hlt   jmp .-1 (the hlt)  nop
    handlers.set([0xb0, n, 0xe6, FAULT_PORT, 0xf4, 0xeb, 0xfd, 0x90], 8 * n);
    const at = Number(FAULT_HANDLERS) + 8 * n;
    v.setUint16(16 * n, at & 0xffff, true);
    v.setUint16(16 * n + 2, 0x08, true); // kernel code selector
    v.setUint8(16 * n + 5, 0x8e); // present, DPL 0, 64-bit interrupt gate
    v.setUint16(16 * n + 6, at >>> 16, true);
  }
  return { handlers, idt };
}
