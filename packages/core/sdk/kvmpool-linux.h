/*
 * kvmpool-linux.h — for static Linux programs run by kvmpool's LinuxPool.
 *
 * kvmpool_checkpoint(): with the pool option `start: 'checkpoint'`, the state at this call is
 * the pristine state every run starts from: what the program did before it (load data, build
 * tables, start an interpreter) is paid once per worker, not once per call. It returns 0, in the
 * first run and in every later one. Outside kvmpool (a plain Linux kernel) the syscall number is
 * unknown and it returns -ENOSYS, so the same binary runs anywhere.
 *
 * kvmpool_host_call(): runs the pool's host function `name` (LinuxPool option `hostFunctions`)
 * on `arg`; returns the result's length n (min(n, out_cap) bytes are at `out`; if n > out_cap,
 * kvmpool_host_result() copies the whole kept result into a bigger buffer), or -errno: -ENOSYS
 * (no host functions, or not under kvmpool), -ENOENT (no such function), -EFAULT, -EINVAL (a name
 * over 256 bytes), -EIO (the function threw: kvmpool_host_result() gives its error as JSON
 * {"name","message"}).
 */
#ifndef KVMPOOL_LINUX_H
#define KVMPOOL_LINUX_H

#define KVMPOOL_SYS_CHECKPOINT 0x4b500001L

static inline long kvmpool_checkpoint(void) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(KVMPOOL_SYS_CHECKPOINT) : "rcx", "r11", "memory");
  return ret;
}

#define KVMPOOL_SYS_HOST_CALL 0x4b500002L
#define KVMPOOL_SYS_HOST_RESULT 0x4b500003L

static inline long kvmpool_host_call(const char *name, unsigned long name_len, const void *arg, unsigned long arg_len,
                                     void *out, unsigned long out_cap) {
  long ret;
  register long r10 __asm__("r10") = (long)arg_len;
  register long r8 __asm__("r8") = (long)out;
  register long r9 __asm__("r9") = (long)out_cap;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(KVMPOOL_SYS_HOST_CALL), "D"(name), "S"(name_len), "d"(arg), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

static inline long kvmpool_host_result(void *out, unsigned long out_cap) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(KVMPOOL_SYS_HOST_RESULT), "D"(out), "S"(out_cap) : "rcx", "r11", "memory");
  return ret;
}

#endif
