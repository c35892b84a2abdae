/*
 * SMP guest, 64-bit user mode (CPL 3), no guest kernel. Entered on every vCPU with
 *   rdi = vCPU index, rsi = vCPU count, rdx = n.
 * Each vCPU adds i*i (mod 2^64) for i = index, index+count, … < n, adds its share to the
 * shared total with a locked add, and prints "vcpu <index>: <share>" through the 16550 UART
 * (polling LSR.THRE before each byte) under a spinlock taken with xchg. Then it writes the
 * halt port, which stops this vCPU.
 */
        .set HALT_PORT, 0x500
        .set TOTAL, 0x30000         /* u64: sum of the shares */
        .set DONE, 0x30008          /* u64: vCPUs finished */
        .set PRINT_LOCK, 0x30010    /* u64: 0 free, 1 taken */

        .code64
        .text
        .globl _start
_start:
        mov     %rdx, %r12          /* n */
        mov     %rdi, %r13          /* index */
        xor     %eax, %eax          /* share */
        mov     %rdi, %rcx          /* i */
1:      cmp     %r12, %rcx
        jae     2f
        mov     %rcx, %r8
        imul    %r8, %r8
        add     %r8, %rax
        add     %rsi, %rcx
        jmp     1b
2:      mov     %rax, %r14
        lock addq %r14, TOTAL

        /* take the print lock */
3:      mov     $1, %r9d
        xchg    %r9, PRINT_LOCK
        test    %r9, %r9
        jz      4f
        pause
        jmp     3b
4:      lea     msg_vcpu(%rip), %rbx
        call    puts
        mov     %r13, %rax
        call    putdec
        lea     msg_sep(%rip), %rbx
        call    puts
        mov     %r14, %rax
        call    putdec
        mov     $'\n', %al
        call    putc
        movq    $0, PRINT_LOCK      /* a plain store releases on x86 */

        lock incq DONE
        mov     $HALT_PORT, %dx
        out     %al, (%dx)
        ud2                         /* not reached: the halt port stops this vCPU */



/* putdec: %rax as unsigned decimal */
putdec: mov     %rsp, %r11
        sub     $32, %rsp
        mov     %rsp, %rbx
        add     $31, %rbx
        movb    $0, (%rbx)
        mov     $10, %r8
7:      xor     %edx, %edx
        div     %r8
        add     $'0', %dl
        dec     %rbx
        mov     %dl, (%rbx)
        test    %rax, %rax
        jnz     7b
        call    puts
        mov     %r11, %rsp
        ret

#include "uart.inc"

msg_vcpu: .asciz "vcpu "
msg_sep:  .asciz ": "
