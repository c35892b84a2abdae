/**
 * kvmpool's Linux syscall layer, served in the vCPU's own thread: the stub (syscall-stub.ts)
 * leaves a syscall's number and arguments in the scratch page and exits; `serve()` reads them,
 * runs the syscall's function from the table (syscalls/table.ts) and leaves the result where the
 * stub loads rax from.
 *
 * Every number is the program's and hostile: pointers and lengths are checked against the
 * program's part of memory before any byte moves (`readable`/`writable`: [userMin, memory)),
 * strings are bounded, counts capped. A syscall that is not in the table returns ENOSYS and is
 * counted by name (or, with `strict`, ends the call naming it). Nothing a program does can make
 * the host allocate more than the configured output limits or block past the call's deadline.
 */
import { GuestError, GuestLimitError } from '../errors.js';
import { PAGE_SIZE } from '../util/size.js';
import { E, signalName } from './errno.js';
import { HostCalls, type LinuxHostCall } from './host-call.js';
import { ProcessState, type ProcessLayout } from './process-state.js';
import { SCRATCH, SCRATCH_ADDRESS } from './syscall-stub.js';
import { SYSCALL_NAMES } from './syscalls/numbers.js';
import { SYSCALLS } from './syscalls/table.js';

/** A syscall's function: `a` the arguments as numbers (exact below 2^53), `i` their low 32 bits signed. Returns the result or -errno. */
export type SyscallFn = (k: SyscallLayer, a: Float64Array, i: Int32Array) => number;

export interface LinuxProgramConfig {
  /** Read-only files the program may open, by absolute path. */
  files: ReadonlyMap<string, Uint8Array>;
  /** Most bytes kept of stdout, and apart of stderr, per call. */
  maxOutput: number;
  /** Past maxOutput: end the call with GuestLimitError, or keep the first bytes and flag the rest. */
  outputLimit: 'error' | 'truncate';
  /** An unimplemented syscall ends the call with GuestError naming it (else it returns ENOSYS). */
  strict: boolean;
  /** What getuid/getgid… return (and AT_UID, AT_GID). */
  ids: { uid: number; gid: number };
}

/** How a call ended, or why the run stopped. */
export type RunEnd =
  | { kind: 'exit'; code: number }
  | { kind: 'signal'; signal: number }
  /** The program's first read of stdin, or kvmpool_checkpoint(): where a warm start is captured. */
  | { kind: 'capture' }
  | { kind: 'error'; error: Error };

/** What the layer needs from the VM around it. */
export interface LayerHost {
  /** Marks guest pages the host wrote (the dirty log sees only the guest's own writes). */
  markDirty(at: number, length: number): void;
  /** Sets FS_BASE / GS_BASE (arch_prctl); false if the host refuses the value. */
  setSegmentBase(which: 'fs' | 'gs', value: bigint): boolean;
  getSegmentBase(which: 'fs' | 'gs'): bigint;
  /** Sleeps up to `ms`, waking early when the call is cancelled or reaches its deadline. */
  sleep(ms: number): void;
  /** Runs a host function (KVMPOOL_SYSCALL.HOST_CALL, host-call.ts); absent: the pool has none. */
  hostCall?: LinuxHostCall;
}

/** The program's pid, tid and process group. */
export const PID = 2;
/** Syscall numbers kvmpool gives SDK programs (above Linux's range). */
export const KVMPOOL_SYSCALL = { CHECKPOINT: 0x4b50_0001, HOST_CALL: 0x4b50_0002, HOST_RESULT: 0x4b50_0003 } as const;

export interface SyscallStats {
  syscalls: number;
  /** Syscalls not implemented (they returned ENOSYS), by name. */
  unknown: Record<string, number>;
}

const NAMES_KEPT = 64;

