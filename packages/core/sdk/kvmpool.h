/*
 * kvmpool guest SDK. A sandbox guest is a static x86-64 ELF that runs in 64-bit user mode
 * (CPL 3) with no guest kernel: the host sets segments, page tables and the stack by ioctl.
 *
 * Export a function with KVMPOOL_EXPORT; the host calls it by name as
 *     long fn(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap);
 * It returns the number of output bytes written (≤ out_cap), or a negative error code that
 * the caller receives as a GuestError. An export named `kvmpool_init` (same signature, no
 * input) runs once before the VM's state is captured: every call starts from that state.
 *
 * What a guest sends the host is bounded per call: kvmpool_print keeps 64 KiB of text in at
 * most 1024 prints (the rest is dropped and counted in the call's `printsDropped`), an abort
 * message is cut to 4 KiB, and a host-function name longer than 256 bytes fails the call
 * (GuestLimitError). Every pointer/length the host receives must lie inside guest memory.
 * Low memory is read-only except the call area: the page tables, GDT and TSS at
 * 0x1000–0xafff cannot be written (the write crashes the call).
 *
 * libc. compileGuest() builds with musl (Debian package musl-tools: musl-gcc) unless told
 * `libc: 'none'`, and defines KVMPOOL_LIBC: the guest has the C library — malloc/free,
 * printf/snprintf, string.h, stdlib.h (qsort…), math.h (linked with -lm). musl starts once, at
 * VM start, from a process stack the host builds (TLS, environ, auxv), before kvmpool_init; its
 * syscalls are served by the host's syscall layer (an LSTAR stub at 0xb000, read-only, with a
 * scratch page at 0xd000). What that gives a guest:
 *   - stdout and stderr: what printf/puts/fputs write reaches the host as prints, bounded as
 *     above; stdout is line-buffered (a line is one print) and flushed after every exported
 *     function and before kvmpool_abort.
 *   - the heap: brk and mmap from the memory between the image and the stack (stack: 1 MiB at
 *     most, just below the input region). At its end malloc returns NULL (ENOMEM); the host
 *     allocates nothing for it.
 *   - every call starts from the state after kvmpool_init: what one call mallocs, frees or
 *     writes (static data, heap, stdio buffers, errno) is gone in the next.
 *   - page 0 is not mapped: a NULL dereference crashes the call.
 *   - no files (open: ENOENT), no threads, no signals delivered; exit() and abort() end the call
 *     with a GuestError ("called exit(n)", "killed by SIGABRT").
 * Without libc (`libc: 'none'`: -ffreestanding -nostdlib) the runtime provides memcpy, memmove,
 * memset, memcmp and strlen, and nothing else.
 *
 * Build by hand (what compileGuest() runs):
 *   with musl: musl-gcc -DKVMPOOL_LIBC -static -no-pie -fno-pic -O2 -fno-stack-protector \
 *          -fcf-protection=none -Wl,-Ttext-segment=0x100000 -I sdk sdk/start.S sdk/runtime.c \
 *          sdk/libc.c your.c -lm   (compileGuest() then keeps only the guest's own functions global)
 *   freestanding: gcc -ffreestanding -nostdlib -static -no-pie -fno-pic -O2 -fno-stack-protector \
 *          -fcf-protection=none -I sdk -T sdk/kvmpool.ld sdk/start.S sdk/runtime.c your.c
 */
#ifndef KVMPOOL_H
#define KVMPOOL_H

#include <stddef.h>
#include <stdint.h>
#ifdef KVMPOOL_LIBC
#include <string.h>
#endif

#define KVMPOOL_EXPORT __attribute__((used, noinline, visibility("default")))

/* The page shared with the host for calls (guest-physical = guest-virtual). */
#define KVMPOOL_CALL_AREA 0xc000UL
#define KVMPOOL_PORT_HOSTCALL 0x700
#define KVMPOOL_PORT_RETURN 0x701

#define KVMPOOL_OP_PRINT 1
#define KVMPOOL_OP_ABORT 2
#define KVMPOOL_OP_CALL 3

struct kvmpool_call {
  uint64_t op;
  uint64_t a0, a1, a2, a3, a4, a5;
  int64_t ret;    /* the host's answer */
  int64_t value;  /* the exported function's return value (written by the entry code) */
};

/*
 * Calls host function `name` with `arg_len` bytes at `arg`; the host writes its result (at most
 * `result_cap` bytes) to `result`. Returns the result length. If the host function throws, the
 * whole guest call fails on the host side and this does not return.
 */
long kvmpool_host_call(const char *name, const void *arg, size_t arg_len, void *result, size_t result_cap);

/* Sends text to the host: the pool passes it to its `onPrint(text, fn)` option (bounded per call, see above). */
void kvmpool_print(const char *text, size_t len);
void kvmpool_puts(const char *text);

/* Ends this call with an error carrying `message`. */
__attribute__((noreturn)) void kvmpool_abort(const char *message);

#ifndef KVMPOOL_LIBC
/* Freestanding helpers (gcc may also emit calls to the mem* ones); with libc, string.h's. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
#endif

#endif
