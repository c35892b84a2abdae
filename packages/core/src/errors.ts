/** kvmpool's error types. Each names what failed and carries what a caller needs to act. */

/** A failed KVM ioctl or libc call: `KVM_SET_USER_MEMORY_REGION: EINVAL (Invalid argument)`. */
export class KvmError extends Error {
  override readonly name = 'KvmError';
  /** The ioctl (or libc call) that failed, e.g. `KVM_CREATE_VCPU` or `open(/dev/kvm)`. */
  readonly ioctl: string;
  /** The errno value. */
  readonly errno: number;
  /** The errno name, e.g. `EINVAL`. */
  readonly code: string;

  constructor(ioctl: string, errno: number, code: string, description: string, hint?: string) {
    super(`${ioctl}: ${code} (${description})${hint ? ` — ${hint}` : ''}`);
    this.ioctl = ioctl;
    this.errno = errno;
    this.code = code;
  }
}

/** The host's KVM cannot do what was asked (wrong API version, missing capability). */
export class KvmUnsupportedError extends Error {
  override readonly name = 'KvmUnsupportedError';
  readonly feature: string;
  constructor(feature: string, message: string) {
    super(message);
    this.feature = feature;
  }
}

/** A handle was used after `close()`. */
export class ClosedError extends Error {
  override readonly name = 'ClosedError';
  constructor(what: string) {
    super(`${what} is closed`);
  }
}

/** A guest physical address range that no memory slot backs, or that crosses a slot's end. */
export class GuestMemoryError extends RangeError {
  override readonly name = 'GuestMemoryError';
  readonly address: bigint;
  readonly length: number;
  constructor(address: bigint, length: number, reason: string) {
    super(`guest physical range 0x${address.toString(16)}+${length}: ${reason}`);
    this.address = address;
    this.length = length;
  }
}

/** A guest stopped in a way no guest should: shutdown (triple fault), internal error, failed entry. */
export class GuestCrashError extends Error {
  override readonly name = 'GuestCrashError';
  readonly vcpu: number;
  /** The exit that ended it (kind + details), e.g. `shutdown` or `internal_error EMULATION […]`. */
  readonly exit: string;
  readonly rip: bigint;
  constructor(vcpu: number, exit: string, rip: bigint) {
    super(`guest crashed on vCPU ${vcpu}: ${exit} at rip 0x${rip.toString(16)}`);
    this.vcpu = vcpu;
    this.exit = exit;
    this.rip = rip;
  }
}

/** A vCPU worker thread failed (an exception in the thread, or it exited unexpectedly). */
export class VcpuThreadError extends Error {
  override readonly name = 'VcpuThreadError';
  readonly vcpu: number;
  constructor(vcpu: number, message: string, cause?: unknown) {
    super(`vCPU ${vcpu} thread: ${message}`, cause === undefined ? undefined : { cause });
    this.vcpu = vcpu;
  }
}

/** A sandbox call ran past its time limit; the VM was stopped, reset and kept. */
export class SandboxTimeoutError extends Error {
  override readonly name = 'SandboxTimeoutError';
  readonly timeoutMs: number;
  constructor(fn: string, timeoutMs: number) {
    super(`sandbox call ${fn} exceeded its ${timeoutMs} ms time limit`);
    this.timeoutMs = timeoutMs;
  }
}

/** The guest function reported a failure: a negative return value, or kvmpool_abort(). */
export class GuestError extends Error {
  override readonly name = 'GuestError';
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

/** A host function called by the guest failed (it threw, or the guest passed bad pointers). */
export class HostFunctionError extends Error {
  override readonly name = 'HostFunctionError';
  readonly function: string;
  constructor(fn: string, message: string, cause?: unknown) {
    super(`host function ${fn}: ${message}`, cause === undefined ? undefined : { cause });
    this.function = fn;
  }
}
