/**
 * Synchronous host functions of the `sandbox` benchmark, loaded in each SandboxPool worker
 * (the pool's `hostFunctions` module) and used by the main-thread (async) variant too.
 */

/** The argument with every byte + 1 (what bench/c/sandbox.c's "inc" does). */
export function inc(arg: Uint8Array): Uint8Array {
  const out = new Uint8Array(arg.length);
  for (let i = 0; i < arg.length; i++) out[i] = (arg[i]! + 1) & 0xff;
  return out;
}
