/** Bytes in from users: one accepted set of types, converted without copying where possible. */
import { invalidArgument } from '../errors.js';

/** What kvmpool accepts as bytes: any view (its bytes, not its elements), a buffer, or a string (UTF-8). */
export type Bytes = Uint8Array | ArrayBufferView | ArrayBuffer | SharedArrayBuffer | string;

const encoder = new TextEncoder();

/**
 * `v` as a Uint8Array over the same memory (a string is encoded as UTF-8). Anything else is a
 * TypeError naming `what`: a number, an object, a Promise or `undefined` is never read as 0 bytes.
 */
export function toBytes(v: unknown, what: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return encoder.encode(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) return new Uint8Array(v);
  throw invalidArgument(what, 'a Uint8Array, an ArrayBufferView, an ArrayBuffer or a string', v);
}

/** Like `toBytes`, but `undefined` and `null` mean no bytes (a host function that returns nothing). */
export function toBytesOrEmpty(v: unknown, what: string): Uint8Array {
  if (v === undefined || v === null) return new Uint8Array(0);
  return toBytes(v, what);
}
