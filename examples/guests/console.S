/*
 * Console guest, 64-bit user mode (CPL 3). Prints a banner through the 16550 UART, then
 * echoes every byte it receives (polling LSR.DR, answered in the vCPU thread from shared
 * state, so waiting costs no main-thread round trip). Carriage return echoes as CR LF.
 * Ctrl-D (0x04) says goodbye and writes exit code 0 to the debug-exit port.
 */
        .set DEBUG_EXIT, 0x501

        .code64
        .text
        .globl _start
_start:
        lea     banner(%rip), %rbx
        call    puts
1:      mov     $UART_LSR, %dx
        in      (%dx), %al
        test    $LSR_DR, %al
        jz      1b
        mov     $UART_RBR, %dx
        in      (%dx), %al
        cmp     $0x04, %al
        je      3f
        cmp     $'\r', %al
        jne     2f
        call    putc
        mov     $'\n', %al
2:      call    putc
        jmp     1b
3:      lea     bye(%rip), %rbx
        call    puts
        xor     %eax, %eax
        mov     $DEBUG_EXIT, %dx
        out     %al, (%dx)
        ud2



#include "uart.inc"

banner: .asciz "kvmpool console guest (64-bit user mode). Type; Ctrl-D ends.\r\n"
bye:    .asciz "\r\nbye\r\n"
