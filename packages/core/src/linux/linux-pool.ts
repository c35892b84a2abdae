/**
 * LinuxPool: unmodified static x86-64 Linux programs (musl or glibc, ET_EXEC or static-PIE),
 * each call in a pristine micro-VM with the call's input as stdin.
 *
 *   const pool = new LinuxPool({ program: '/bin/busybox', argv: ['sha256sum'], timeoutMs: 1000 });
 *   const { stdout, exitCode } = await pool.run('hello\n');
 *   await pool.close();
 *
 * The supervision (queue, deadlines, abort, worker replacement, close/destroy) is SandboxPool's:
 * a LinuxPool is a SandboxPool whose workers run a LinuxVm (linux-vm.ts) behind the same call
 * channel, with requests and results in run-codec.ts's records.
 */
import { basename } from 'node:path';
import { availableParallelism } from 'node:os';
import { invalidArgument, outOfRange } from '../errors.js';
import { parseElf, type ElfImage } from '../loader/elf.js';
import { toBytesOrEmpty, type Bytes } from '../util/bytes.js';
import { formatBytes, parseSize, type Size } from '../util/size.js';
import { DEFAULT_INIT_TIMEOUT_MS, MAX_THREADS, asyncFunctions, checkTimeout, guestBytes } from '../sandbox/pool-options.js';
import { SandboxPool, internalPoolOptions, type AsyncHostFunction, type SandboxPoolStats } from '../sandbox/pool.js';
import type { LinuxWorkerProgram } from '../sandbox/pool-worker.js';
import { signalName } from './errno.js';
import { PIE_BASE, linuxLayout, type LinuxStart } from './linux-vm.js';
import { MAX_ARG_BYTES, MAX_ARG_STRINGS } from './process-stack.js';
import { REQUEST_OVERHEAD, RESULT_OVERHEAD, decodeRunResult, encodeRunRequest } from './run-codec.js';

/** Largest guest memory of a Linux sandbox: what the read-only low-area page tables can map. */
export const LINUX_MAX_MEMORY = 3 * 1024 ** 3;

/** Options of `new LinuxPool()`; each is checked in the constructor, and a wrong one is a TypeError or RangeError naming it. */
export interface LinuxPoolOptions {
  /** The program: a static x86-64 ELF (path, file: URL or bytes). Dynamic executables are refused. */
  program: string | URL | Uint8Array | ArrayBuffer;
  /** argv, argv[0] included (busybox picks its applet by it). Default: [the program's file name]. */
  argv?: readonly string[];
  /** The environment: `{ NAME: value }` or `['NAME=value']`. Default: empty. */
  env?: Readonly<Record<string, string>> | readonly string[];
  /** Read-only files the program may open, by absolute path; every other path is ENOENT. */
  files?: Readonly<Record<string, Bytes>>;
  /** Guest memory per VM: a multiple of 2 MiB, at most 3 GiB. Default '64 MiB'. Committed as the program touches it. */
  memory?: Size;
  /** Stack at the top of memory. Default '8 MiB' (Linux's default RLIMIT_STACK). */
  stackSize?: Size;
  /**
   * Where each call's pristine state is captured: 'first-read' (default) after the program's own
   * start-up, at its first read of stdin; 'entry' at the entry point (argv/env may then change
   * per call); 'checkpoint' where the program calls kvmpool_checkpoint(). A program that ends
   * before it gets there keeps the entry state (`stats.start` says which).
   */
  start?: LinuxStart;
  /** An unimplemented syscall fails the call naming it (else it returns ENOSYS and is counted). Default false. */
  strict?: boolean;
  /** Largest stdin per call. Default '16 MiB'. */
  maxInput?: Size;
  /** Most bytes kept of stdout, and apart of stderr, per call. Default '16 MiB'. */
  maxOutput?: Size;
  /** Past maxOutput: 'error' (default) fails the call with GuestLimitError; 'truncate' keeps the first bytes and counts the rest in `dropped`. */
  outputLimit?: 'error' | 'truncate';
  /** Worker threads, one warm VM each (1–256). Default os.availableParallelism(). */
  threads?: number;
  /** Per-call time limit in ms (0: none). Default 0. */
  timeoutMs?: number;
  /** Time limit of each worker's start-up run to the warm-start point (ms, 0: none). Default 10 000. */
  initTimeoutMs?: number;
  /**
   * Host functions the program may call with kvmpool_host_call() (sdk/kvmpool-linux.h): bytes
   * in, bytes out, run on the main thread (they may be async) while the vCPU waits. The call's
   * timeoutMs covers them.
   */
  hostFunctions?: Record<string, AsyncHostFunction>;
  /** The KVM device. Default `/dev/kvm`. */
  kvmPath?: string;
  /**
   * Stdin of one run each worker makes once its pristine state is captured, say a typical
   * request. The pages that run writes stay writable and are put back after every call, so
   * calls take no write-protection fault on them. Without it, the pages the program's start-up
   * wrote are used. The set never follows what callers' calls do: it would tell a caller which
   * pages the calls before it wrote. At most maxInput bytes; the run's result is dropped.
   */
  warmUp?: Uint8Array;
}