export class SyscallLayer {
  readonly mem: Uint8Array;
  readonly view: DataView;
  readonly size: number;
  readonly config: LinuxProgramConfig;
  readonly host: LayerHost;
  /** Guest address of the scratch page the stub uses (syscall-stub.ts `syscallStubCode`). */
  readonly scratch: number;
  state: ProcessState;
  end: RunEnd | undefined;
  /** Capture at the first read of stdin (then cleared). */
  captureAtFirstRead = false;
  /** kvmpool_checkpoint() captures (SDK programs). */
  captureAtCheckpoint = false;
  syscalls = 0;
  unknown = new Map<string, number>();
  readonly #a = new Float64Array(6);
  readonly #i = new Int32Array(6);
  readonly #hostCalls: HostCalls;

  constructor(mem: Uint8Array, config: LinuxProgramConfig, layout: ProcessLayout, host: LayerHost, scratch = SCRATCH_ADDRESS) {
    this.mem = mem;
    this.scratch = scratch;
    this.view = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    this.size = layout.memory;
    this.config = config;
    this.host = host;
    this.state = new ProcessState(layout);
    this.#hostCalls = new HostCalls(host.hostCall);
  }

  get layout(): ProcessLayout {
    return this.state.layout;
  }

  /** Serves the syscall the stub left in the scratch page (the vCPU is stopped in its exit). */
  serve(): void {
    const v = this.view;
    const s = this.scratch;
    const a = this.#a;
    const i = this.#i;
    for (let n = 0; n < 6; n++) {
      const at = s + SCRATCH.ARGS + 8 * n;
      const lo = v.getUint32(at, true);
      a[n] = v.getUint32(at + 4, true) * 0x1_0000_0000 + lo;
      i[n] = lo | 0;
    }
    const nrHi = v.getUint32(s + SCRATCH.NR + 4, true);
    const nr = nrHi === 0 ? v.getUint32(s + SCRATCH.NR, true) : -1;
    this.syscalls++;
    const fn = nr >= 0 ? SYSCALLS[nr] : undefined;
    let r: number;
    if (fn) r = fn(this, a, i);
    else if (nr === KVMPOOL_SYSCALL.CHECKPOINT) r = this.#checkpoint();
    else if (nr === KVMPOOL_SYSCALL.HOST_CALL) r = this.#hostCalls.call(this, a);
    else if (nr === KVMPOOL_SYSCALL.HOST_RESULT) r = this.#hostCalls.result(this, a);
    else r = this.#unknown(nr, nrHi);
    if (this.end?.kind === 'capture') return; // served after the capture, for each call
    this.setResult(r);
  }

  /** Argument `n` (0–5) of the syscall being served as an exact signed 64-bit value (offsets). */
  argI64(n: number): bigint {
    return this.view.getBigInt64(this.scratch + SCRATCH.ARGS + 8 * n, true);
  }

  /** Writes `r` where the stub loads rax from. */
  setResult(r: number): void {
    const at = this.scratch + SCRATCH.NR;
    const v = this.view;
    if (r < 0) {
      v.setInt32(at, r, true);
      v.setInt32(at + 4, -1, true);
    } else {
      v.setUint32(at, r % 0x1_0000_0000, true);
      v.setUint32(at + 4, Math.floor(r / 0x1_0000_0000), true);
    }
  }

