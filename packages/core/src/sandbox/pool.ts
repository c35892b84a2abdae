/**
 * SandboxPool: many short-lived, hardware-isolated calls in parallel. Each worker thread (a
 * seat, pool-seat.ts) keeps one warm sandbox VM; every call runs on a pristine copy of the
 * guest's initialised state.
 *
 *   const pool = new SandboxPool({ guest: 'sha.elf', memory: '8 MiB', timeoutMs: 100 });
 *   const out = await pool.call('sha256', input, { signal });
 *   await pool.close();
 *
 * This file is the supervisor: the queue, the calls' lifecycles and their deadlines. Rules:
 * - every call settles exactly once (#settle), with its output or a typed error;
 * - a call with a time limit has a main-thread watchdog: if the worker has not answered by
 *   the deadline plus WATCHDOG_GRACE_MS (a host function that blocks, say), the call fails
 *   with SandboxTimeoutError and the seat is retired and replaced at once;
 * - a seat whose thread dies fails its call with SandboxWorkerError and is replaced; one that
 *   cannot start (bad hostFunctions module, no KVM, kvmpool_init past initTimeoutMs) fails the
 *   pool: queued and later calls reject with that error, nothing restarts in a loop;
 * - an aborted running call is cancelled by one flag and one kick; if its worker has not come
 *   back after ABORT_GRACE_MS it is replaced;
 * - pipelining: when every seat is busy, a queued call is posted to a seat behind its running
 *   call (up to SLOTS per channel), so the worker goes on without waiting for this thread to wake
 *   (a cross-thread wake-up costs 40–60 µs here, a warm call ~75 µs); a call waiting so is taken
 *   back for a seat that falls idle first (work stealing), and one its seat never started (the
 *   seat died or was retired) goes back to the queue: no call runs twice. Not with async host
 *   functions (a seat's calls share one host-call slot).
 */
import { AbortError, ClosedError, SandboxTimeoutError, SandboxWorkerError, decodeError, invalidArgument } from '../errors.js';
import type { ElfImage } from '../loader/elf.js';
import { toBytes, type Bytes } from '../util/bytes.js';
import type { Size } from '../util/size.js';
import { CHANNEL_NAME_BYTES, SLOTS } from './call-channel.js';
import { HostCallSlots } from './host-call-device.js';
import { LatencyHistogram, type LatencySummary } from './histogram.js';
import { checkSignal, checkTimeout, resolvePoolOptions, type ResolvedPoolOptions } from './pool-options.js';
import { Seat, type SeatReply } from './pool-seat.js';
import type { LinuxWorkerProgram, PoolWorkerData } from './pool-worker.js';

/**
 * A pool of another kind of program (LinuxPool): options resolved by its own checks, the
 * program the workers run, and the class name for messages. Registered here and looked up by
 * the constructor, so that SandboxPool's public signature stays the one users see.
 */
export interface InternalPoolSpec {
  resolved: ResolvedPoolOptions;
  program: LinuxWorkerProgram;
  className: string;
}
const INTERNAL_SPECS = new WeakMap<object, InternalPoolSpec>();

/** Options that make a SandboxPool the engine of another pool class (linux/linux-pool.ts). */
export function internalPoolOptions(spec: InternalPoolSpec): SandboxPoolOptions {
  const marker = Object.freeze({ guest: new Uint8Array(0) });
  INTERNAL_SPECS.set(marker, spec);
  return marker;
}

/** How long past its deadline a call may take before the main thread fails it. */
export const WATCHDOG_GRACE_MS = 200;
/** How long an aborted call's worker may take to come back before it is replaced. */
const ABORT_GRACE_MS = 1000;
/** How long a retired or stopping worker may take to end before it is terminated. */
const RETIRE_GRACE_MS = 1000;
const STOP_GRACE_MS = 2000;
const FORCE_GRACE_MS = 200;
/** Calls queued at once. */
const MAX_QUEUED = 65_536;

