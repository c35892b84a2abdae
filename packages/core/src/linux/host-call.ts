/**
 * Host calls from a Linux program: kvmpool syscall KVMPOOL_SYSCALL.HOST_CALL runs a host function
 * of the embedding process (LinuxPool's `hostFunctions`, served on the main thread through the
 * pool worker's remote call) and hands its result back; HOST_RESULT fetches the rest of a result
 * that did not fit the caller's buffer. sdk/kvmpool-linux.h has the C side.
 *
 *   HOST_CALL(name, name_len, arg, arg_len, out, out_cap) → the result's length n ≥ 0, with
 *     min(n, out_cap) bytes at out; the whole result is kept until the next host call.
 *   HOST_RESULT(out, out_cap) → bytes of the kept result copied to out.
 *   Errors: -ENOSYS no host functions in this pool; -ENOENT no such function; -EFAULT a bad
 *   pointer; -EINVAL a name over 256 bytes; -EIO the function threw, and the kept result is its
 *   error as JSON {"name","message"}. A call that times out or is aborted while the function runs
 *   ends the run with that error (the program sees -EINTR, and never runs on).
 */
import { HostFunctionError } from '../errors.js';
import { E } from './errno.js';
import type { SyscallLayer } from './syscall-layer.js';

/**
 * Runs host function `name` on `arg` (throws HostFunctionError when it fails; other errors end the
 * run). `arg` is a view of the program's memory, valid only during the call: copy what you keep
 * (it is not copied for you, so a program cannot make the host allocate a copy of its memory).
 */
export type LinuxHostCall = (name: string, arg: Uint8Array) => Uint8Array;

const MAX_NAME = 256;
const enc = new TextEncoder();
const dec = new TextDecoder();

export class HostCalls {
  /** The last result, kept for HOST_RESULT. */
  #kept: Uint8Array = new Uint8Array(0);
  readonly #call: LinuxHostCall | undefined;

  constructor(call: LinuxHostCall | undefined) {
    this.#call = call;
  }

  /** Forgets the kept result (the start of every call). */
  clear(): void {
    this.#kept = new Uint8Array(0);
  }

  call(k: SyscallLayer, a: Float64Array): number {
    if (!this.#call) return -E.NOSYS;
    const [namePtr, nameLen, argPtr, argLen, outPtr, outCap] = a as unknown as number[];
    if (nameLen! > MAX_NAME) return -E.INVAL;
    const nameBytes = k.readable(namePtr!, nameLen!);
    const arg = k.readable(argPtr!, argLen!);
    if (!nameBytes || !arg || !k.inRange(outPtr!, outCap!)) return -E.FAULT;
    const name = dec.decode(nameBytes);
    let result: Uint8Array;
    try {
      result = this.#call(name, arg);
    } catch (e) {
      if (!(e instanceof HostFunctionError)) {
        k.end = { kind: 'error', error: e instanceof Error ? e : new Error(String(e)) };
        return -E.INTR;
      }
      const cause = e.cause instanceof Error ? e.cause : undefined;
      if (!cause && /no such host function$/.test(e.message)) {
        this.#kept = new Uint8Array(0);
        return -E.NOENT;
      }
      this.#kept = enc.encode(JSON.stringify({ name: cause?.name ?? 'Error', message: cause?.message ?? e.message }));
      return -E.IO;
    }
    this.#kept = result;
    return this.#copy(k, outPtr!, outCap!) < 0 ? -E.FAULT : result.length;
  }

  result(k: SyscallLayer, a: Float64Array): number {
    return this.#copy(k, a[0]!, a[1]!);
  }

  #copy(k: SyscallLayer, out: number, cap: number): number {
    const n = Math.min(cap, this.#kept.length);
    const dst = k.writable(out, n);
    if (!dst) return -E.FAULT;
    dst.set(this.#kept.subarray(0, n));
    return n;
  }
}
