/*
 * Deterministic long output, 64-bit user mode: for i = 0 … n-1 (n in %rdi), update a hash kept
 * in guest memory (h = h * 31 + i, mod 2^64) and print "i h\n" in hex through the UART (polling
 * LSR.THRE). Then write 0 to the debug-exit port. The output depends on registers and memory
 * alike, so a restored snapshot that continues it proves both came back.
 */
        .set DEBUG_EXIT, 0x501
        .set HASH, 0x40000

        .code64
        .text
        .globl _start
_start:
        mov     %rdi, %r12          /* n */
        xor     %r13d, %r13d        /* i */
        movq    $7, HASH
1:      cmp     %r12, %r13
        jae     9f
        mov     HASH, %rax
        imul    $31, %rax, %rax
        add     %r13, %rax
        mov     %rax, HASH
        mov     %r13, %rax
        call    puthex
        mov     $' ', %al
        call    putc
        mov     HASH, %rax
        call    puthex
        mov     $'\n', %al
        call    putc
        inc     %r13
        jmp     1b
9:      xor     %eax, %eax
        mov     $DEBUG_EXIT, %dx
        out     %al, (%dx)
        ud2

/* puthex: %rax as 16 hex digits */
puthex: mov     %rax, %r14
        mov     $16, %r15d
2:      rol     $4, %r14
        mov     %r14d, %eax
        and     $0xf, %eax
        cmp     $10, %eax
        jb      3f
        add     $('a' - '0' - 10), %eax
3:      add     $'0', %eax
        call    putc
        dec     %r15d
        jnz     2b
        ret

#include "uart.inc"
