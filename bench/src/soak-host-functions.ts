/** Synchronous host functions of the soak (bench/src/soak.ts), loaded in each SandboxPool worker. */

/** The argument's bytes in reverse order. */
export function rev(arg: Uint8Array): Uint8Array {
  return Uint8Array.from(arg).reverse();
}

/** Always fails: the call must end with a HostFunctionError. */
export function boom(): never {
  throw new Error('soak boom');
}
