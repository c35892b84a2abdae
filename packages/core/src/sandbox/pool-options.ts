/**
 * SandboxPool's options, checked once when the pool is made: every wrong value is a TypeError
 * (wrong kind) or RangeError (out of range) whose message starts with the option's name. Call
 * options are checked by `checkTimeout` / `checkSignal` before a call is queued.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { invalidArgument, outOfRange } from '../errors.js';
import { parseElf, type ElfImage } from '../loader/elf.js';
import { formatBytes, parseSize, type Size } from '../util/size.js';
import type { AsyncHostFunction } from './host-call-device.js';
import { sandboxLayout } from './sandbox-vm.js';

/** Largest guest memory: one SharedArrayBuffer per VM, which Node 20 caps at 4 GiB. */
export const MAX_MEMORY = 4 * 1024 ** 3;
/** Largest time limit: what a signed 32-bit ms count (and setTimeout) holds. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;
export const MAX_THREADS = 256;
export const DEFAULT_INIT_TIMEOUT_MS = 10_000;

export interface ResolvedPoolOptions {
  elf: Uint8Array;
  source: string;
  image: ElfImage;
  memory: number;
  inputSize: number;
  outputSize: number;
  threads: number;
  timeoutMs: number;
  initTimeoutMs: number;
  /** file: URL of the module, and the option as given. */
  hostModule: { url: string; name: string } | undefined;
  asyncHostFunctions: Record<string, AsyncHostFunction>;
  onPrint: ((text: string, fn: string) => void) | undefined;
  kvmPath: string | undefined;
  /** SandboxPoolOptions.warmUp, checked (the input copied). */
  warmUp?: { fn: string; input: Uint8Array } | undefined;
}

/** A whole number of ms in [0, 2^31-1]; `undefined` → `fallback`. */
export function checkTimeout(what: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number') throw invalidArgument(what, 'a number of milliseconds', v);
  if (!Number.isInteger(v) || v < 0 || v > MAX_TIMEOUT_MS) throw outOfRange(what, `${v} is not a whole number of milliseconds from 0 to ${MAX_TIMEOUT_MS}`);
  return v;
}

export function checkSignal(v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw invalidArgument('signal', 'an AbortSignal', v);
  return v;
}

/** A byte count or size string for option `what`, at most `max`; `undefined` → `fallback`. */
export function size(what: string, v: unknown, fallback: Size, max: number): number {
  if (v === undefined) v = fallback;
  if (typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'string') throw invalidArgument(what, "a byte count or a size such as '8 MiB'", v);
  if (typeof v === 'number' && !Number.isFinite(v)) throw outOfRange(what, `${v} is not a byte count`);
  if (typeof v === 'bigint' && (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER))) throw outOfRange(what, `${v} is not a byte count`);
  const n = parseSize(v, what);
  if (n > max) throw outOfRange(what, `${formatBytes(n)} is more than the limit of ${formatBytes(max)}`);
  return n;
}

