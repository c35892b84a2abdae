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
 * Build: gcc -ffreestanding -nostdlib -static -no-pie -fno-pic -O2 -fno-stack-protector \
 *          -fcf-protection=none -I sdk -T sdk/kvmpool.ld sdk/start.S sdk/runtime.c your.c
 * (or compileGuest() from @kvmpool/core).
 */
#ifndef KVMPOOL_H
#define KVMPOOL_H

#include <stddef.h>
#include <stdint.h>

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

/* Freestanding helpers (gcc may also emit calls to the mem* ones). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
