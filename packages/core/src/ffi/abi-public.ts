/** The public face of the ABI layer: struct layouts and their codecs, without libc. */
export * from './kvm-abi.js';
export { decode, encode, readAt, writeAt, type Infer, type StructLayout } from './layout.js';
