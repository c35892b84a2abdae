/**
 * `Sandbox`: one SDK sandbox VM run on the caller's own thread, with no pool, no worker and no
 * channel. `call()` is synchronous: it enters the guest on this thread and returns when the call
 * (and the reset that follows it) is done, so nothing crosses a thread. Use it inside a worker
 * thread of your own, or on the main thread for short calls (the event loop waits meanwhile:
 * give every call a `timeoutMs`). `SandboxPool` is the same VM behind worker threads.
 *
 * The thread blocks kvmpool's kick signal (a realtime signal) while the sandbox exists, as pool
 * workers do; time limits arm a POSIX timer aimed at this thread.
 */
import { invalidArgument } from '../errors.js';
import { parseElf } from '../loader/elf.js';
import { toBytes, type Bytes } from '../util/bytes.js';
import { DEFAULT_INIT_TIMEOUT_MS, MAX_MEMORY, checkTimeout, checkWarmUp, functionsOption, guestBytes, size } from './pool-options.js';
import { SandboxVm, type SyncHostFunction } from './sandbox-vm.js';
import type { SandboxWarmUp } from './pool.js';

/** Options of `new Sandbox()`. */
export interface SandboxOptions {
  /** The guest: a static x86-64 ELF built with the SDK, as a path, a file: URL or its bytes. */
  guest: string | URL | Uint8Array | ArrayBuffer;
  /** Guest RAM (bytes or e.g. '8 MiB'; a multiple of 4 KiB, at most 4 GiB). Default '8 MiB'. */
  memory?: string | number | bigint;
  /** Input region size (a multiple of 4 KiB). Default '1 MiB'. */
  inputSize?: string | number | bigint;
  /** Output region size (a multiple of 4 KiB). Default '1 MiB'. */
  outputSize?: string | number | bigint;
  /** Per-call time limit in ms (a whole number up to 2^31-1; 0: none), host functions included. Default 0. */
  timeoutMs?: number;
  /** Time limit for the guest's kvmpool_init (ms, 0: none). Default 10 000. */
  initTimeoutMs?: number;
  /** Host functions the guest may call (kvmpool_host_call), run on this thread: bytes in, bytes, a string or nothing out. */
  hostFunctions?: Record<string, SyncHostFunction>;
  /** The KVM device. Default `/dev/kvm`. */
  kvmPath?: string;
  /** As SandboxPoolOptions.warmUp: one call whose written pages every reset keeps writable. */
  warmUp?: SandboxWarmUp;
}

/** What one `sandbox.call()` returns. */
export interface SandboxCallResult {
  /** The bytes the function wrote to its output region. */
  output: Uint8Array;
  /** What the guest printed (kvmpool_print), at most ~64 KiB in a bounded number of records. */
  prints: string[];
  /** Prints dropped past those bounds. */
  printsDropped: number;
}

/**
 * One warm SDK sandbox VM on the calling thread. Every call starts from the state the guest had
 * after `kvmpool_init`, as in `SandboxPool`. Construction runs `kvmpool_init` (it throws what a
 * pool would fail with); a call that fails throws (`GuestCrashError`, `GuestError`,
 * `SandboxTimeoutError`, `HostFunctionError`, …) and the VM is reset for the next one. A VM that
 * could not be reset throws `SandboxWorkerError` on every later call: make a new `Sandbox`.
 * `close()` (or `using`) releases the VM, its fds, mapping and timer; use it from the thread that
 * made it.
 */
export class Sandbox implements Disposable {
  readonly #vm: SandboxVm;
  readonly #timeoutMs: number;
  #closed = false;

  /** Makes the VM, loads the guest and runs its kvmpool_init (synchronously, on this thread). */
  constructor(options: SandboxOptions) {
    if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options);
    const memory = size('memory', options.memory, '8 MiB', MAX_MEMORY);
    const inputSize = size('inputSize', options.inputSize, '1 MiB', MAX_MEMORY);
    const outputSize = size('outputSize', options.outputSize, '1 MiB', MAX_MEMORY);
    this.#timeoutMs = checkTimeout('timeoutMs', options.timeoutMs, 0);
    const initTimeoutMs = checkTimeout('initTimeoutMs', options.initTimeoutMs, DEFAULT_INIT_TIMEOUT_MS);
    if (options.kvmPath !== undefined && typeof options.kvmPath !== 'string') throw invalidArgument('kvmPath', 'a path', options.kvmPath);
    const hostFunctions = functionsOption<SyncHostFunction>(options.hostFunctions, 'hostFunctions');
    const { elf, source } = guestBytes(options.guest);
    const image = parseElf(elf, source);
    const warmUp = checkWarmUp(options.warmUp, image, inputSize);
    this.#vm = SandboxVm.create({
      image, memory, inputSize, outputSize, initTimeoutMs, hostFunctions,
      ...(options.kvmPath === undefined ? {} : { kvmPath: options.kvmPath }),
      ...(warmUp ? { warmUp } : {}),
    });
  }

  /** Names of the functions the guest exports. */
  get exports(): string[] {
    return this.#vm.exports;
  }

  /**
   * Calls exported function `name` with `input` (bytes, or a string as UTF-8) and returns its
   * output; `timeoutMs` overrides the sandbox's limit for this call.
   */
  call(name: string, input: Bytes = new Uint8Array(0), options: { timeoutMs?: number } = {}): SandboxCallResult {
    if (this.#closed) throw new TypeError('sandbox.call: the sandbox is closed');
    if (typeof name !== 'string') throw invalidArgument('name', 'a function name', name);
    const bytes = toBytes(input, 'input');
    const timeoutMs = checkTimeout('timeoutMs', options.timeoutMs, this.#timeoutMs);
    const r = this.#vm.call(name, bytes, { timeoutMs });
    return { output: r.output, prints: r.prints, printsDropped: r.printsDropped };
  }

  /** Releases the VM (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#vm.close();
  }

  /** `using sandbox = new Sandbox(…)` closes it at the end of the block. */
  [Symbol.dispose](): void {
    this.close();
  }
}
