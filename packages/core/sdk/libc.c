/*
 * kvmpool guest runtime, libc part (built with musl, -DKVMPOOL_LIBC): the main() musl's own
 * start code calls once, at VM start, after it has set up TLS, the stack protector, environ and
 * stdio from the process stack the host built. main hands control to the host, which captures
 * the state here as the pristine one: every call then enters _kvmpool_entry (start.S) on a
 * stack below this frame, and main never runs again.
 */
#include <stdio.h>
#include <stdio_ext.h>
#include "kvmpool.h"

static volatile struct kvmpool_call *const call_area = (volatile struct kvmpool_call *)KVMPOOL_CALL_AREA;

/* After each exported function (start.S) and before an abort: what printf buffered reaches the host. */
void _kvmpool_libc_flush(void) {
  if (__fpending(stdout)) fflush(stdout); /* fflush writes the FILE even when empty: a page per call to reset */
}

int main(void) {
  /* A line to stdout is one print; _kvmpool_libc_flush sends a call's unfinished last line. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  call_area->value = 0;
  __asm__ volatile("outb %%al, %%dx" : : "a"(0), "d"((uint16_t)KVMPOOL_PORT_RETURN) : "memory");
  for (;;) __asm__ volatile("ud2"); /* the host never resumes past the hand-over */
}
