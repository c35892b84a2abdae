/**
 * kvmpool's errors, all in this file. Each class has a stable `code` a caller can switch on:
 * `ERR_KVMPOOL_*` for kvmpool's own conditions; a failed system call (`KvmError`) carries the
 * errno name (`EINVAL`), as Node's own system errors do; a cancelled call is an `AbortError`
 * with `code: 'ABORT_ERR'`, as Node's `AbortSignal`-aware APIs reject.
 *
 * `encodeError` / `decodeError` carry an error across a thread boundary as plain data (class,
 * code, message, fields, stack and `cause`, recursively), so a worker's error reaches the caller
 * as the same class.
 */

/**
 * The stable `code` of each kvmpool error class, keyed by a short name (`ERROR_CODES.timeout` is
 * `'ERR_KVMPOOL_TIMEOUT'`). `KvmError` is the exception: its `code` is the errno name.
 * @enum
 */
export const ERROR_CODES = {
  unsupported: 'ERR_KVMPOOL_UNSUPPORTED',
  closed: 'ERR_KVMPOOL_CLOSED',
  guestMemory: 'ERR_KVMPOOL_GUEST_MEMORY',
  guestCrash: 'ERR_KVMPOOL_GUEST_CRASH',
  vcpuThread: 'ERR_KVMPOOL_VCPU_THREAD',
  vcpuState: 'ERR_KVMPOOL_VCPU_STATE',
  timeout: 'ERR_KVMPOOL_TIMEOUT',
  guest: 'ERR_KVMPOOL_GUEST',
  guestLimit: 'ERR_KVMPOOL_GUEST_LIMIT',
  hostFunction: 'ERR_KVMPOOL_HOST_FUNCTION',
  sandboxWorker: 'ERR_KVMPOOL_SANDBOX_WORKER',
  elf: 'ERR_KVMPOOL_ELF',
  snapshot: 'ERR_KVMPOOL_SNAPSHOT',
  debugUnsupported: 'ERR_KVMPOOL_DEBUG_UNSUPPORTED',
  invalidArgument: 'ERR_KVMPOOL_INVALID_ARGUMENT',
  /** A device model threw on an access (`DeviceAccessError`, in @kvmpool/devices). */
  device: 'ERR_KVMPOOL_DEVICE',
  aborted: 'ABORT_ERR',
} as const;
/** One of the values of `ERROR_CODES`. */
export type KvmpoolErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/** The base of every kvmpool error. */
export class KvmpoolError extends Error {
  /** The class name (`'KvmpoolError'`, `'KvmError'`, …), also after the error crossed a thread. */
  override readonly name: string = 'KvmpoolError';
  /** A stable code to switch on: an `ERROR_CODES` value, or the errno name for a `KvmError`. */
  readonly code: string;
  /** Makes an error with this `code`; `options.cause` becomes `cause`. */
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** A failed KVM ioctl or libc call: `KVM_SET_USER_MEMORY_REGION: EINVAL (Invalid argument)`. */
export class KvmError extends KvmpoolError {
  /** Always `'KvmError'`. */
  override readonly name = 'KvmError';
  /** The ioctl (or libc call) that failed, e.g. `KVM_CREATE_VCPU` or `open(/dev/kvm)`. */
  readonly ioctl: string;
  /** The errno value. */
  readonly errno: number;

