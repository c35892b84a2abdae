/**
 * The libc calls kvmpool needs, declared once. Together with the other files in
 * `ffi/`, this is the only place that imports koffi.
 *
 * `ioctl` is variadic in C. A variadic koffi declaration re-parses its argument
 * types on every call, so it is declared here as plain functions with a fixed
 * third argument (a pointer, or an integer). On x86-64 System V this is the
 * same calling sequence as the variadic call for integer/pointer arguments.
 */
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

const fn = {
  open: lib.func('int open(const char *path, int flags, int mode)'),
  close: lib.func('int close(int fd)'),
  ioctlPtr: lib.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
  ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'uint64_t']),
  mmap: lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  munmap: lib.func('int munmap(void *addr, size_t len)'),
  memmove: lib.func('void *memmove(void *dst, const void *src, size_t n)'),
  strerror: lib.func('const char *strerror(int errnum)'),
  gettid: lib.func('int gettid()'),
  getpid: lib.func('int getpid()'),
  tgkill: lib.func('int tgkill(int tgid, int tid, int sig)'),
  pthreadSigmask: lib.func('int pthread_sigmask(int how, const void *set, void *oldset)'),
  sigtimedwait: lib.func('int sigtimedwait(const void *set, void *info, const void *timeout)'),
  timerCreate: lib.func('int timer_create(int clock, void *sevp, void *timerid)'),
  timerSettime: lib.func('timer_settime', 'int', ['uint64_t', 'int', 'void *', 'void *']),
  timerDelete: lib.func('timer_delete', 'int', ['uint64_t']),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  eventfdRead: lib.func('int eventfd_read(int fd, _Out_ uint64_t *value)'),
  eventfdWrite: lib.func('int eventfd_write(int fd, uint64_t value)'),
  poll: lib.func('int poll(void *fds, uint64_t nfds, int timeout)'),
} as const;

export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
/** `(void *)-1`, mmap's failure value. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** errno of the last failed libc call on this thread; read it right after the call. */
export function lastErrno(): number {
  return koffi.errno();
}

/** The symbolic name of an errno value ("EINVAL"), or `E<n>` if libc's table has none. */
export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(koffi.os.errno)) {
    if (value === errno) return name;
  }
  return `E${errno}`;
}

/** libc's description of an errno value ("Invalid argument"). */
export function errnoText(errno: number): string {
  return String(fn.strerror(errno));
}

export function sysOpen(path: string, flags: number): number {
  return fn.open(path, flags, 0);
}

export function sysClose(fd: number): number {
  return fn.close(fd);
}

/** ioctl with a pointer argument; `arg` is passed by address, without a copy. */
export function sysIoctlPtr(fd: number, request: number, arg: Uint8Array | null): number {
  return fn.ioctlPtr(fd, request, arg);
}

/** ioctl with an integer argument (or none: pass 0). */
export function sysIoctlInt(fd: number, request: number, arg: number | bigint): number {
  return fn.ioctlInt(fd, request, arg);
}

/** mmap; returns the address, or MAP_FAILED. */
export function sysMmap(length: number, prot: number, flags: number, fd: number, offset = 0n): bigint {
  const p: unknown = fn.mmap(null, length, prot, flags, fd, offset);
  return typeof p === 'bigint' ? p : MAP_FAILED;
}

export function sysMunmap(address: bigint, length: number): number {
  return fn.munmap(address, length);
}

/** A zero-copy ArrayBuffer over host memory at `address` (e.g. a vCPU's kvm_run mapping). */
export function viewOf(address: bigint, length: number): ArrayBuffer {
  return koffi.view(address, length);
}

/**
 * The host address of a typed array's first byte. `memmove(p, p, 0)` returns its first
 * argument, and koffi passes a typed array to `void *` by address, without a copy.
 */
export function addressOf(bytes: Uint8Array): bigint {
  const p: unknown = fn.memmove(bytes, bytes, 0);
  if (typeof p !== 'bigint') throw new TypeError('addressOf: koffi returned no pointer');
  return p;
}

export function sysGettid(): number {
  return fn.gettid();
}

export function sysGetpid(): number {
  return fn.getpid();
}

export function sysTgkill(pid: number, tid: number, signal: number): number {
  return fn.tgkill(pid, tid, signal);
}

export const SIG_BLOCK = 0;
export const SIG_UNBLOCK = 1;
export const SIG_SETMASK = 2;

export function sysPthreadSigmask(how: number, set: Uint8Array | null, oldSet: Uint8Array | null): number {
  return fn.pthreadSigmask(how, set, oldSet);
}

export function sysSigtimedwait(set: Uint8Array, info: Uint8Array | null, timeout: Uint8Array | null): number {
  return fn.sigtimedwait(set, info, timeout);
}

export const CLOCK_MONOTONIC = 1;
/** sigevent.sigev_notify: deliver the signal to one thread (`sigev_notify_thread_id`). */
export const SIGEV_THREAD_ID = 4;

/** timer_create with a 64-byte struct sigevent; returns the timer id (glibc's timer_t, as a number) or -1. */
export function sysTimerCreate(clock: number, sigevent: Uint8Array, timerId: Uint8Array): number {
  return fn.timerCreate(clock, sigevent, timerId);
}

export function sysTimerSettime(timer: bigint, flags: number, spec: Uint8Array, old: Uint8Array | null): number {
  return fn.timerSettime(timer, flags, spec, old);
}

export function sysTimerDelete(timer: bigint): number {
  return fn.timerDelete(timer);
}

/** eventfd(2) flags. */
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EFD_SEMAPHORE = 1;

/** eventfd(2): a new eventfd with counter `initval`; returns the fd or -1 (errno set). */
export function sysEventfd(initval: number, flags: number): number {
  return fn.eventfd(initval, flags);
}

/**
 * eventfd_read(3): reads and resets the counter (or takes 1 with EFD_SEMAPHORE). Returns the value, or
 * -1n on failure (errno set; EAGAIN when a non-blocking eventfd is zero).
 */
export function sysEventfdRead(fd: number): bigint {
  const out = [0n];
  const ret = fn.eventfdRead(fd, out);
  if (ret < 0) return -1n;
  return BigInt(out[0] as bigint | number);
}

/** eventfd_write(3): adds `value` to the counter; returns 0 or -1 (errno set). */
export function sysEventfdWrite(fd: number, value: bigint): number {
  return fn.eventfdWrite(fd, value);
}

/** poll(2) `events`/`revents` bits. */
export const POLLIN = 0x001;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
/** sizeof(struct pollfd): `int fd; short events; short revents;`. */
export const POLLFD_SIZE = 8;

/**
 * poll(2) over `fds`, an array of `struct pollfd` (POLLFD_SIZE bytes each: fd i32 at 0, events i16 at 4,
 * revents i16 at 6, little-endian) that the kernel fills in place; `timeoutMs` -1 waits for ever. Returns the
 * number of ready entries, 0 on time-out, or -1 (errno set; EINTR when a signal cut the wait short).
 */
export function sysPoll(fds: Uint8Array, count: number, timeoutMs: number): number {
  if (count < 0 || count * POLLFD_SIZE > fds.length) throw new RangeError(`poll: ${count} entries do not fit ${fds.length} bytes`);
  return fn.poll(fds, count, timeoutMs);
}
