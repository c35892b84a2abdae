/**
 * Thread signals for kicking a vCPU out of KVM_RUN without any JS signal handler:
 * the kick signal stays blocked in the vCPU thread, is unblocked only inside KVM_RUN (through
 * KVM_SET_SIGNAL_MASK), and is consumed afterwards with sigtimedwait. A kick that arrives
 * before the thread enters KVM_RUN stays pending and makes KVM_RUN return EINTR at once, so
 * none is lost; and since the signal is never unblocked outside KVM_RUN, it never runs a
 * default action (which for a realtime signal would end the process).
 */
import {
  CLOCK_MONOTONIC, SIGEV_THREAD_ID, sysTimerCreate, sysTimerDelete, sysTimerSettime, SIG_BLOCK, errorFor, lastErrno, sysGetpid, sysGettid, sysPthreadSigmask, sysSigtimedwait, sysTgkill,
} from './ffi/index.js';

/** glibc's sigset_t is 128 bytes; the kernel's (for KVM_SET_SIGNAL_MASK) is its first 8. */
const SIGSET_BYTES = 128;
const KERNEL_SIGSET_BYTES = 8;
const EAGAIN = 11;
const ESRCH = 3;

function sigset(signal: number): Uint8Array {
  const set = new Uint8Array(SIGSET_BYTES);
  set[(signal - 1) >> 3]! |= 1 << ((signal - 1) & 7);
  return set;
}

/** Blocks `signal` in the calling thread (threads it creates later inherit the mask). */
export function blockSignal(signal: number): void {
  const rc = sysPthreadSigmask(SIG_BLOCK, sigset(signal), null);
  if (rc !== 0) throw errorFor('pthread_sigmask', rc);
}

/** The calling thread's current mask as a kernel sigset with `signal` removed: the mask to run KVM_RUN with. */
export function runMaskWithout(signal: number): Uint8Array {
  const old = new Uint8Array(SIGSET_BYTES);
  const rc = sysPthreadSigmask(SIG_BLOCK, null, old);
  if (rc !== 0) throw errorFor('pthread_sigmask', rc);
  const mask = old.slice(0, KERNEL_SIGSET_BYTES);
  mask[(signal - 1) >> 3]! &= ~(1 << ((signal - 1) & 7));
  return mask;
}

const ZERO_TIMEOUT = new Uint8Array(16); // struct timespec { 0, 0 }
const setCache = new Map<number, Uint8Array>();

/** Consumes every pending instance of `signal` in the calling thread; returns how many. */
export function consumePending(signal: number): number {
  let set = setCache.get(signal);
  if (!set) {
    set = sigset(signal);
    setCache.set(signal, set);
  }
  let n = 0;
  for (;;) {
    const got = sysSigtimedwait(set, null, ZERO_TIMEOUT);
    if (got === signal) {
      n++;
      continue;
    }
    const errno = lastErrno();
    if (got < 0 && errno === EAGAIN) return n;
    if (got < 0 && errno === 4 /* EINTR */) continue;
    throw errorFor('sigtimedwait', errno);
  }
}

export function currentTid(): number {
  return sysGettid();
}

let signalsSentCount = 0;

/**
 * How many signals `signalThread` has sent from this thread (module instance) so far; every
 * kick and stop-kick goes through it, so tests can check a kick is one signal, never resent.
 */
export function signalsSent(): number {
  return signalsSentCount;
}

/** Sends `signal` to thread `tid` of this process; false if the thread is gone. */
export function signalThread(tid: number, signal: number): boolean {
  if (sysTgkill(sysGetpid(), tid, signal) === 0) {
    signalsSentCount++;
    return true;
  }
  const errno = lastErrno();
  if (errno === ESRCH) return false;
  throw errorFor(`tgkill(${tid}, ${signal})`, errno);
}

/**
 * A one-shot POSIX timer that sends `signal` to the thread that created it — e.g. to end a
 * KVM_RUN that overruns a deadline without any other thread's help. Arm and disarm cost a
 * syscall each.
 */
export class ThreadTimer {
  #id: bigint;
  readonly #spec = new Uint8Array(32); // struct itimerspec { it_interval, it_value }
  readonly #view = new DataView(this.#spec.buffer);

  constructor(signal: number) {
    const sev = new Uint8Array(64); // struct sigevent
    const v = new DataView(sev.buffer);
    v.setInt32(8, signal, true); // sigev_signo
    v.setInt32(12, SIGEV_THREAD_ID, true); // sigev_notify
    v.setInt32(16, sysGettid(), true); // sigev_notify_thread_id
    const id = new Uint8Array(8);
    if (sysTimerCreate(CLOCK_MONOTONIC, sev, id) !== 0) throw errorFor('timer_create', lastErrno());
    this.#id = new DataView(id.buffer).getBigUint64(0, true);
  }

  /** The kernel's timer id (-1 once deleted); timer_delete works on it from any thread. */
  get id(): bigint {
    return this.#id;
  }

  /** Fires once after `ms` milliseconds (0 disarms). */
  arm(ms: number): void {
    const ns = BigInt(Math.round(ms * 1e6));
    this.#view.setBigInt64(16, ns / 1_000_000_000n, true); // it_value.tv_sec
    this.#view.setBigInt64(24, ns % 1_000_000_000n, true); // it_value.tv_nsec
    if (sysTimerSettime(this.#id, 0, this.#spec, null) !== 0) throw errorFor('timer_settime', lastErrno());
  }

  disarm(): void {
    this.arm(0);
  }

  close(): void {
    if (this.#id < 0n) return;
    sysTimerDelete(this.#id);
    this.#id = -1n;
  }
}
