/** Checked KVM ioctls: errno is read right after a failing call and thrown as a KvmError. */
import { KvmError } from '../errors.js';
import { KVM_IOCTLS, type IoctlName } from './ioctls.js';
import { errnoName, errnoText, lastErrno, sysIoctlInt, sysIoctlPtr } from './libc.js';

export function errorFor(operation: string, errno: number, hint?: string): KvmError {
  return new KvmError(operation, errno, errnoName(errno), errnoText(errno), hint);
}

const EINTR = 4;

/**
 * ioctl(fd, name, &struct); returns the non-negative result or throws KvmError. A call cut
 * short by a signal (EINTR, e.g. a profiler's SIGPROF during KVM_CREATE_VM) is retried.
 */
export function ioctlPtr(fd: number, name: IoctlName, arg: Uint8Array | null): number {
  for (;;) {
    const ret = sysIoctlPtr(fd, KVM_IOCTLS[name], arg);
    if (ret >= 0) return ret;
    const errno = lastErrno();
    if (errno !== EINTR) throw errorFor(name, errno);
  }
}

/** ioctl(fd, name, integer); returns the non-negative result or throws KvmError (EINTR is retried). */
export function ioctlInt(fd: number, name: IoctlName, arg: number | bigint = 0): number {
  for (;;) {
    const ret = sysIoctlInt(fd, KVM_IOCTLS[name], arg);
    if (ret >= 0) return ret;
    const errno = lastErrno();
    if (errno !== EINTR) throw errorFor(name, errno);
  }
}

const KVM_RUN_NR = KVM_IOCTLS.KVM_RUN;

/**
 * KVM_RUN without throwing: returns 0, or the errno (positive) of a failed run, so the
 * run loop can tell EINTR (a kick) from a real failure without an exception.
 */
export function kvmRun(fd: number): number {
  return sysIoctlInt(fd, KVM_RUN_NR, 0) < 0 ? lastErrno() : 0;
}