/**
 * A host function in `asyncHostFunctions`: it runs on the main thread with the guest's argument
 * bytes and may return a promise; the calling vCPU waits (within the call's time limit). Its result
 * is bytes, any `ArrayBufferView`, a string (UTF-8) or nothing; if it throws or rejects, the call
 * fails with `HostFunctionError` (its error is the `cause`).
 */
export type AsyncHostFunction = (arg: Uint8Array) => Promise<Uint8Array | ArrayBufferView | string | void> | Uint8Array | ArrayBufferView | string | void;

/** Options of `new SandboxPool()`. Every one is checked in the constructor; a wrong one is a `TypeError` or `RangeError` whose message starts with its name. */
export interface SandboxPoolOptions {
  /** The guest: a static x86-64 ELF built with the SDK, as a path, a file: URL or its bytes. */
  guest: string | URL | Uint8Array | ArrayBuffer;
  /**
   * Guest RAM of each VM (bytes or e.g. '8 MiB'; a multiple of 4 KiB, at most 4 GiB). Default
   * '8 MiB'. A fixed size per VM, one VM per thread: a SharedArrayBuffer that the kernel commits
   * page by page as the guest touches it, so resident memory follows the pages used, not this size.
   * It must hold the image (linked from 1 MiB), 64 KiB of stack, inputSize and outputSize; a smaller
   * value is a RangeError at construction.
   */
  memory?: Size;
  /** Input region size (a multiple of 4 KiB). Default '1 MiB'. */
  inputSize?: Size;
  /** Output region size (a multiple of 4 KiB). Default '1 MiB'. */
  outputSize?: Size;
  /** Worker threads, one warm VM each (1–256). Default os.availableParallelism(). */
  threads?: number;
  /**
   * Per-call time limit in ms (a whole number up to 2^31-1; 0: none), covering guest code and
   * host functions. Default 0.
   */
  timeoutMs?: number;
  /**
   * Time limit for the guest's kvmpool_init in each worker (ms, 0: none). Default 10 000. A
   * worker that has not started within this plus 5 s fails the pool with SandboxWorkerError.
   */
  initTimeoutMs?: number;
  /**
   * A module (path, relative to the working directory, or URL) whose exports are the synchronous host
   * functions (`SyncHostFunction`: bytes in, bytes, a string or nothing out). Each worker imports it;
   * a `default` export that is an object is used instead of the named exports. A module that does not
   * load fails the pool with `SandboxWorkerError` naming `hostFunctions`.
   */
  hostFunctions?: string | URL;
  /** Host functions run on the main thread (they may be async); the vCPU waits for them. */
  asyncHostFunctions?: Record<string, AsyncHostFunction>;
  /** Text the guest prints (kvmpool_print); each call's prints are bounded (~64 KiB), the rest counted in stats. */
  onPrint?: (text: string, fn: string) => void;
  /** The KVM device. Default `/dev/kvm`. */
  kvmPath?: string;
  /**
   * One call each worker makes once its pristine state is captured, say a typical one. The
   * pages it writes stay writable and are put back after every call, so calls take no
   * write-protection fault on them (~12 µs a page under kvm_pvm). Without it, every page is
   * protected again after each call. The set never follows what callers' calls do: it would
   * tell a caller which pages the calls before it wrote. Its result is dropped.
   */
  warmUp?: SandboxWarmUp;
}

/** The call of `SandboxPoolOptions.warmUp` / `SandboxOptions.warmUp`. */
export interface SandboxWarmUp {
  /** The exported function to call. */
  fn: string;
  /** Its input (at most inputSize bytes). Default: empty. */
  input?: Uint8Array;
}

/** Options of one `pool.call()` (exported as `SandboxCallOptions`). */
export interface CallOptionsPublic {
  /** Cancels the call, queued or running: it rejects with `AbortError` (the signal's reason is the `cause`). */
  signal?: AbortSignal;
  /** This call's time limit in ms (0: none); default the pool's timeoutMs. */
  timeoutMs?: number;
}

