/* kvmpool guest runtime: host calls over port I/O, and (without libc) the memory and string helpers. */
#include "kvmpool.h"

#ifdef KVMPOOL_LIBC
void _kvmpool_libc_flush(void);
#endif

static volatile struct kvmpool_call *const call_area = (volatile struct kvmpool_call *)KVMPOOL_CALL_AREA;

static inline void out_hostcall(void) {
  __asm__ volatile("outb %%al, %%dx" : : "a"(0), "d"((uint16_t)KVMPOOL_PORT_HOSTCALL) : "memory");
}

long kvmpool_host_call(const char *name, const void *arg, size_t arg_len, void *result, size_t result_cap) {
  call_area->op = KVMPOOL_OP_CALL;
  call_area->a0 = (uint64_t)name;
  call_area->a1 = strlen(name);
  call_area->a2 = (uint64_t)arg;
  call_area->a3 = arg_len;
  call_area->a4 = (uint64_t)result;
  call_area->a5 = result_cap;
  out_hostcall();
  return call_area->ret;
}

void kvmpool_print(const char *text, size_t len) {
  call_area->op = KVMPOOL_OP_PRINT;
  call_area->a0 = (uint64_t)text;
  call_area->a1 = len;
  out_hostcall();
}

void kvmpool_puts(const char *text) {
  kvmpool_print(text, strlen(text));
}

void kvmpool_abort(const char *message) {
#ifdef KVMPOOL_LIBC
  _kvmpool_libc_flush(); /* what the call printed before it gave up */
#endif
  call_area->op = KVMPOOL_OP_ABORT;
  call_area->a0 = (uint64_t)message;
  call_area->a1 = strlen(message);
  out_hostcall();
  for (;;) __asm__ volatile("ud2");
}

#ifndef KVMPOOL_LIBC
/* The copy loops are written with string instructions: gcc would turn a plain C loop back into
   a call to the very function it implements. */
void *memcpy(void *dst, const void *src, size_t n) {
  void *ret = dst;
  __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
  return ret;
}

void *memmove(void *dst, const void *src, size_t n) {
  void *ret = dst;
  if ((uintptr_t)dst <= (uintptr_t)src || (uintptr_t)dst >= (uintptr_t)src + n) {
    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
  } else {
    const char *s = (const char *)src + n - 1;
    char *d = (char *)dst + n - 1;
    __asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  }
  return ret;
}

void *memset(void *dst, int c, size_t n) {
  void *ret = dst;
  __asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(c) : "memory");
  return ret;
}

int memcmp(const void *a, const void *b, size_t n) {
  const unsigned char *x = a, *y = b;
  for (; n; n--, x++, y++)
    if (*x != *y) return *x - *y;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}
#endif
