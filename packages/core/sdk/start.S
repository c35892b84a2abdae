/*
 * Entry code for kvmpool sandbox guests. The host enters at _kvmpool_entry (the ELF entry)
 * with the exported function's address in %r15 and its arguments in %rdi, %rsi, %rdx, %rcx
 * (System V order), and %rsp 16-byte aligned. The function's return value goes to the call
 * area, then an OUT to the return port hands control back to the host. With libc, stdout is
 * flushed first (libc.c).
 */
        .set CALL_AREA_VALUE, 0xc000 + 64
        .set PORT_RETURN, 0x701

        .section .text.entry, "ax"
        .globl _kvmpool_entry
        .type _kvmpool_entry, @function
_kvmpool_entry:
        call    *%r15
        mov     %rax, CALL_AREA_VALUE
#ifdef KVMPOOL_LIBC
        call    _kvmpool_libc_flush     /* stdout's buffered text to the host (libc.c) */
#endif
        mov     $PORT_RETURN, %dx
        .globl  _kvmpool_return
        .type   _kvmpool_return, @function
_kvmpool_return:                /* the host knows this OUT: a return here needs no completion */
        out     %al, (%dx)
        ud2                     /* the host never resumes past the return */
        .size _kvmpool_entry, . - _kvmpool_entry
