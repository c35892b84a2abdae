/*
 * kvmpool-linux.h — for static Linux programs run by kvmpool's LinuxPool.
 *
 * kvmpool_checkpoint(): with the pool option `start: 'checkpoint'`, the state at this call is
 * the pristine state every run starts from: what the program did before it (load data, build
 * tables, start an interpreter) is paid once per worker, not once per call. It returns 0, in the
 * first run and in every later one. Outside kvmpool (a plain Linux kernel) the syscall number is
 * unknown and it returns -ENOSYS, so the same binary runs anywhere.
 */
#ifndef KVMPOOL_LINUX_H
#define KVMPOOL_LINUX_H

#define KVMPOOL_SYS_CHECKPOINT 0x4b500001L

static inline long kvmpool_checkpoint(void) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(KVMPOOL_SYS_CHECKPOINT) : "rcx", "r11", "memory");
  return ret;
}

#endif
