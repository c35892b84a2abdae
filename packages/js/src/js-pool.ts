/**
 * JsSandboxPool: untrusted JavaScript, each call in a pristine QuickJS context inside a
 * hardware-isolated micro-VM.
 *
 *   const js = new JsSandboxPool({ memoryLimit: '32 MiB', timeoutMs: 1000, hostFunctions: { lookup } });
 *   await js.eval('1 + 1');                                  // 2
 *   await js.call('(a, b) => a * b', 6, 7);                  // 42
 *   await js.eval('(async () => await host.lookup("k"))()'); // runs lookup() here, in the host
 *   await js.close();
 *
 * Underneath, a LinuxPool (@kvmpool/core) runs the QuickJS guest (guest/driver.c): its start-up
 * builds the runtime and context, and the pristine state is captured at its first read of
 * stdin, so every call starts from that warm, never-used context, with memory, registers and
 * the syscall layer's state reset after it and Math.random reseeded. The queue, deadlines,
 * abort and worker replacement are SandboxPool's.
 */
import { availableParallelism } from 'node:os';
import { GuestError, LinuxPool, formatBytes, parseSize, type LinuxPoolOptions, type LinuxRunResult, type SandboxPoolStats, type Size } from '@kvmpool/core';
import { JsError, JsValueError } from './errors.js';
import { GUEST_PATH } from './engine.js';
import { decodeArgs, encodeArgs, encodeValue } from './values.js';

/** A host function scripts call as `await host.NAME(...args)`: JSON-compatible values in and out. */
export type JsHostFunction = (...args: any[]) => unknown;

export interface JsSandboxPoolOptions {
  /** Worker threads, one warm VM each (1–256). Default os.availableParallelism(). */
  threads?: number;
  /** Per-call time limit in ms, host functions included (0: none). Default 10 000. */
  timeoutMs?: number;
  /** The engine's heap limit per call (JS_SetMemoryLimit). Past it a script gets `InternalError: out of memory`. Default '64 MiB'. */
  memoryLimit?: Size;
  /** The engine's stack limit (JS_SetMaxStackSize). Past it a script gets `InternalError: stack overflow`. Default '1 MiB'. */
  stackLimit?: Size;
  /** Largest request (code and arguments, as JSON) per call. Default '4 MiB'. */
  maxInput?: Size;
  /** Largest reply (result and logs, as JSON) per call; a larger one is a JsError (RangeError). Default '4 MiB'. */
  maxOutput?: Size;
  /** Console text kept per call; lines past it are counted in `logsDropped`. Default '1 MiB'. */
  maxLogBytes?: Size;
  /** Functions of this process that scripts may call: `await host.lookup(x)`. The call's timeoutMs covers them. */
  hostFunctions?: Record<string, JsHostFunction>;
  /** Every console line of every call, as it comes back (calls' logs are also in `run()`'s result). */
  onLog?: (entry: JsLogEntry) => void;
  /** Time limit of each worker's start-up (ms). Default 10 000. */
  initTimeoutMs?: number;
  kvmPath?: string;
}

export interface JsCallOptions {
  signal?: AbortSignal;
  /** This call's time limit in ms (0: none); default the pool's timeoutMs. */
  timeoutMs?: number;
}

export interface JsLogEntry {
  level: 'log' | 'info' | 'warn' | 'error' | 'debug' | 'trace';
  text: string;
}

export interface JsRunResult {
  /** The completion value of the code (eval) or the function's return value, awaited if a promise. */
  value: unknown;
  /** console.* output of this call, in order. */
  logs: JsLogEntry[];
  /** Console lines past maxLogBytes, not kept. */
  logsDropped: number;
  stats: { syscalls: number; resetPages: number };
}

/** What run() takes: code to evaluate, or a function's source and its arguments. */
export type JsRequest = { code: string } | { fn: string | ((...args: any[]) => unknown); args?: readonly unknown[] };

const HEADER = 4;
const MAX_THREADS = 256;
const MiB = 1024 * 1024;