/** What `pool.stats()` returns: counts since the pool was made. */
export interface SandboxPoolStats {
  /** Calls made (including ones aborted before they ran). */
  calls: number;
  /** Calls that resolved with an output. */
  completed: number;
  /** Calls that rejected, for any reason. */
  failed: number;
  /** VM resets after calls. */
  resets: number;
  /** Pages copied back by resets. */
  resetPages: number;
  /** Calls that ended in `GuestCrashError`. */
  crashes: number;
  /** Calls that ended in `SandboxTimeoutError`, of every kind. */
  timeouts: number;
  /** guest: the guest ran past its limit; hostCall: a main-thread host call did; watchdog: the worker did not answer and was replaced. */
  timeoutsByKind: {
    /** The guest's own code ran past the limit (kicked out of KVM_RUN). */
    guest: number;
    /** A main-thread (async) host function did. */
    hostCall: number;
    /** The worker did not answer in time and was replaced. */
    watchdog: number;
  };
  /** Calls that ended in `AbortError`. */
  aborted: number;
  /** Calls that ended in `HostFunctionError`. */
  hostFunctionErrors: number;
  /** Worker threads started to replace one that died or wedged. */
  workerReplacements: number;
  /** Prints left out of replies, and their bytes (with the bytes cut from long prints). */
  printsDropped: number;
  /** Bytes of print text dropped or cut. */
  printBytesDropped: number;
  /** Calls posted to a busy worker behind its running call (pipelining, see `SandboxPool`). */
  pipelined: number;
  /** Of those, calls taken back before they started: to a worker that fell idle first, or to the queue when their worker died or was replaced. */
  pipelinedMoved: number;
  /** Per-call latency in microseconds (µs), measured on the main thread from `call()` to its result (queueing included). */
  latency: LatencySummary;
}

interface Job {
  fn: string;
  input: Uint8Array;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  t0: number;
  state: 'queued' | 'running' | 'settled';
  promise: Promise<Uint8Array>;
  resolve: (v: Uint8Array) => void;
  reject: (e: unknown) => void;
  onAbort: (() => void) | undefined;
  watchdog: NodeJS.Timeout | undefined;
  /** The seat it was posted to, and its request number there (while running). */
  seat: Seat | undefined;
  seq: number;
}

function abortError(fn: string, reason: unknown): AbortError {
  return new AbortError(`sandbox call ${fn} was aborted${reason instanceof Error ? `: ${reason.message}` : ''}`, reason);
}

const RUNTIME = new Set(['memcpy', 'memmove', 'memset', 'memcmp', 'strlen']);

/**
 * Runs exported functions of an SDK guest, one call per micro-VM reset to the state the guest had
 * after `kvmpool_init`, on `threads` worker threads with one warm VM each.
 *
 * The constructor checks every option (throws `TypeError` / `RangeError` naming it, or `ElfError`)
 * and starts the workers; `close()` (or `await using`) ends them. An idle pool does not keep the
 * process alive (its workers are unref'd while idle); an unclosed pool's workers end with the process.
 *
 * Pipelining: when more calls are pending than there are threads, each busy worker is handed
 * the next call while it runs the current one, and starts it the moment it is done, without a
 * round trip through the main thread. A call waiting so moves to a worker that falls idle first,
 * and a call whose worker dies before starting it goes back to the queue: calls are never run
 * twice, and each call's `timeoutMs` counts from its own start. Not done when the pool has
 * `asyncHostFunctions`. `stats().pipelined` counts such calls.
 */