/** Options of one `pool.run()`. */
export interface LinuxRunOptions {
  /** Cancels the call, queued or running (`AbortError`). */
  signal?: AbortSignal;
  /** This call's time limit in ms (0: none); default the pool's timeoutMs. */
  timeoutMs?: number;
  /** argv for this call (start: 'entry' only). */
  argv?: readonly string[];
  /** Environment for this call (start: 'entry' only). */
  env?: Readonly<Record<string, string>> | readonly string[];
}

/** What one `pool.run()` resolves with. */
export interface LinuxRunResult {
  /** What the program wrote to fd 1 (at most `maxOutput` bytes). */
  stdout: Uint8Array;
  /** What it wrote to fd 2 (at most `maxOutput` bytes). */
  stderr: Uint8Array;
  /** The exit status (0–255), or null when a signal ended the program. */
  exitCode: number | null;
  /** The signal that ended the program, e.g. 'SIGABRT' (abort()), if one did. */
  signal?: string;
  /** When a CPU exception ended the program (signal SIGSEGV, SIGILL, SIGFPE…): what and where, e.g. "page fault (#PF) at 0x0, rip 0x401136 (main+0x6)". */
  fault?: string;
  /** Bytes dropped past maxOutput (outputLimit 'truncate'). */
  dropped: {
    /** Bytes of stdout dropped. */
    stdout: number;
    /** Bytes of stderr dropped. */
    stderr: number;
  };
  /** What the call did. */
  stats: {
    /** Syscalls the program made in this call. */
    syscalls: number;
    /** Syscalls that returned ENOSYS because kvmpool does not implement them, by name. */
    unknownSyscalls: Record<string, number>;
    /** Pages the reset after the call restored. */
    resetPages: number;
    /** Where the pristine state this call started from was captured. */
    start: LinuxStart;
  };
}

function strings(what: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw invalidArgument(what, 'an array of strings', v);
  for (const s of v) {
    if (typeof s !== 'string') throw invalidArgument(`${what}[]`, 'a string', s);
    if (s.includes('\0')) throw outOfRange(what, `${JSON.stringify(s.slice(0, 40))} contains a NUL character`);
  }
  return v as string[];
}

function envList(what: string, v: unknown): string[] {
  if (Array.isArray(v)) return strings(what, v);
  if (typeof v !== 'object' || v === null) throw invalidArgument(what, "an object of strings or an array of 'NAME=value'", v);
  return strings(what, Object.entries(v).map(([k, x]) => {
    if (typeof x !== 'string') throw invalidArgument(`${what}.${k}`, 'a string', x);
    if (k.includes('=')) throw outOfRange(what, `name ${JSON.stringify(k)} contains '='`);
    return `${k}=${x}`;
  }));
}

function checkArgs(argv: string[], env: string[]): void {
  if (argv.length + env.length > MAX_ARG_STRINGS) throw outOfRange('argv', `argv and env hold ${argv.length + env.length} strings; at most ${MAX_ARG_STRINGS}`);
  const bytes = [...argv, ...env].reduce((n, s) => n + Buffer.byteLength(s) + 1, 0);
  if (bytes > MAX_ARG_BYTES) throw outOfRange('argv', `argv and env take ${bytes} bytes; at most ${MAX_ARG_BYTES}`);
}