  /** `code` is the errno name, e.g. `EINVAL`. */
  constructor(ioctl: string, errno: number, code: string, description: string, hint?: string) {
    super(code, `${ioctl}: ${code} (${description})${hint ? ` — ${hint}` : ''}`);
    this.ioctl = ioctl;
    this.errno = errno;
  }
}

/** The host's KVM cannot do what was asked (wrong API version, missing capability, a mode it refuses). */
export class KvmUnsupportedError extends KvmpoolError {
  /** Always `'KvmUnsupportedError'`. */
  override readonly name = 'KvmUnsupportedError';
  /** What the host lacks, e.g. `paged mode` or a `KVM_CAP_*` name. */
  readonly feature: string;
  /** `feature` names what is missing; `message` says why. */
  constructor(feature: string, message: string) {
    super(ERROR_CODES.unsupported, message);
    this.feature = feature;
  }
}

/** A handle (or pool, or machine) was used after `close()`. */
export class ClosedError extends KvmpoolError {
  /** Always `'ClosedError'`. */
  override readonly name = 'ClosedError';
  /** `what` names the closed object; the message is `<what> is closed`. */
  constructor(what: string) {
    super(ERROR_CODES.closed, `${what} is closed`);
  }
}

/** A guest physical address range that no memory slot backs, or that crosses a slot's end. */
export class GuestMemoryError extends KvmpoolError {
  /** Always `'GuestMemoryError'`. */
  override readonly name = 'GuestMemoryError';
  /** The first guest-physical address of the range. */
  readonly address: bigint;
  /** The length of the range in bytes. */
  readonly length: number;
  /** The range `address`..`address + length` (bytes) and why it is refused. */
  constructor(address: bigint, length: number, reason: string) {
    super(ERROR_CODES.guestMemory, `guest physical range 0x${address.toString(16)}+${length}: ${reason}`);
    this.address = address;
    this.length = length;
  }
}

/** A guest stopped in a way no guest should: shutdown (triple fault), internal error, failed entry. */
export class GuestCrashError extends KvmpoolError {
  /** Always `'GuestCrashError'`. */
  override readonly name = 'GuestCrashError';
  /** The index of the vCPU that crashed. */
  readonly vcpu: number;
  /** The exit that ended it (kind + details), e.g. `shutdown` or `internal_error EMULATION […]`. */
  readonly exit: string;
  /** The guest instruction pointer at the crash. */
  readonly rip: bigint;
  /** Where rip is in the guest image, e.g. `crash+0xa`, when the image has symbols. */
  readonly symbol: string | undefined;
  /** Made by kvmpool when a vCPU exits in a way no guest should. */
  constructor(vcpu: number, exit: string, rip: bigint, symbol?: string) {
    super(ERROR_CODES.guestCrash, `guest crashed on vCPU ${vcpu}: ${exit} at rip 0x${rip.toString(16)}${symbol ? ` (${symbol})` : ''}`);
    this.vcpu = vcpu;
    this.exit = exit;
    this.rip = rip;
    this.symbol = symbol;
  }
}

/** A vCPU worker thread failed (an exception in the thread, or it exited unexpectedly). */
export class VcpuThreadError extends KvmpoolError {
  /** Always `'VcpuThreadError'`. */
  override readonly name = 'VcpuThreadError';
  /** The index of the vCPU whose thread failed. */
  readonly vcpu: number;
  /** Made by kvmpool when a vCPU thread fails; the thread's error is the `cause`. */
  constructor(vcpu: number, message: string, cause?: unknown) {
    super(ERROR_CODES.vcpuThread, `vCPU ${vcpu} thread: ${message}`, { cause });
    this.vcpu = vcpu;
  }
}

/** An operation the vCPU's current state does not allow (e.g. reading registers while it runs). */
export class VcpuStateError extends KvmpoolError {
  /** Always `'VcpuStateError'`. */
  override readonly name = 'VcpuStateError';
  /** The index of the vCPU. */
  readonly vcpu: number;
  /** The state that refused the request, e.g. `running` or `stopped`. */
  readonly state: string;
  /** Made by kvmpool when a request does not fit the vCPU's state. */
  constructor(vcpu: number, state: string, message: string) {
    super(ERROR_CODES.vcpuState, `vCPU ${vcpu} is ${state}: ${message}`);
    this.vcpu = vcpu;
    this.state = state;
  }
}

/** A sandbox call ran past its time limit; the VM was stopped and reset (or replaced). */
export class SandboxTimeoutError extends KvmpoolError {
  /** Always `'SandboxTimeoutError'`. */
  override readonly name = 'SandboxTimeoutError';
  /** The guest function called (or `kvmpool_init`). */
  readonly function: string;
  /** The time limit that passed, in milliseconds. */
  readonly timeoutMs: number;
  /** Made by the pool when a call passes its time limit. */
  constructor(fn: string, timeoutMs: number, what = 'its') {
    super(ERROR_CODES.timeout, `sandbox call ${fn} exceeded ${what} ${timeoutMs} ms time limit`);
    this.function = fn;
    this.timeoutMs = timeoutMs;
  }
}

/** The guest function reported a failure: a negative return value, or kvmpool_abort(). */
export class GuestError extends KvmpoolError {
  /** Always `'GuestError'`. */
  override readonly name = 'GuestError';
  /** The guest's status: its negative return value, or a kvmpool value (-3 abort, -4 bad host call). */
  readonly status: number;
  /** Made by the pool from the guest's status and abort message. */
  constructor(message: string, status: number) {
    super(ERROR_CODES.guest, message);
    this.status = status;
  }
}

/** The guest went past a limit the host sets on what it may send (text, names, output, counts). */
export class GuestLimitError extends KvmpoolError {
  /** Always `'GuestLimitError'`. */
  override readonly name = 'GuestLimitError';
  /** Which limit, e.g. `host function name`. */
  readonly limit: string;
  /** Made by the pool when a guest passes a limit. */
  constructor(limit: string, message: string) {
    super(ERROR_CODES.guestLimit, message);
    this.limit = limit;
  }
}

/** A host function called by the guest failed (it threw, or the guest passed bad pointers). */
export class HostFunctionError extends KvmpoolError {
  /** Always `'HostFunctionError'`. */
  override readonly name = 'HostFunctionError';
  /** The host function the guest called. */
  readonly function: string;
  /** Made by the pool; the host function's own error is the `cause`. */
  constructor(fn: string, message: string, cause?: unknown) {
    super(ERROR_CODES.hostFunction, `host function ${fn}: ${message}`, { cause });
    this.function = fn;
  }
}

/** A sandbox worker thread died, wedged, or could not start; its call failed, the pool replaced it. */
export class SandboxWorkerError extends KvmpoolError {
  /** Always `'SandboxWorkerError'`. */
  override readonly name = 'SandboxWorkerError';
  /** Made by the pool; what the worker threw or why it was ended is the `cause`. */
  constructor(message: string, cause?: unknown) {
    super(ERROR_CODES.sandboxWorker, message, { cause });
  }
}

/** A guest image that is not a usable static x86-64 ELF. */
export class ElfError extends KvmpoolError {
  /** Always `'ElfError'`. */
  override readonly name = 'ElfError';
  /** The path of the image, or `guest image` for bytes. */
  readonly source: string;
  /** Made by the ELF loader; the message starts with `source`. */
  constructor(source: string, message: string) {
    super(ERROR_CODES.elf, `${source}: ${message}`);
    this.source = source;
  }
}

/** A snapshot file that cannot be restored (truncated, corrupted, wrong version, not a snapshot). */
export class SnapshotError extends KvmpoolError {
  /** Always `'SnapshotError'`. */
  override readonly name = 'SnapshotError';
  /** The snapshot file. */
  readonly path: string;
  /** Made by `Machine.restore()`; the message starts with `path` and says what is wrong. */
  constructor(path: string, message: string) {
    super(ERROR_CODES.snapshot, `${path}: ${message}`);
    this.path = path;
  }
}

/** A debugging feature this host cannot do at the guest's CPL; refused before the guest is touched. */
export class DebugUnsupportedError extends KvmpoolError {
  /** Always `'DebugUnsupportedError'`. */
  override readonly name = 'DebugUnsupportedError';
  /** The debugging feature, e.g. `single-step` or `software breakpoints`. */
  readonly feature: string;
  /** The privilege level of the guest code it was asked for. */
  readonly cpl: 0 | 3;
  /** Made by the debugger from `debugSupport()`'s probe. */
  constructor(feature: string, cpl: 0 | 3, module: string) {
    super(ERROR_CODES.debugUnsupported, `${feature} at CPL ${cpl} does not work on this host (${module}); kvmpool refuses it rather than risk the guest`);
    this.feature = feature;
    this.cpl = cpl;
  }
}

/** A call was cancelled through its AbortSignal (Node's convention: name AbortError, code ABORT_ERR). */
export class AbortError extends KvmpoolError {
  /** Always `'AbortError'` (Node's convention). */
  override readonly name = 'AbortError';
  /** The signal's `reason` is the `cause`. */
  constructor(message = 'The operation was aborted', cause?: unknown) {
    super(ERROR_CODES.aborted, message, { cause });
  }
}

/** A TypeError naming the option or argument that is wrong. */
export function invalidArgument(what: string, expected: string, got: unknown): TypeError {
  const e = new TypeError(`${what}: expected ${expected}, got ${describeValue(got)}`);
  Object.defineProperty(e, 'code', { value: ERROR_CODES.invalidArgument, enumerable: true });
  return e;
}

/** A RangeError naming the option or argument that is out of range. */
export function outOfRange(what: string, message: string): RangeError {
  const e = new RangeError(`${what}: ${message}`);
  Object.defineProperty(e, 'code', { value: ERROR_CODES.invalidArgument, enumerable: true });
  return e;
}

export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)})`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (typeof v === 'function') return 'a function';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) return `an ${v.constructor.name}`;
  if (v instanceof Promise) return 'a Promise';
  return `an object (${Object.prototype.toString.call(v)})`;
}

// ---------------------------------------------------------------------------------------------
// Across threads.

/** An error as structured-clone-safe data. */
export interface EncodedError {
  name: string;
  message: string;
  code?: string;
  /** Own enumerable string/number/boolean fields; bigints as `{ bigint: '0x…' }` strings prefixed `0n:`. */
  fields: Record<string, string | number | boolean>;
  stack?: string;
  cause?: EncodedError;
}

const MAX_CAUSE_DEPTH = 8;
const BIGINT_PREFIX = '0n:';

export function encodeError(e: unknown, depth = 0): EncodedError {
  if (!(e instanceof Error)) return { name: 'Error', message: typeof e === 'string' ? e : `non-error thrown: ${describeValue(e)}`, fields: {} };
  const fields: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'code' || k === 'name' || k === 'message') continue;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') fields[k] = v;
    else if (typeof v === 'bigint') fields[k] = `${BIGINT_PREFIX}${v.toString(16)}`;
  }
  const out: EncodedError = { name: e.name, message: e.message, fields };
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') out.code = code;
  if (e.stack) out.stack = e.stack;
  if (e.cause !== undefined && depth < MAX_CAUSE_DEPTH) out.cause = encodeError(e.cause, depth + 1);
  return out;
}

type Rebuild = (w: EncodedError) => Error;
const str = (w: EncodedError, k: string): string => String(w.fields[k] ?? '');
const num = (w: EncodedError, k: string): number => Number(w.fields[k] ?? 0);

/** Class by name; each makes a blank instance that `decodeError` then fills in. */
const REBUILD: Record<string, Rebuild> = {
  KvmError: (w) => new KvmError(str(w, 'ioctl'), num(w, 'errno'), w.code ?? '', ''),
  KvmUnsupportedError: (w) => new KvmUnsupportedError(str(w, 'feature'), ''),
  ClosedError: () => new ClosedError(''),
  GuestMemoryError: (w) => new GuestMemoryError(0n, num(w, 'length'), ''),
  GuestCrashError: (w) => new GuestCrashError(num(w, 'vcpu'), str(w, 'exit'), 0n),
  VcpuThreadError: (w) => new VcpuThreadError(num(w, 'vcpu'), ''),
  VcpuStateError: (w) => new VcpuStateError(num(w, 'vcpu'), str(w, 'state'), ''),
  SandboxTimeoutError: (w) => new SandboxTimeoutError(str(w, 'function'), num(w, 'timeoutMs')),
  GuestError: (w) => new GuestError('', num(w, 'status')),
  GuestLimitError: (w) => new GuestLimitError(str(w, 'limit'), ''),
  HostFunctionError: (w) => new HostFunctionError(str(w, 'function'), ''),
  SandboxWorkerError: () => new SandboxWorkerError(''),
  ElfError: (w) => new ElfError(str(w, 'source'), ''),
  SnapshotError: (w) => new SnapshotError(str(w, 'path'), ''),
  DebugUnsupportedError: (w) => new DebugUnsupportedError(str(w, 'feature'), num(w, 'cpl') === 0 ? 0 : 3, ''),
  AbortError: () => new AbortError(),
  TypeError: () => new TypeError(),
  RangeError: () => new RangeError(),
};

/** Rebuilds an encoded error with its class, message, code, fields, stack and cause. */
export function decodeError(w: EncodedError): Error {
  const make = REBUILD[w.name];
  const e: Error = make ? make(w) : new Error();
  if (!make && w.name !== 'Error') Object.defineProperty(e, 'name', { value: w.name, configurable: true, writable: true });
  e.message = w.message;
  for (const [k, v] of Object.entries(w.fields)) {
    const value = typeof v === 'string' && v.startsWith(BIGINT_PREFIX) ? BigInt(`0x${v.slice(BIGINT_PREFIX.length)}`) : v;
    Object.defineProperty(e, k, { value, enumerable: true, configurable: true, writable: true });
  }
  if (w.code !== undefined) Object.defineProperty(e, 'code', { value: w.code, enumerable: true, configurable: true, writable: true });
  if (w.stack) e.stack = w.stack;
  if (w.cause) Object.defineProperty(e, 'cause', { value: decodeError(w.cause), enumerable: false, configurable: true, writable: true });
  return e;
}