function size(what: string, v: unknown, fallback: Size, min: number, max: number): number {
  const n = parseSize((v ?? fallback) as Size, what);
  if (n < min || n > max) throw new RangeError(`${what}: ${formatBytes(n)} is outside ${formatBytes(min)}–${formatBytes(max)}`);
  return n;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Reply {
  v?: unknown;
  u?: 1;
  e?: { name: string; message: string; stack: string; thrown?: unknown; primitive?: 1; path?: string };
  x?: { path: string; message: string };
  l?: [JsLogEntry['level'], string][];
  d?: number;
}

export class JsSandboxPool implements AsyncDisposable {
  readonly threads: number;
  readonly memoryLimit: number;
  readonly #pool: LinuxPool;
  readonly #onLog: ((entry: JsLogEntry) => void) | undefined;
  readonly #maxInput: number;

  /** Checks every option (TypeError / RangeError at once) and starts the workers. */
  constructor(options: JsSandboxPoolOptions = {}) {
    const engine = engineOptions(options);
    this.#pool = new LinuxPool(engine.linux);
    this.threads = engine.linux.threads;
    this.memoryLimit = engine.memoryLimit;
    this.#onLog = options.onLog;
    this.#maxInput = engine.maxInput;
  }

  /** Evaluates `code` as a global script in a pristine context; resolves with its completion value (awaited if a promise). */
  async eval(code: string, options: JsCallOptions = {}): Promise<unknown> {
    return (await this.run({ code }, options)).value;
  }

  /** Calls the function whose source is `fn` (or a function, by its source: it closes over nothing of this process) with `args`. */
  async call(fn: string | ((...args: any[]) => unknown), ...args: unknown[]): Promise<unknown> {
    return (await this.run({ fn, args })).value;
  }

  /** call() with options: `apply(fn, args, { timeoutMs, signal })`. */
  async apply(fn: string | ((...args: any[]) => unknown), args: readonly unknown[], options: JsCallOptions = {}): Promise<unknown> {
    return (await this.run({ fn, args }, options)).value;
  }

  /**
   * One call with everything it produced: its value, its console lines and counters. Rejects
   * with JsError (the script threw), JsValueError (a value JSON cannot carry), SandboxTimeoutError,
   * AbortError, SandboxWorkerError or ClosedError; the pool stays usable after each but the last.
   */
  async run(request: JsRequest, options: JsCallOptions = {}): Promise<JsRunResult> {
    const input = encodeRequest(request, this.#maxInput);
    const runOptions: JsCallOptions = {};
    if (options.signal !== undefined) runOptions.signal = options.signal;
    if (options.timeoutMs !== undefined) runOptions.timeoutMs = options.timeoutMs;
    return decodeReply(await this.#pool.run(input, runOptions), this.#onLog);
  }

  /** Resolves once every worker has its warm VM; rejects with the error that failed the pool (as `SandboxPool.ready`). */
  ready(): Promise<void> {
    return this.#pool.ready();
  }

  /** The pool's counters and latency (SandboxPool's). */
  stats(): SandboxPoolStats {
    return this.#pool.stats();
  }

  /** Refuses new calls, lets running ones finish, ends every worker; `force` fails them instead. */
  close(options: { force?: boolean } = {}): Promise<void> {
    return this.#pool.close(options);
  }

  destroy(): Promise<void> {
    return this.#pool.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** What JsSandboxPool runs: the LinuxPool options of its QuickJS guest, from its own options (all checked here: TypeError / RangeError). */
export function engineOptions(options: JsSandboxPoolOptions): { linux: LinuxPoolOptions & { threads: number }; memoryLimit: number; maxInput: number } {
  if (typeof options !== 'object' || options === null) throw new TypeError('options: expected an object');
  const o = options;
  const memoryLimit = size('memoryLimit', o.memoryLimit, '64 MiB', MiB, 2048 * MiB);
  const stackLimit = size('stackLimit', o.stackLimit, '1 MiB', 64 * 1024, 256 * MiB);
  const maxInput = size('maxInput', o.maxInput, '4 MiB', 4096, 256 * MiB);
  const maxOutput = size('maxOutput', o.maxOutput, '4 MiB', 4096, 256 * MiB);
  const maxLogBytes = size('maxLogBytes', o.maxLogBytes, '1 MiB', 0, 256 * MiB);
  const threads = o.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) throw new RangeError(`threads: ${String(threads)} is not a whole number from 1 to ${MAX_THREADS}`);
  if (o.onLog !== undefined && typeof o.onLog !== 'function') throw new TypeError('onLog: expected a function');
  const hostFunctions: Record<string, (arg: Uint8Array) => Promise<string>> = {};
  const names: string[] = [];
  if (o.hostFunctions !== undefined) {
    if (typeof o.hostFunctions !== 'object' || o.hostFunctions === null) throw new TypeError('hostFunctions: expected an object of functions');
    for (const [name, fn] of Object.entries(o.hostFunctions)) {
      if (typeof fn !== 'function') throw new TypeError(`hostFunctions.${name}: expected a function`);
      if (!/^[A-Za-z_$][A-Za-z0-9_$]{0,127}$/.test(name)) throw new RangeError(`hostFunctions: ${JSON.stringify(name)} is not an identifier`);
      names.push(name);
      hostFunctions[name] = async (arg) => {
        const result = await fn(...decodeArgs(dec.decode(arg)));
        return encodeValue(result, `the result of host.${name}`) ?? '';
      };
    }
  }
  // The VM's memory: the engine's heap region (guest/arena.c: the limit, twice, for the size
  // classes' fragmentation), the request and reply outside it (stdin, the output buffer), the
  // stack, libc's own. Committed only as the guest touches it.
  const stackSize = Math.max(8 * MiB, Math.ceil((2 * stackLimit + MiB) / 4096) * 4096);
  const arena = Math.ceil((2 * memoryLimit + 16 * MiB) / MiB) * MiB;
  const memory = Math.min(3 * 1024 * MiB, Math.ceil((arena + 2 * maxInput + 2 * maxOutput + stackSize + 16 * MiB) / (2 * MiB)) * 2 * MiB);
  const linux: LinuxPoolOptions & { threads: number } = {
    program: GUEST_PATH,
    argv: ['quickjs', `--memory-limit=${memoryLimit}`, `--stack-limit=${stackLimit}`, `--max-output=${maxOutput}`, `--max-logs=${maxLogBytes}`, `--arena=${arena}`, ...names.map((n) => `--host=${n}`)],
    memory,
    stackSize,
    start: 'first-read',
    maxInput: maxInput + HEADER,
    maxOutput: maxOutput + 64 * 1024,
    threads,
    timeoutMs: o.timeoutMs ?? 10_000,
    ...(o.initTimeoutMs !== undefined ? { initTimeoutMs: o.initTimeoutMs } : {}),
    ...(names.length > 0 ? { hostFunctions } : {}),
    ...(o.kvmPath !== undefined ? { kvmPath: o.kvmPath } : {}),
    // The pages a small script writes stay writable after every reset (LinuxPoolOptions.warmUp).
    warmUp: encodeRequest({ code: WARM_UP_SCRIPT }, maxInput),
  };
  return { linux, memoryLimit, maxInput };
}

/**
 * The script each worker runs once after start-up: the pages it writes (the engine's stack, the
 * heap's first arenas, atoms, the reply buffer) are the ones most calls write too.
 */
const WARM_UP_SCRIPT = "const o = { n: [1, 2, 3].map((x) => x + 1), s: 'a'.repeat(3) }; JSON.parse(JSON.stringify(o)).n.join(',')";

/** A call's request as the guest reads it from stdin: a 4-byte length, then the request as JSON. */
export function encodeRequest(request: JsRequest, maxInput: number): Uint8Array {
  const bytes = enc.encode(requestText(request));
  if (bytes.length > maxInput) throw new RangeError(`the request takes ${bytes.length} bytes as JSON, more than maxInput (${maxInput})`);
  const input = new Uint8Array(HEADER + bytes.length);
  new DataView(input.buffer).setUint32(0, bytes.length, true);
  input.set(bytes, HEADER);
  return input;
}

/** The guest's reply to one call: its value, or the JsError / JsValueError / GuestError it stands for. */
export function decodeReply(r: Pick<LinuxRunResult, 'exitCode' | 'signal' | 'stdout' | 'stderr'> & { stats: { syscalls: number; resetPages: number } }, onLog?: (entry: JsLogEntry) => void): JsRunResult {
  if (r.exitCode !== 0) {
    const why = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.exitCode}`;
    throw new GuestError(`the QuickJS guest ${why}${r.stderr.length ? `: ${dec.decode(r.stderr.subarray(0, 2000))}` : ''}`, r.exitCode ?? -1);
  }
  let reply: Reply;
  try {
    reply = JSON.parse(dec.decode(r.stdout)) as Reply;
  } catch {
    throw new GuestError(`the QuickJS guest replied with ${r.stdout.length} bytes that are not its JSON record`, -1);
  }
  const logs: JsLogEntry[] = (reply.l ?? []).map(([level, text]) => ({ level, text }));
  if (onLog) for (const entry of logs) onLog(entry);
  if (reply.x) throw new JsValueError(reply.x.path, reply.x.message);
  if (reply.e) {
    const e = reply.e;
    const err = new JsError({ name: e.name, message: e.message, stack: e.stack, ...(e.primitive ? { thrown: e.thrown } : {}) });
    Object.defineProperty(err, 'logs', { value: logs, enumerable: false });
    throw err;
  }
  return {
    value: reply.u ? undefined : reply.v,
    logs,
    logsDropped: reply.d ?? 0,
    stats: { syscalls: r.stats.syscalls, resetPages: r.stats.resetPages },
  };
}

function requestText(request: JsRequest): string {
  if (typeof request !== 'object' || request === null) throw new TypeError('request: expected { code } or { fn, args }');
  if ('code' in request) {
    if (typeof request.code !== 'string') throw new TypeError('code: expected a string');
    return `{"k":"e","c":${JSON.stringify(request.code)}}`;
  }
  const fn = typeof request.fn === 'function' ? request.fn.toString() : request.fn;
  if (typeof fn !== 'string') throw new TypeError('fn: expected a function or its source');
  const args = request.args ?? [];
  if (!Array.isArray(args)) throw new TypeError('args: expected an array');
  return `{"k":"c","c":${JSON.stringify(fn)},${encodeArgs(args, 'args')}}`;
}
