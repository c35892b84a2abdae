/**
 * @kvmpool/js's errors, on core's model (a KvmpoolError with a stable `code`):
 * - JsError: the script threw (or its promise rejected); it carries the guest's error.
 * - JsValueError: a value could not cross as JSON (an argument, the result, a host function's
 *   result): a BigInt or a cycle, with the path to it.
 */
import { KvmpoolError } from '@kvmpool/core';

export const JS_ERROR_CODES = { js: 'ERR_KVMPOOL_JS', value: 'ERR_KVMPOOL_JS_VALUE' } as const;

/** What the script threw, as the guest saw it. */
export interface GuestErrorInfo {
  /** The error's `name` in the guest: 'TypeError', 'RangeError', 'InternalError' (out of memory, stack overflow)… */
  name: string;
  message: string;
  /** The script's frames (the sandbox's own cut off), or '' when none. */
  stack: string;
  /** When the script threw a primitive (`throw 42`): it, if JSON can carry it. */
  thrown?: unknown;
}

/** The script threw, or the promise it returned rejected. `jsName`, `jsMessage`, `jsStack` are the guest's. */
export class JsError extends KvmpoolError {
  override readonly name = 'JsError';
  readonly jsName: string;
  readonly jsMessage: string;
  readonly jsStack: string;
  /** A primitive the script threw (`throw 'nope'`), when it threw one. */
  readonly thrown?: unknown;

  constructor(info: GuestErrorInfo) {
    super(JS_ERROR_CODES.js, `${info.name}: ${info.message}`);
    this.jsName = info.name;
    this.jsMessage = info.message;
    this.jsStack = info.stack;
    if ('thrown' in info) this.thrown = info.thrown;
  }
}

/** A value that cannot cross the sandbox boundary as JSON. */
export class JsValueError extends KvmpoolError {
  override readonly name = 'JsValueError';
  /** Where the value is: `args[0].a[2]`, `result.self`, `the result of host.lookup`. */
  readonly path: string;
  constructor(path: string, message: string) {
    super(JS_ERROR_CODES.value, message);
    this.path = path;
  }
}
