/**
 * `EventFd`: an eventfd(2) counter. KVM signals or watches one without leaving the kernel:
 * `vm.irqfd()` raises an interrupt line when the counter is written (a device thread's
 * completion), an ioeventfd bumps it when the guest writes a doorbell. The fd is a plain
 * process-wide number, so another thread (a worker) may write to it: pass `fd` and use
 * `EventFd.attach(fd)` there; only the creating handle closes it.
 */
import { ClosedError, outOfRange } from './errors.js';
import {
  EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE, errorFor, lastErrno, sysClose, sysEventfd, sysEventfdRead, sysEventfdWrite,
} from './ffi/index.js';

/** Options of `EventFd.create()`. */
export interface EventFdOptions {
  /** The counter's first value (0 by default). */
  initial?: number;
  /** Reads return `undefined` instead of blocking while the counter is 0. Default true. */
  nonBlocking?: boolean;
  /** Semaphore mode: each read takes 1 from the counter instead of resetting it. Default false. */
  semaphore?: boolean;
}

const EAGAIN = 11;
const EINTR = 4;
/** An eventfd counter saturates below 2^64 - 1; a write past it blocks or fails with EAGAIN. */
const MAX_ADD = 0xffff_ffff_ffff_fffen;

/** An eventfd(2) (always close-on-exec). `close()` is idempotent; `using` works. */
export class EventFd implements Disposable {
  #fd: number;
  readonly #owns: boolean;

  private constructor(fd: number, owns: boolean) {
    this.#fd = fd;
    this.#owns = owns;
  }

  /** eventfd(2): a new counter this handle owns. */
  static create(options: EventFdOptions = {}): EventFd {
    const initial = options.initial ?? 0;
    if (!Number.isInteger(initial) || initial < 0 || initial > 0xffff_ffff) throw outOfRange('EventFd initial', `${initial} is not a u32`);
    const flags = EFD_CLOEXEC | (options.nonBlocking === false ? 0 : EFD_NONBLOCK) | (options.semaphore ? EFD_SEMAPHORE : 0);
    const fd = sysEventfd(initial, flags);
    if (fd < 0) throw errorFor('eventfd', lastErrno());
    return new EventFd(fd, true);
  }

  /** A handle on an eventfd another handle owns (e.g. one made on the main thread, used in a worker); `close()` leaves the fd open. */
  static attach(fd: number): EventFd {
    if (!Number.isInteger(fd) || fd < 0) throw outOfRange('EventFd.attach', `fd ${fd} is not a file descriptor`);
    return new EventFd(fd, false);
  }

  /** The file descriptor; throws `ClosedError` after `close()`. */
  get fd(): number {
    if (this.#fd < 0) throw new ClosedError('EventFd');
    return this.#fd;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Adds `value` (default 1) to the counter: wakes readers, or raises the line an irqfd binds it to. */
  write(value: bigint = 1n): void {
    if (value <= 0n || value > MAX_ADD) throw outOfRange('EventFd.write', `value ${value} must be in [1, 2^64 - 2]`);
    for (;;) {
      if (sysEventfdWrite(this.fd, value) === 0) return;
      const errno = lastErrno();
      if (errno !== EINTR) throw errorFor('eventfd_write', errno);
    }
  }

  /**
   * Reads the counter and resets it to 0 (semaphore mode: takes 1). A non-blocking eventfd at 0 returns
   * `undefined`; a blocking one waits.
   */
  read(): bigint | undefined {
    for (;;) {
      const v = sysEventfdRead(this.fd);
      if (v >= 0n) return v;
      const errno = lastErrno();
      if (errno === EAGAIN) return undefined;
      if (errno !== EINTR) throw errorFor('eventfd_read', errno);
    }
  }

  /** Closes the fd if this handle owns it (idempotent). */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#owns) sysClose(this.#fd);
    this.#fd = -1;
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
