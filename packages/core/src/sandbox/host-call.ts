/**
 * The host side of a sandbox guest's host calls: the call area at 0xc000 is decoded here, and
 * every value in it is the guest's choice, so every one is bounded before it is used. A
 * (pointer, length) pair is checked against guest memory in bigint arithmetic (u64 fields,
 * no overflow, no Number rounding) before anything is copied or decoded; text is bounded per
 * call (prints) or truncated (abort messages); a host-function name has a length limit.
 */
import { GuestError, GuestLimitError, HostFunctionError } from '../errors.js';
import { toBytesOrEmpty } from '../util/bytes.js';
import { CALL, CALL_AREA, IMAGE_MIN, OP } from './abi.js';

/** What a guest may send the host in one call. */
export const SANDBOX_LIMITS = {
  /** Bytes of kvmpool_print text kept per call; the rest is counted in `printsDropped`. */
  PRINT_BYTES: 64 * 1024,
  /** kvmpool_print records kept per call; later ones are dropped (and their bytes counted). */
  PRINT_RECORDS: 1024,
  /** Bytes of a kvmpool_abort message kept; the rest is cut off. */
  ABORT_BYTES: 4096,
  /** Longest host-function name, in bytes. */
  NAME_BYTES: 256,
} as const;

const decoder = new TextDecoder();

/** The prints of one call, bounded by SANDBOX_LIMITS. */
export class PrintLog {
  texts: string[] = [];
  bytes = 0;
  /** Bytes the guest printed past the limits. */
  droppedBytes = 0;
  /** Prints dropped whole (past the record or byte limit). */
  droppedRecords = 0;

  add(text: Uint8Array): void {
    const room = this.texts.length < SANDBOX_LIMITS.PRINT_RECORDS ? SANDBOX_LIMITS.PRINT_BYTES - this.bytes : 0;
    const kept = Math.min(room, text.length);
    this.droppedBytes += text.length - kept;
    if (kept === 0) {
      if (text.length > 0) this.droppedRecords++;
      return;
    }
    this.texts.push(decoder.decode(text.subarray(0, kept)));
    this.bytes += kept;
  }
}

export interface HostCallContext {
  /** Guest memory (the whole slot from GPA 0). */
  readonly mem: Uint8Array;
  readonly view: DataView;
  readonly prints: PrintLog;
  /** Runs host function `name` (sync or remote) and returns what it gave, unconverted. */
  runHostFunction(name: string, arg: Uint8Array, cap: number): unknown;
  /** Pages the host wrote (the dirty log sees only guest writes). */
  markHostDirty(at: number, len: number): void;
}

/**
 * The offset of guest range [ptr, ptr + len) if it lies inside guest memory, else a
 * HostFunctionError naming `fn` and `what`. Both are u64 from the guest.
 */
export function guestRange(size: number, fn: string, what: string, ptr: bigint, len: bigint): number {
  const end = BigInt(size);
  if (len > end || ptr > end - len) {
    throw new HostFunctionError(fn, `${what} [0x${ptr.toString(16)}, +${len}) is outside guest memory (${size} bytes)`);
  }
  return Number(ptr);
}

/** A host function's result as bytes; anything but bytes, a string or nothing is the function's fault. */
export function hostResultBytes(name: string, value: unknown): Uint8Array {
  try {
    return toBytesOrEmpty(value, `the result of host function ${name}`);
  } catch (e) {
    throw new HostFunctionError(name, e instanceof Error ? e.message : String(e), e);
  }
}

/** Serves the host call the guest just made (an OUT to PORT_HOSTCALL). Throws to end the call. */
export function serveHostCall(ctx: HostCallContext): void {
  const base = Number(CALL_AREA);
  const v = ctx.view;
  const size = ctx.mem.length;
  const a = (field: number): bigint => v.getBigUint64(base + field, true);
  const op = a(CALL.OP);
  switch (op) {
    case BigInt(OP.PRINT): {
      const len = a(CALL.A1);
      const at = guestRange(size, 'print', 'text', a(CALL.A0), len);
      ctx.prints.add(ctx.mem.subarray(at, at + Number(len)));
      return;
    }
    case BigInt(OP.ABORT): {
      const len = a(CALL.A1);
      const at = guestRange(size, 'abort', 'message', a(CALL.A0), len);
      const kept = Math.min(Number(len), SANDBOX_LIMITS.ABORT_BYTES);
      const cut = Number(len) - kept;
      const text = decoder.decode(ctx.mem.subarray(at, at + kept));
      throw new GuestError(`guest aborted: ${text}${cut > 0 ? `… (${cut} more bytes cut off)` : ''}`, -3);
    }
    case BigInt(OP.CALL): {
      const nameLen = a(CALL.A1);
      if (nameLen > BigInt(SANDBOX_LIMITS.NAME_BYTES)) {
        throw new GuestLimitError('hostFunctionName', `the guest named a host function with ${nameLen} bytes; names are at most ${SANDBOX_LIMITS.NAME_BYTES} bytes`);
      }
      const nameAt = guestRange(size, 'call', 'host-function name', a(CALL.A0), nameLen);
      const name = decoder.decode(ctx.mem.subarray(nameAt, nameAt + Number(nameLen)));
      const argLen = a(CALL.A3);
      const argAt = guestRange(size, name, 'argument', a(CALL.A2), argLen);
      const cap = a(CALL.A5);
      const resAt = guestRange(size, name, 'result buffer', a(CALL.A4), cap);
      // The host writes only where the guest itself may write: never into the low area (system
      // tables and page tables, read-only to the guest, and the call area the host reads back).
      if (cap > 0n && BigInt(resAt) < IMAGE_MIN) {
        throw new HostFunctionError(name, `result buffer [0x${resAt.toString(16)}, +${cap}) starts below 0x${IMAGE_MIN.toString(16)}, in the area the host keeps for itself`);
      }
      const arg = ctx.mem.slice(argAt, argAt + Number(argLen));
      const result = hostResultBytes(name, ctx.runHostFunction(name, arg, Number(cap)));
      if (result.length > cap) throw new HostFunctionError(name, `returned ${result.length} bytes; the guest's buffer holds ${cap}`);
      ctx.mem.set(result, resAt);
      ctx.markHostDirty(resAt, result.length);
      v.setBigInt64(base + CALL.RET, BigInt(result.length), true);
      ctx.markHostDirty(base + CALL.RET, 8); // the guest need not have written the call area's page
      return;
    }
    default:
      throw new GuestError(`guest made an unknown host call (op ${op})`, -4);
  }
}