function size(what: string, v: unknown, fallback: Size, max: number): number {
  const n = parseSize((v ?? fallback) as Size, what);
  if (n > max) throw outOfRange(what, `${formatBytes(n)} is more than the limit of ${formatBytes(max)}`);
  return n;
}

/**
 * Static x86-64 Linux programs in a pool of warm micro-VMs, one call per `run()`, each from the
 * pristine state captured at `start`. `close()` (or `await using`) ends the workers.
 */
export class LinuxPool implements AsyncDisposable {
  /** @internal The parsed program image. */
  readonly image: ElfImage;
  /** The number of worker threads (each with one VM). */
  readonly threads: number;
  readonly #pool: SandboxPool;
  readonly #start: LinuxStart;
  readonly #name: string;

  /** Checks every option and the program (TypeError / RangeError / ElfError at once) and starts the workers. */
  constructor(options: LinuxPoolOptions) {
    if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options);
    const o = options as unknown as Record<string, unknown>;
    const { elf, source } = guestBytes(o.program, 'program');
    const image = parseElf(elf, source, { loadBase: PIE_BASE, rejectInterp: true });
    const name = typeof o.program === 'string' ? basename(o.program) : o.program instanceof URL ? basename(o.program.pathname) : 'program';
    const argv = o.argv === undefined ? [name] : strings('argv', o.argv);
    if (argv.length === 0) throw outOfRange('argv', 'argv needs at least argv[0]');
    const env = o.env === undefined ? [] : envList('env', o.env);
    checkArgs(argv, env);
    const files: [string, Uint8Array][] = [];
    if (o.files !== undefined) {
      if (typeof o.files !== 'object' || o.files === null) throw invalidArgument('files', 'an object of path → bytes', o.files);
      for (const [path, bytes] of Object.entries(o.files)) {
        if (!path.startsWith('/')) throw outOfRange('files', `path ${JSON.stringify(path)} is not absolute`);
        files.push([path.replace(/\/+/g, '/'), toBytesOrEmpty(bytes as Bytes, `files[${JSON.stringify(path)}]`).slice()]);
      }
    }
    const memory = size('memory', o.memory, '64 MiB', LINUX_MAX_MEMORY);
    const stackSize = size('stackSize', o.stackSize, '8 MiB', LINUX_MAX_MEMORY);
    linuxLayout({ image, memory, stackSize });
    const start = o.start ?? 'first-read';
    if (start !== 'first-read' && start !== 'entry' && start !== 'checkpoint') throw invalidArgument('start', "'first-read', 'entry' or 'checkpoint'", start);
    if (o.strict !== undefined && typeof o.strict !== 'boolean') throw invalidArgument('strict', 'a boolean', o.strict);
    const outputLimit = o.outputLimit ?? 'error';
    if (outputLimit !== 'error' && outputLimit !== 'truncate') throw invalidArgument('outputLimit', "'error' or 'truncate'", outputLimit);
    const maxInput = size('maxInput', o.maxInput, '16 MiB', 1024 ** 3);
    const maxOutput = size('maxOutput', o.maxOutput, '16 MiB', 1024 ** 3);
    const threads = o.threads ?? availableParallelism();
    if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) throw outOfRange('threads', `${String(threads)} is not a whole number from 1 to ${MAX_THREADS}`);
    if (o.kvmPath !== undefined && typeof o.kvmPath !== 'string') throw invalidArgument('kvmPath', 'a path', o.kvmPath);
    const page = (n: number): number => Math.ceil(n / 4096) * 4096;
    if (o.warmUp !== undefined && !(o.warmUp instanceof Uint8Array)) throw invalidArgument('warmUp', 'a Uint8Array (stdin of one run)', o.warmUp);
    if (o.warmUp instanceof Uint8Array && o.warmUp.length > maxInput) throw outOfRange('warmUp', `${o.warmUp.length} bytes is more than maxInput (${maxInput})`);
    const program: LinuxWorkerProgram = {
      kind: 'linux', execPath: typeof o.program === 'string' ? o.program : name, argv, env, files, stackSize, start,
      strict: o.strict === true, maxOutput, outputLimit,
      ...(o.warmUp instanceof Uint8Array ? { warmUp: o.warmUp.slice() } : {}),
    };
    this.#pool = new SandboxPool(internalPoolOptions({
      className: 'LinuxPool',
      program,
      resolved: {
        elf, source, image, memory,
        inputSize: page(maxInput + REQUEST_OVERHEAD),
        outputSize: page(2 * maxOutput + RESULT_OVERHEAD),
        threads,
        timeoutMs: checkTimeout('timeoutMs', o.timeoutMs, 0),
        initTimeoutMs: checkTimeout('initTimeoutMs', o.initTimeoutMs, DEFAULT_INIT_TIMEOUT_MS),
        hostModule: undefined, asyncHostFunctions: asyncFunctions(o.hostFunctions, 'hostFunctions'), onPrint: undefined,
        kvmPath: o.kvmPath as string | undefined,
      },
    }));
    this.image = image;
    this.threads = threads;
    this.#start = start;
    this.#name = argv[0]!;
    this.#maxInput = maxInput;
  }

  readonly #maxInput: number;

  /**
   * Runs the program once on a pristine VM with `input` as stdin (bytes, or a string as UTF-8).
   * Resolves with its output and exit status, whatever the status; rejects with
   * SandboxTimeoutError, GuestCrashError (the program faulted), GuestLimitError (maxOutput),
   * GuestError (strict mode: an unimplemented syscall), SandboxWorkerError, AbortError or
   * ClosedError. The pool stays usable after each (but ClosedError).
   */
  async run(input: Bytes = new Uint8Array(0), options: LinuxRunOptions = {}): Promise<LinuxRunResult> {
    if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options);
    const stdin = toBytesOrEmpty(input, 'input');
    if (stdin.length > this.#maxInput) throw outOfRange('input', `${stdin.length} bytes of stdin exceed maxInput (${this.#maxInput})`);
    const meta: { argv?: string[]; env?: string[] } = {};
    if (options.argv !== undefined) meta.argv = strings('argv', options.argv);
    if (options.env !== undefined) meta.env = envList('env', options.env);
    if ((meta.argv || meta.env) && this.#start !== 'entry') throw outOfRange('argv', "argv and env per call need the pool's start: 'entry'");
    if (meta.argv || meta.env) checkArgs(meta.argv ?? [], meta.env ?? []);
    const callOptions: { signal?: AbortSignal; timeoutMs?: number } = {};
    if (options.signal !== undefined) callOptions.signal = options.signal;
    if (options.timeoutMs !== undefined) callOptions.timeoutMs = options.timeoutMs;
    const out = await this.#pool.call(this.#name, encodeRunRequest(stdin, meta), callOptions);
    const r = decodeRunResult(out);
    return {
      stdout: r.stdout,
      stderr: r.stderr,
      exitCode: r.exitCode,
      ...(r.signal ? { signal: signalName(r.signal) } : {}),
      ...(r.fault ? { fault: r.fault } : {}),
      dropped: { stdout: r.stdoutDropped, stderr: r.stderrDropped },
      stats: { syscalls: r.stats.syscalls, unknownSyscalls: r.stats.unknown, resetPages: r.stats.resetPages, start: r.stats.start },
    };
  }

  /** Resolves once every worker has its warm VM; rejects with the error that failed the pool (as `SandboxPool.ready`). */
  ready(): Promise<void> {
    return this.#pool.ready();
  }

  /** The pool's counters and latency (as SandboxPool's). */
  stats(): SandboxPoolStats {
    return this.#pool.stats();
  }

  /** Refuses new calls, lets running ones finish, ends every worker; `force` fails them instead. */
  close(options: { force?: boolean } = {}): Promise<void> {
    return this.#pool.close(options);
  }

  /** Ends the pool now: queued and running calls fail with ClosedError. */
  destroy(): Promise<void> {
    return this.#pool.destroy();
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