export class SandboxPool implements AsyncDisposable {
  /** @internal The parsed guest image. */
  readonly image: ElfImage;
  /** The number of worker threads (each with one VM). */
  readonly threads: number;
  readonly #opts: ResolvedPoolOptions;
  readonly #data: Omit<PoolWorkerData, 'channel' | 'owned'>;
  /** Set for the engine of another pool class: calls then name no exported function. */
  readonly #program: LinuxWorkerProgram | undefined;
  readonly #className: string;
  readonly #slots: HostCallSlots | undefined;
  readonly #seats = new Set<Seat>();
  readonly #idle: Seat[] = [];
  /** What each busy seat has been posted, in order: the running call, then up to SLOTS - 1 pipelined ones. */
  readonly #running = new Map<Seat, Job[]>();
  /**
   * Whether a busy seat may be posted a second call (call-channel.ts): not with async host
   * functions, whose host-call slot a seat's calls share one at a time.
   */
  readonly #pipeline: boolean;
  /** Seats told to stop (their exit is expected). */
  readonly #retired = new Set<Seat>();
  readonly #ready = new WeakSet<Seat>();
  #queue: Job[] = [];
  readonly #jobs = new Set<Job>();
  /**
   * A ref'd timer while any call is queued or running: a pending call keeps the process alive
   * (the waits on the channel are Atomics.waitAsync, which do not), an idle pool does not.
   */
  #keepAlive: NodeJS.Timeout | undefined;
  readonly #latency = new LatencyHistogram();
  #nextSeat = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #startError: Error | undefined;
  readonly #stats = {
    calls: 0, completed: 0, failed: 0, resets: 0, resetPages: 0, crashes: 0, timeouts: 0, aborted: 0, hostFunctionErrors: 0, workerReplacements: 0,
    printsDropped: 0, printBytesDropped: 0, pipelined: 0, pipelinedMoved: 0,
  };
  readonly #timeoutKinds = { guest: 0, hostCall: 0, watchdog: 0 };

  /** Checks every option and the guest (throws TypeError / RangeError / ElfError at once) and starts the workers. */
  constructor(options: SandboxPoolOptions) {
    const spec = typeof options === 'object' && options !== null ? INTERNAL_SPECS.get(options) : undefined;
    const o = spec ? spec.resolved : resolvePoolOptions(options);
    this.#program = spec?.program;
    this.#className = spec?.className ?? 'SandboxPool';
    this.#opts = o;
    this.image = o.image;
    this.threads = o.threads;
    const remoteNames = Object.keys(o.asyncHostFunctions);
    // Two slots per thread and two spare: a slot an abandoned host call still holds is not reused.
    this.#slots = remoteNames.length > 0 ? new HostCallSlots(o.threads * 2 + 2, o.asyncHostFunctions) : undefined;
    this.#pipeline = this.#slots === undefined;
    this.#data = {
      elf: o.elf,
      source: o.source,
      memory: o.memory,
      inputSize: o.inputSize,
      outputSize: o.outputSize,
      initTimeoutMs: o.initTimeoutMs,
      remoteNames,
      slots: this.#slots?.slots ?? [],
      doorbell: this.#slots?.doorbell ?? new SharedArrayBuffer(16),
      ...(o.hostModule ? { hostModule: o.hostModule.url, hostModuleName: o.hostModule.name } : {}),
      ...(o.kvmPath ? { kvmPath: o.kvmPath } : {}),
      ...(spec ? { program: spec.program } : {}),
      ...(o.warmUp ? { warmUp: o.warmUp } : {}),
    };
    for (let i = 0; i < o.threads; i++) this.#starting.push(this.#spawn().ready);
  }

  readonly #starting: Promise<void>[] = [];

  /**
   * Resolves once every worker the constructor started has its warm VM (so the next `threads`
   * calls start at once); rejects with the error that failed the pool (`SandboxWorkerError`, …)
   * if one could not start. Calls need not wait for it: they queue until a worker is ready.
   */
  async ready(): Promise<void> {
    await Promise.all(this.#starting);
  }

  /** Exported guest functions. */
  get exports(): string[] {
    return [...this.image.functions.keys()].filter((n) => !n.startsWith('_') && !n.startsWith('kvmpool_') && !RUNTIME.has(n));
  }

  /**
   * Runs exported function `fn` on a fresh sandbox with `input` (bytes, or a string as UTF-8);
   * resolves with its output. Rejects with SandboxTimeoutError, GuestCrashError, GuestError,
   * HostFunctionError, SandboxWorkerError, AbortError or ClosedError; the pool stays usable
   * after each (but ClosedError).
   */
  call(fn: string, input: Bytes, options: CallOptionsPublic = {}): Promise<Uint8Array> {
    let job: Job;
    try {
      job = this.#check(fn, input, options);
    } catch (e) {
      if (e instanceof AbortError) {
        // A signal that was aborted already: a call that was made and aborted, by the stats.
        this.#stats.calls++;
        this.#stats.failed++;
        this.#stats.aborted++;
      }
      return Promise.reject(e);
    }
    this.#stats.calls++;
    this.#jobs.add(job);
    // One timer for the pool's life, ref'd while calls are pending (not made and cleared per call).
    if (this.#jobs.size === 1) (this.#keepAlive ??= setInterval(() => {}, 1 << 30)).ref();
    if (job.signal) {
      const signal = job.signal;
      job.onAbort = () => this.#abort(job, signal.reason);
      signal.addEventListener('abort', job.onAbort, { once: true });
    }
    const seat = this.#takeSeat();
    if (seat) this.#dispatch(seat, job);
    else {
      job.input = job.input.slice(); // the caller may reuse its buffer while the call waits
      this.#queue.push(job);
    }
    return job.promise;
  }

  #check(fn: unknown, input: unknown, options: unknown): Job {
    if (this.#closed) throw new ClosedError(this.#className);
    if (typeof fn !== 'string') throw invalidArgument('fn', 'the name of an exported function', fn);
    if (!this.#program && !this.image.functions.has(fn)) throw new RangeError(`the guest exports no function ${JSON.stringify(fn)} (exports: ${this.exports.join(', ')})`);
    if (Buffer.byteLength(fn) > CHANNEL_NAME_BYTES) throw new RangeError(`function name ${JSON.stringify(fn)} is longer than ${CHANNEL_NAME_BYTES} bytes`);
    const bytes = toBytes(input, 'input');
    if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options);
    const o = options as Record<string, unknown>;
    const signal = checkSignal(o.signal);
    const timeoutMs = checkTimeout('timeoutMs', o.timeoutMs, this.#opts.timeoutMs);
    if (bytes.length > this.#opts.inputSize) {
      throw new RangeError(`sandbox call ${fn}: input of ${bytes.length} bytes exceeds the ${this.#opts.inputSize}-byte input region`);
    }
    if (signal?.aborted) throw abortError(fn, signal.reason);
    if (this.#startError) throw this.#startError;
    if (this.#queue.length >= MAX_QUEUED) throw new RangeError(`${this.#className}: more than ${MAX_QUEUED} calls queued`);
    let resolve!: (v: Uint8Array) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<Uint8Array>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { fn, input: bytes, timeoutMs, signal, t0: performance.now(), state: 'queued', promise, resolve, reject, onAbort: undefined, watchdog: undefined, seat: undefined, seq: 0 };
  }

  /** Settles a call once: its output, or an error (counted by kind). */
  #settle(job: Job, result: { output: Uint8Array } | { error: unknown }): void {
    if (job.state === 'settled') return;
    job.state = 'settled';
    clearTimeout(job.watchdog);
    if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort);
    this.#jobs.delete(job);
    if (this.#jobs.size === 0) this.#keepAlive?.unref();
    this.#latency.add((performance.now() - job.t0) * 1000);
    if ('output' in result) {
      this.#stats.completed++;
      job.resolve(result.output);
      return;
    }
    const e = result.error as { name?: unknown; kind?: unknown };
    this.#stats.failed++;
    if (e?.name === 'SandboxTimeoutError') {
      this.#stats.timeouts++;
      this.#timeoutKinds[e.kind === 'watchdog' ? 'watchdog' : e.kind === 'host-call' ? 'hostCall' : 'guest']++;
    } else if (e?.name === 'GuestCrashError') this.#stats.crashes++;
    else if (e?.name === 'HostFunctionError') this.#stats.hostFunctionErrors++;
    job.reject(result.error);
  }

  #takeIdle(): Seat | undefined {
    for (;;) {
      const seat = this.#idle.pop();
      if (!seat || seat.state === 'idle') return seat;
    }
  }

  /**
   * A seat for the next call: an idle one, else (pipelining) a busy one with one call posted, so
   * that its worker starts the next call as soon as it is done instead of waiting for this
   * thread to wake, read the reply and post again (call-channel.ts). A pipelined call that an
   * idle seat could run sooner is taken back by #balance.
   */
  #takeSeat(): Seat | undefined {
    const idle = this.#takeIdle();
    if (idle || !this.#pipeline) return idle;
    let best: Seat | undefined;
    let least = SLOTS;
    for (const [seat, jobs] of this.#running) {
      // seat.inflight === jobs.length: no reply of this seat is read back but not yet handled.
      if (jobs.length < least && seat.inflight === jobs.length && seat.state === 'busy' && !this.#retired.has(seat)) {
        best = seat;
        least = jobs.length;
      }
    }
    return best;
  }

  /** Sends queued calls to seats, then moves pipelined calls to seats left idle. */
  #pump(): void {
    while (this.#queue.length > 0) {
      const seat = this.#takeSeat();
      if (!seat) return;
      this.#dispatch(seat, this.#queue.shift()!);
    }
    this.#balance();
  }

  /** Work stealing: a call waiting behind another on a busy seat goes to an idle seat, if the busy worker has not started it. */
  #balance(): void {
    for (const [seat, jobs] of this.#running) {
      // The last call posted to a seat waits longest: take that one back first.
      while (this.#idle.length > 0 && jobs.length > 1) {
        const waiting = jobs[jobs.length - 1]!;
        // A settled call (destroy()) stays where it is: its seat is being stopped.
        if (waiting.state !== 'running' || !seat.steal(waiting.seq)) break;
        jobs.pop();
        waiting.input = seat.inputOf(waiting.seq);
        const to = this.#takeIdle();
        if (!to) {
          this.#requeue(waiting);
          return;
        }
        this.#stats.pipelinedMoved++;
        this.#dispatch(to, waiting);
      }
      if (this.#idle.length === 0) return;
    }
  }

  /**
   * Puts calls that have not run back at the head of the queue, in the order given (the order
   * they were posted in: they were made before anything still queued).
   */
  #requeue(...jobs: Job[]): void {
    for (const job of jobs) {
      this.#stats.pipelinedMoved++;
      clearTimeout(job.watchdog);
      job.watchdog = undefined;
      job.state = 'queued';
      job.seat = undefined;
    }
    this.#queue.unshift(...jobs);
  }

  #dispatch(seat: Seat, job: Job): void {
    job.state = 'running';
    let jobs = this.#running.get(seat);
    if (!jobs) this.#running.set(seat, (jobs = []));
    jobs.push(job);
    if (this.#slots && seat.remoteSlot < 0) seat.remoteSlot = this.#slots.acquire(seat.id);
    let posted: ReturnType<Seat['post']>;
    try {
      posted = seat.post({ fn: job.fn, input: job.input, timeoutMs: job.timeoutMs, remoteSlot: seat.remoteSlot });
    } catch (e) {
      jobs.splice(jobs.indexOf(job), 1);
      if (jobs.length === 0) this.#running.delete(seat);
      this.#settle(job, { error: new SandboxWorkerError(`sandbox call ${job.fn}: the call could not be posted`, e) });
      return;
    }
    job.seat = seat;
    job.seq = posted.seq;
    if (jobs.length === 1) this.#arm(seat, job);
    else this.#stats.pipelined++;
    posted.reply
      .then((r) => this.#onReply(seat, job, r))
      .catch((e: unknown) => this.#settle(job, { error: new SandboxWorkerError(`sandbox call ${job.fn}: the reply could not be handled`, e) }));
  }

  /**
   * The watchdog of a call with a time limit, armed when the call is first on its seat (a
   * pipelined call's when the call before it has been answered): its worker has started it by
   * then, so the deadline plus grace counts from no earlier than its start.
   */
  #arm(seat: Seat, job: Job): void {
    if (job.timeoutMs > 0 && job.watchdog === undefined && job.state === 'running') {
      job.watchdog = setTimeout(() => this.#watchdog(seat, job), job.timeoutMs + WATCHDOG_GRACE_MS);
    }
  }

  #onReply(seat: Seat, job: Job, r: SeatReply): void {
    if (r.kind === 'gone') return; // the seat's exit fails (or requeues) the call
    if (r.kind === 'stolen') {
      // The call was moved to another seat, which answers it; this seat may be free now.
      this.#free(seat);
      this.#pump();
      return;
    }
    const jobs = this.#running.get(seat);
    const i = jobs ? jobs.indexOf(job) : -1;
    if (jobs && i >= 0) {
      jobs.splice(i, 1);
      if (jobs.length === 0) this.#running.delete(seat);
      else this.#arm(seat, jobs[0]!);
    }
    if (r.remoteAbandoned && seat.remoteSlot >= 0) {
      this.#slots?.release(seat.remoteSlot);
      seat.remoteSlot = -1;
    }
    this.#stats.resets++;
    this.#stats.printsDropped += r.printsDropped;
    this.#stats.printBytesDropped += r.printBytesDropped;
    if (job.state !== 'settled') {
      if (r.ok) {
        this.#stats.resetPages += r.resetPages;
        try {
          for (const text of r.prints) this.#opts.onPrint?.(text, job.fn);
          this.#settle(job, { output: r.output });
        } catch (e) {
          this.#settle(job, { error: e }); // onPrint threw
        }
      } else {
        const error = r.error ? decodeError(r.error) : new SandboxWorkerError(`sandbox call ${job.fn} failed without an error`);
        this.#settle(job, { error: error.name === 'AbortError' ? abortError(job.fn, job.signal?.reason) : error });
      }
    }
    this.#free(seat);
    this.#pump();
  }

  /**
   * Lists a seat that has fallen idle, once: one read-back can answer several of its calls
   * (a call and a taken-back one behind it), each of which comes here; a seat listed twice would
   * make #balance take a call back for a seat that is busy again by then.
   */
  #free(seat: Seat): void {
    if (seat.state === 'idle' && !this.#idle.includes(seat)) this.#idle.push(seat);
  }

  #abort(job: Job, reason: unknown): void {
    if (job.state === 'settled') return;
    this.#stats.aborted++;
    if (job.state === 'queued') {
      this.#queue = this.#queue.filter((j) => j !== job);
      this.#settle(job, { error: abortError(job.fn, reason) });
      return;
    }
    const seat = job.seat;
    this.#settle(job, { error: abortError(job.fn, reason) });
    if (!seat) return;
    const jobs = this.#running.get(seat);
    if (jobs && jobs[0] !== job && seat.steal(job.seq)) {
      // Pipelined and not started: it will not run at all.
      jobs.splice(jobs.indexOf(job), 1);
      return;
    }
    seat.cancel(job.seq);
    if (seat.remoteSlot >= 0) this.#slots?.wake(seat.remoteSlot);
    setTimeout(() => {
      if (this.#running.get(seat)?.[0] === job) this.#retire(seat);
    }, ABORT_GRACE_MS).unref();
  }

  #watchdog(seat: Seat, job: Job): void {
    if (this.#running.get(seat)?.[0] !== job || job.state === 'settled' || seat.answered(job.seq)) return;
    seat.cancel(job.seq);
    this.#retire(seat);
    this.#settle(job, { error: Object.assign(new SandboxTimeoutError(job.fn, job.timeoutMs), { kind: 'watchdog' }) });
  }

  /** Takes a wedged seat out of service (it ends when it can) and starts a replacement. */
  #retire(seat: Seat): void {
    if (this.#retired.has(seat)) return;
    this.#retired.add(seat);
    const jobs = this.#running.get(seat) ?? [];
    this.#running.delete(seat);
    // A call pipelined behind the wedged one has not started (unless the worker has just moved
    // on to it): it goes back to the queue; one that started ends with the seat.
    const back: Job[] = [];
    for (const job of jobs.slice(1)) {
      if (job.state === 'settled') continue;
      if (seat.steal(job.seq)) {
        job.input = seat.inputOf(job.seq);
        back.push(job);
      } else this.#settle(job, { error: new SandboxWorkerError(`sandbox call ${job.fn}: its worker was replaced as the call started`) });
    }
    this.#requeue(...back);
    void seat.stop(RETIRE_GRACE_MS, true);
    this.#replace();
    this.#pump();
  }

  /**
   * Starts a seat in place of one that ended: not after destroy(), nor once the pool has failed;
   * while close() waits for calls, only if some are queued (taken back from the seat, say), which
   * would otherwise wait for ever and close() with them.
   */
  #replace(): void {
    if (this.#startError || (this.#closed && this.#queue.length === 0)) return;
    this.#stats.workerReplacements++;
    this.#spawn();
  }

  #spawn(): Seat {
    const seat = new Seat(this.#nextSeat++, this.#data, this.#opts.initTimeoutMs);
    this.#seats.add(seat);
    void seat.ready.then(
      () => {
        this.#ready.add(seat);
        if (seat.state !== 'idle') return; // stopped while it started
        this.#idle.push(seat);
        this.#pump();
      },
      (e: unknown) => this.#startFailed(e),
    );
    void seat.exited.then((code) => this.#onExit(seat, code));
    return seat;
  }

  #startFailed(e: unknown): void {
    // A seat stopped as it started (close, destroy) fails nothing; queued calls still need one.
    if (this.#closed && this.#queue.length === 0) return;
    const error = e instanceof Error ? e : new SandboxWorkerError(String(e));
    this.#startError ??= error;
    const queued = this.#queue;
    this.#queue = [];
    for (const job of queued) this.#settle(job, { error: this.#startError });
  }

  #onExit(seat: Seat, code: number): void {
    this.#seats.delete(seat);
    if (seat.remoteSlot >= 0) this.#slots?.release(seat.remoteSlot);
    seat.remoteSlot = -1;
    const jobs = this.#running.get(seat) ?? [];
    this.#running.delete(seat);
    // The call the thread had started fails; one it had not claimed yet (pipelined, or posted
    // as it died) never ran and goes back to the queue.
    // While close() waits, such a call is still run (close lets queued calls finish); destroy()
    // has settled every call already.
    const back: Job[] = [];
    for (const job of jobs) {
      if (job.state === 'settled') continue;
      if (seat.steal(job.seq)) {
        job.input = seat.inputOf(job.seq);
        back.push(job);
      } else this.#settle(job, { error: new SandboxWorkerError(`sandbox call ${job.fn}: the worker thread ended (exit code ${code}); the pool replaced it`) });
    }
    const requeued = back.length > 0;
    this.#requeue(...back);
    const expected = this.#retired.delete(seat) || !this.#ready.has(seat);
    if (!expected) this.#replace();
    if (requeued) {
      if (this.#startError) this.#startFailed(this.#startError);
      else this.#pump();
    }
  }

  /** Counts and the latency histogram, as a fresh object. */
  stats(): SandboxPoolStats {
    return { ...this.#stats, timeoutsByKind: { ...this.#timeoutKinds }, latency: this.#latency.summary() };
  }

  /**
   * Refuses new calls, lets queued and running calls finish, then ends every worker and VM.
   * `force: true` ends at once instead: queued and running calls fail with ClosedError.
   * Idempotent.
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) return this.destroy();
    this.#closed = true;
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#jobs].map((j) => j.promise));
      await this.#end(STOP_GRACE_MS, false);
    })();
    return this.#closing;
  }

  /** Ends the pool now: queued and running calls fail with ClosedError; every worker is cancelled and ended. */
  async destroy(): Promise<void> {
    this.#closed = true;
    const error = new ClosedError(this.#className);
    this.#queue = [];
    for (const job of [...this.#jobs]) this.#settle(job, { error });
    await this.#end(FORCE_GRACE_MS, true);
    await this.#closing;
  }

  async #end(graceMs: number, cancel: boolean): Promise<void> {
    // Workers and their timers are unref'd while idle; a close someone awaits must still finish.
    const keepAlive = setInterval(() => {}, 1 << 30);
    try {
      await Promise.all([...this.#seats].map((s) => s.stop(graceMs, cancel)));
      await this.#slots?.stop();
    } finally {
      clearInterval(keepAlive);
      clearInterval(this.#keepAlive);
    }
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
