/**
 * @kvmpool/js — JavaScript sandboxes: QuickJS in a hardware-isolated micro-VM, a pristine
 * context for every call. See docs/js.md.
 */
export { JsSandboxPool, type JsSandboxPoolOptions, type JsCallOptions, type JsHostFunction, type JsLogEntry, type JsRequest, type JsRunResult } from './js-pool.js';
export { JsError, JsValueError, JS_ERROR_CODES, type GuestErrorInfo } from './errors.js';
export { GUEST_PATH, QUICKJS_VERSION, guestBuilt } from './engine.js';
export { encodeValue } from './values.js';
