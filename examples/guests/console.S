/*
 * Console guest, 64-bit user mode (CPL 3). Prints a banner through the 16550 UART, then
 * echoes every byte it receives (polling LSR.DR, answered in the vCPU thread from shared
 * state, so waiting costs no main-thread round trip). Carriage return echoes as CR LF.
 * Ctrl-D (0x04) says goodbye and writes exit code 0 to the debug-exit port.
 */
        .set UART_RBR, 0x3f8
        .set UART_THR, 0x3f8
        .set UART_LSR, 0x3fd
        .set LSR_DR, 0x01
        .set LSR_THRE, 0x20
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

putc:   mov     %eax, %r10d
        mov     $UART_LSR, %dx
4:      in      (%dx), %al
        test    $LSR_THRE, %al
        jz      4b
        mov     %r10d, %eax
        mov     $UART_THR, %dx
        out     %al, (%dx)
        ret

puts:   movzbl  (%rbx), %eax
        test    %al, %al
        jz      5f
        call    putc
        inc     %rbx
        jmp     puts
5:      ret

banner: .asciz "kvmpool console guest (64-bit user mode). Type; Ctrl-D ends.\r\n"
bye:    .asciz "\r\nbye\r\n"