  #checkpoint(): number {
    if (!this.captureAtCheckpoint) return 0;
    this.captureAtCheckpoint = false;
    this.end = { kind: 'capture' };
    return 0;
  }

  #unknown(nr: number, hi: number): number {
    const name = nr >= 0 ? (SYSCALL_NAMES[nr] ?? `syscall_${nr}`) : `syscall_0x${hi.toString(16)}${this.view.getUint32(this.scratch, true).toString(16).padStart(8, '0')}`;
    if (this.config.strict) {
      this.end = { kind: 'error', error: new GuestError(`the program made syscall ${name}${nr >= 0 ? ` (${nr})` : ''}, which kvmpool does not implement (strict mode)`, -E.NOSYS) };
      return -E.NOSYS;
    }
    if (this.unknown.has(name) || this.unknown.size < NAMES_KEPT) this.unknown.set(name, (this.unknown.get(name) ?? 0) + 1);
    else this.unknown.set('(others)', (this.unknown.get('(others)') ?? 0) + 1);
    return -E.NOSYS;
  }

  /** Per-call counters back to zero (the start of a call). */
  resetStats(): void {
    this.syscalls = 0;
    this.unknown = new Map();
    this.#hostCalls.clear();
  }

  stats(): SyscallStats {
    return { syscalls: this.syscalls, unknown: Object.fromEntries(this.unknown) };
  }

  // --- guest memory, checked -------------------------------------------------------------

  /** Whether [ptr, ptr + len) lies in the program's memory (a zero length always does). */
  inRange(ptr: number, len: number): boolean {
    return len === 0 || (ptr >= this.layout.userMin && len >= 0 && ptr + len <= this.size);
  }

  /** A view of [ptr, ptr + len) to read, or undefined (EFAULT). */
  readable(ptr: number, len: number): Uint8Array | undefined {
    return this.inRange(ptr, len) ? this.mem.subarray(ptr, ptr + len) : undefined;
  }

  /** A view of [ptr, ptr + len) to write (its pages marked dirty), or undefined (EFAULT). */
  writable(ptr: number, len: number): Uint8Array | undefined {
    if (!this.inRange(ptr, len)) return undefined;
    if (len > 0) this.host.markDirty(ptr, len);
    return this.mem.subarray(ptr, ptr + len);
  }

  /** Zeroes [ptr, ptr + len) (in range, checked by the caller). */
  zero(ptr: number, len: number): void {
    if (len <= 0) return;
    this.host.markDirty(ptr, len);
    this.mem.fill(0, ptr, ptr + len);
  }

  u64(ptr: number): number | undefined {
    if (!this.inRange(ptr, 8)) return undefined;
    return this.view.getUint32(ptr + 4, true) * 0x1_0000_0000 + this.view.getUint32(ptr, true);
  }

  i64(ptr: number): bigint | undefined {
    return this.inRange(ptr, 8) ? this.view.getBigInt64(ptr, true) : undefined;
  }

  u32(ptr: number): number | undefined {
    return this.inRange(ptr, 4) ? this.view.getUint32(ptr, true) : undefined;
  }

  /** Writes little-endian u64 words at ptr; false (EFAULT) if out of range. */
  putWords(ptr: number, words: readonly (number | bigint)[]): boolean {
    const out = this.writable(ptr, words.length * 8);
    if (!out) return false;
    words.forEach((w, n) => this.view.setBigInt64(ptr + 8 * n, BigInt.asIntN(64, BigInt(w)), true));
    return true;
  }

  /** A NUL-terminated string of at most `max` bytes, or -EFAULT / -ENAMETOOLONG. */
  cstring(ptr: number, max = 4096): string | number {
    if (!this.inRange(ptr, 1)) return -E.FAULT;
    const end = Math.min(this.size, ptr + max + 1);
    const nul = this.mem.subarray(ptr, end).indexOf(0);
    if (nul < 0) return end - ptr > max ? -E.NAMETOOLONG : -E.FAULT;
    return dec.decode(this.mem.subarray(ptr, ptr + nul));
  }

  // --- how a call ends -------------------------------------------------------------------

  exit(code: number): number {
    this.end = { kind: 'exit', code: code & 0xff };
    return 0;
  }

  killedBy(signal: number): number {
    this.end = { kind: 'signal', signal };
    return 0;
  }

  /** Output to fd 1 or 2, within maxOutput; past it, per outputLimit. */
  output(which: 'stdout' | 'stderr', bytes: Uint8Array): void {
    const stream = this.state[which];
    stream.append(bytes, this.config.maxOutput);
    if (stream.dropped > 0 && this.config.outputLimit === 'error' && !this.end) {
      this.end = {
        kind: 'error',
        error: new GuestLimitError('maxOutput', `the program wrote more than ${this.config.maxOutput} bytes to ${which} (maxOutput)`),
      };
    }
  }

  /** Page-aligned [start, end) of what a program break between a and b covers. */
  static pages(a: number, b: number): [number, number] {
    return [Math.ceil(a / PAGE_SIZE) * PAGE_SIZE, Math.ceil(b / PAGE_SIZE) * PAGE_SIZE];
  }
}

export { signalName };
const dec = new TextDecoder();
