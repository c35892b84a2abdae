/**
 * The bounded binary reply a pool worker writes after a call (and after a failed start): the
 * error, if any, then the guest's prints, in a fixed-size area of the call channel.
 *
 *   [u32 error length][u32 print count][u32 prints dropped][u32 print bytes dropped]
 *   [error: JSON of a size-bounded EncodedError][print: u32 length, UTF-8 bytes]…
 *
 * Every value in it comes, in the end, from the guest (prints, abort text, host-function
 * messages): the writer never writes past the area (long text is cut at a character boundary,
 * prints that do not fit are counted, the error is shrunk until it fits), and the reader checks
 * every length against the area and never throws — a reply it cannot read becomes a
 * SandboxWorkerError for that call.
 */
import { encodeError, type EncodedError } from '../errors.js';

const HEAD = 16;
/** Most bytes the encoded error may take in a reply (the rest is for prints). */
export const REPLY_ERROR_BYTES = 16 * 1024;
/** Longest message, stack or string field kept in an encoded error (characters). */
const MAX_TEXT = 4096;
const MAX_FIELD = 1024;
const MAX_CAUSES = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface DecodedReply {
  error: EncodedError | undefined;
  prints: string[];
  /** Prints that did not fit at all. */
  printsDropped: number;
  /** Bytes of prints left out (cut prints and dropped ones). */
  printBytesDropped: number;
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;
}

/** `w` with every string cut to size and at most MAX_CAUSES causes; `stacks: false` drops stacks. */
function shrink(w: EncodedError, text: number, stacks: boolean, causes: number): EncodedError {
  const fields: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(w.fields).slice(0, 32)) fields[clip(k, 64)] = typeof v === 'string' ? clip(v, Math.min(text, MAX_FIELD)) : v;
  const out: EncodedError = { name: clip(w.name, 128), message: clip(w.message, text), fields };
  if (w.code !== undefined) out.code = clip(w.code, 128);
  if (stacks && w.stack) out.stack = clip(w.stack, text);
  if (w.cause && causes > 0) out.cause = shrink(w.cause, text, stacks, causes - 1);
  return out;
}

/**
 * `error` encoded (class, code, fields, stack, cause) as JSON of at most `maxBytes` bytes:
 * strings are cut, then stacks, then causes are dropped until it fits.
 */
export function boundedErrorJson(error: unknown, maxBytes = REPLY_ERROR_BYTES): Uint8Array {
  const full = encodeError(error);
  const tries: [number, boolean, number][] = [[MAX_TEXT, true, MAX_CAUSES], [MAX_TEXT, false, MAX_CAUSES], [MAX_TEXT, false, 0], [256, false, 0]];
  for (const [text, stacks, causes] of tries) {
    const json = encoder.encode(JSON.stringify(shrink(full, text, stacks, causes)));
    if (json.length <= maxBytes) return json;
  }
  return encoder.encode(JSON.stringify({ name: 'Error', message: 'error too large to report', fields: {} })).subarray(0, maxBytes);
}

/**
 * Writes a reply into `area`; returns its length. `droppedBefore` counts prints the VM itself
 * already left out.
 */
export function encodeReply(area: Uint8Array, prints: readonly string[], error: unknown, droppedBefore = 0, droppedBytesBefore = 0): number {
  const view = new DataView(area.buffer, area.byteOffset, area.byteLength);
  let at = HEAD;
  let errorLen = 0;
  if (error !== undefined) {
    const json = boundedErrorJson(error, Math.min(REPLY_ERROR_BYTES, area.length - HEAD));
    area.set(json, at);
    errorLen = json.length;
    at += errorLen;
  }
  let count = 0;
  let dropped = droppedBefore;
  let droppedBytes = droppedBytesBefore;
  for (const text of prints) {
    if (at + 4 >= area.length) {
      dropped++;
      droppedBytes += Buffer.byteLength(text);
      continue;
    }
    // encodeInto stops at the last whole character that fits.
    const { read, written } = encoder.encodeInto(text, area.subarray(at + 4));
    view.setUint32(at, written, true);
    at += 4 + written;
    count++;
    if (read < text.length) droppedBytes += Buffer.byteLength(text) - written;
  }
  view.setUint32(0, errorLen, true);
  view.setUint32(4, count, true);
  view.setUint32(8, dropped, true);
  view.setUint32(12, droppedBytes, true);
  return at;
}

function isEncodedError(v: unknown, depth = 0): v is EncodedError {
  if (typeof v !== 'object' || v === null || depth > MAX_CAUSES + 1) return false;
  const w = v as Record<string, unknown>;
  if (typeof w.name !== 'string' || typeof w.message !== 'string') return false;
  if (typeof w.fields !== 'object' || w.fields === null) return false;
  for (const f of Object.values(w.fields)) if (!['string', 'number', 'boolean'].includes(typeof f)) return false;
  if (w.code !== undefined && typeof w.code !== 'string') return false;
  if (w.stack !== undefined && typeof w.stack !== 'string') return false;
  return w.cause === undefined || isEncodedError(w.cause, depth + 1);
}

/** Parses error JSON written by `boundedErrorJson`; undefined if it is not one. */
export function parseErrorJson(bytes: Uint8Array): EncodedError | undefined {
  try {
    const v: unknown = JSON.parse(decoder.decode(bytes));
    return isEncodedError(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

const unreadable = (why: string): DecodedReply => ({
  error: { name: 'SandboxWorkerError', code: 'ERR_KVMPOOL_SANDBOX_WORKER', message: `unreadable reply from the sandbox worker: ${why}`, fields: {} },
  prints: [],
  printsDropped: 0,
  printBytesDropped: 0,
});

/** The reply of a call with no error, no prints, nothing dropped: shared, never to be changed. */
const EMPTY_REPLY: DecodedReply = Object.freeze({ error: undefined, prints: Object.freeze([]) as unknown as string[], printsDropped: 0, printBytesDropped: 0 });

/** Reads the reply of `length` bytes at the start of `area`. Never throws. */
export function decodeReply(area: Uint8Array, length: number): DecodedReply {
  if (!Number.isInteger(length) || length < HEAD || length > area.length) return unreadable(`length ${length}`);
  // The common reply — no error, no prints, nothing dropped — costs no allocation.
  if (length === HEAD && area[0]! + area[1]! + area[2]! + area[3]! === 0) {
    let zero = true;
    for (let i = 4; i < HEAD; i++) zero &&= area[i] === 0;
    if (zero) return EMPTY_REPLY;
  }
  const view = new DataView(area.buffer, area.byteOffset, length);
  const errorLen = view.getUint32(0, true);
  const count = view.getUint32(4, true);
  if (errorLen > length - HEAD) return unreadable(`error length ${errorLen}`);
  let error: EncodedError | undefined;
  if (errorLen > 0) {
    error = parseErrorJson(area.subarray(HEAD, HEAD + errorLen));
    if (!error) return unreadable('malformed error');
  }
  const prints: string[] = [];
  let at = HEAD + errorLen;
  for (let i = 0; i < count; i++) {
    if (at + 4 > length) return unreadable(`print ${i} past the end`);
    const n = view.getUint32(at, true);
    if (n > length - at - 4) return unreadable(`print ${i} of ${n} bytes past the end`);
    prints.push(decoder.decode(area.subarray(at + 4, at + 4 + n)));
    at += 4 + n;
  }
  return { error, prints, printsDropped: view.getUint32(8, true), printBytesDropped: view.getUint32(12, true) };
}