/** The ELF bytes of option `what` (a path, a file: URL or bytes), and where they came from. */
export function guestBytes(v: unknown, what = 'guest'): { elf: Uint8Array; source: string } {
  let path: string | undefined;
  if (typeof v === 'string') path = v;
  else if (v instanceof URL) {
    if (v.protocol !== 'file:') throw invalidArgument(what, 'a path, a file: URL or the ELF bytes', v.href);
    path = fileURLToPath(v);
  } else if (v instanceof Uint8Array) return { elf: v, source: `${what} image` };
  else if (v instanceof ArrayBuffer) return { elf: new Uint8Array(v), source: `${what} image` };
  else throw invalidArgument(what, 'a path, a file: URL or the ELF bytes (Uint8Array, Buffer, ArrayBuffer)', v);
  try {
    return { elf: new Uint8Array(readFileSync(path)), source: path };
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function hostModule(v: unknown): ResolvedPoolOptions['hostModule'] {
  if (v === undefined) return undefined;
  let found: { url: string; name: string };
  if (v instanceof URL) found = { url: v.href, name: v.protocol === 'file:' ? fileURLToPath(v) : v.href };
  else if (typeof v === 'string' && v.length > 0) {
    // A path (relative to the working directory) or a URL string.
    const url = /^[a-z][a-z0-9+.-]*:/i.test(v) && !/^[a-z]:[\\/]/i.test(v) ? v : pathToFileURL(v).href;
    found = { url, name: v };
  } else throw invalidArgument('hostFunctions', 'a module path or URL', v);
  // A module file that is not there is an error of the option, said now (not at every call).
  if (found.url.startsWith('file:') && !existsSync(fileURLToPath(found.url))) {
    throw outOfRange('hostFunctions', `${found.name}: no such module file`);
  }
  return found;
}

/** Option `what`: an object of functions (host functions), each checked to be one; `undefined` → none. */
export function functionsOption<F>(v: unknown, what: string): Record<string, F> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgument(what, 'an object of functions', v);
  const out: Record<string, F> = {};
  for (const [name, fn] of Object.entries(v)) {
    if (typeof fn !== 'function') throw invalidArgument(`${what}.${name}`, 'a function', fn);
    out[name] = fn as F;
  }
  return out;
}

export function asyncFunctions(v: unknown, what = 'asyncHostFunctions'): Record<string, AsyncHostFunction> {
  return functionsOption<AsyncHostFunction>(v, what);
}

export function resolvePoolOptions(o: unknown): ResolvedPoolOptions {
  if (typeof o !== 'object' || o === null) throw invalidArgument('options', 'an object', o);
  const opts = o as Record<string, unknown>;
  const threads = opts.threads ?? availableParallelism();
  if (typeof threads !== 'number') throw invalidArgument('threads', 'a number', threads);
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) throw outOfRange('threads', `${threads} is not a whole number from 1 to ${MAX_THREADS}`);
  const memory = size('memory', opts.memory, '8 MiB', MAX_MEMORY);
  const inputSize = size('inputSize', opts.inputSize, '1 MiB', MAX_MEMORY);
  const outputSize = size('outputSize', opts.outputSize, '1 MiB', MAX_MEMORY);
  const timeoutMs = checkTimeout('timeoutMs', opts.timeoutMs, 0);
  const initTimeoutMs = checkTimeout('initTimeoutMs', opts.initTimeoutMs, DEFAULT_INIT_TIMEOUT_MS);
  const module = hostModule(opts.hostFunctions);
  const asyncHostFunctions = asyncFunctions(opts.asyncHostFunctions);
  if (opts.onPrint !== undefined && typeof opts.onPrint !== 'function') throw invalidArgument('onPrint', 'a function', opts.onPrint);
  if (opts.kvmPath !== undefined && typeof opts.kvmPath !== 'string') throw invalidArgument('kvmPath', 'a path', opts.kvmPath);
  const { elf, source } = guestBytes(opts.guest);
  const image = parseElf(elf, source);
  sandboxLayout({ image, memory, inputSize, outputSize });
  const warmUp = checkWarmUp(opts.warmUp, image, inputSize);
  return {
    elf,
    source,
    image,
    memory,
    inputSize,
    outputSize,
    threads,
    timeoutMs,
    initTimeoutMs,
    hostModule: module,
    asyncHostFunctions,
    onPrint: opts.onPrint as ResolvedPoolOptions['onPrint'],
    kvmPath: opts.kvmPath as string | undefined,
    ...(warmUp ? { warmUp } : {}),
  };
}

/** `warmUp`: an exported function and at most inputSize bytes of input (default none). */
export function checkWarmUp(v: unknown, image: ElfImage, inputSize: number): { fn: string; input: Uint8Array } | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null) throw invalidArgument('warmUp', 'an object { fn, input? }', v);
  const { fn, input } = v as { fn?: unknown; input?: unknown };
  if (typeof fn !== 'string' || !image.functions.has(fn)) throw invalidArgument('warmUp.fn', 'the name of a function the guest exports', fn);
  if (input !== undefined && !(input instanceof Uint8Array)) throw invalidArgument('warmUp.input', 'a Uint8Array', input);
  const bytes = input instanceof Uint8Array ? input.slice() : new Uint8Array(0);
  if (bytes.length > inputSize) throw outOfRange('warmUp.input', `${bytes.length} bytes is more than inputSize (${inputSize})`);
  return { fn, input: bytes };
}
