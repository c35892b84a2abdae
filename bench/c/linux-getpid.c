/*
 * Guest of the `linux` benchmark's syscall-exit case: a static musl program that reads N (a
 * decimal number) from stdin, makes N getpid syscalls and prints the sum of the pids.
 *
 * Built with `musl-gcc -static -O2` (bench/src/linux-guests.ts) and run in a LinuxPool with the
 * default warm start, which is captured at the first read of stdin: a call's time is the read,
 * the N syscalls, the write and exit_group, plus the pool's round trip. The benchmark times
 * calls with N = K and N = 0 and takes (t(K) - t(0)) / K as the cost of one syscall.
 *
 * The syscall is inline (`syscall` with rax = 39), not musl's getpid(), so every iteration is
 * exactly one `syscall` instruction and nothing is cached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long raw_getpid(void) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(39L) : "rcx", "r11", "memory");
  return r;
}

int main(void) {
  char buf[32];
  ssize_t got = read(0, buf, sizeof buf - 1);
  if (got < 0) return 2;
  buf[got] = '\0';
  long n = strtol(buf, NULL, 10);
  long sum = 0;
  for (long i = 0; i < n; i++) sum += raw_getpid();
  printf("%ld\n", sum);
  return 0;
}
