/**
 * One seat of a SandboxPool: a worker thread (node:worker_threads), its call channel and the
 * means to start, call, cancel, stop and end it. The pool owns its threads through seats rather
 * than through piscina: every call is a long-lived serve loop on a shared-memory channel, so
 * piscina's task queue, abort and replacement would all sit unused (a task that never ends is
 * "busy" forever, and a replaced piscina worker gets no serve loop back). With a seat per thread
 * the supervision rules are a few lines each and can be checked one by one: a seat that dies or
 * wedges is replaced by a new seat with a new channel; a late write of the old thread lands in a
 * buffer nobody reads.
 *
 * Cancel, one flag and one signal. The worker publishes its tid (CH.TID, via the VM's control
 * words) and then loads CH.CANCEL before each KVM_RUN; the canceller stores CH.CANCEL and then
 * loads CH.TID, and kicks that thread if it is set. Atomics are sequentially consistent, so
 * either the canceller sees the tid (and its kick makes a KVM_RUN that has begun, or begins,
 * return EINTR: the kick signal stays blocked outside KVM_RUN, so a kick sent early stays
 * pending), or the worker's later load sees the flag (and it never enters KVM_RUN again). A
 * worker waiting for a host call looks at the flag before each sleep and is woken by the
 * canceller.
 *
 * Threads are unref'd while idle: an idle pool does not keep the process alive. On process
 * 'exit' every live seat's thread is asked to terminate and kicked out of KVM_RUN with its
 * cancel flag set (a thread in KVM_RUN cannot be terminated, and Node waits for it).
 */
import { Worker } from 'node:worker_threads';
import { SandboxTimeoutError, SandboxWorkerError, decodeError } from '../errors.js';
import { KICK_SIGNAL } from '../machine/vcpu-lifecycle.js';
import { signalThread } from '../signals.js';
import { OwnedBlock } from '../thread-resources.js';
import { CALL_STAMP, CH, CHANNEL_NAME_BYTES, CHANNEL_REPLY_BYTES, WORKER_STATE, channelLayout, stampView, wallMs, type ChannelLayout } from './call-channel.js';
import type { PoolWorkerData } from './pool-worker.js';
import { decodeReply, type DecodedReply } from './reply-codec.js';

/** Time a worker may take to start on top of initTimeoutMs (thread, koffi, module, VM). */
export const START_GRACE_MS = 5000;

export type SeatState = 'starting' | 'idle' | 'busy' | 'stopping' | 'dead';

export interface SeatRequest {
  fn: string;
  input: Uint8Array;
  timeoutMs: number;
  remoteSlot: number;
}

export type SeatReply =
  | ({ kind: 'done'; ok: boolean; output: Uint8Array; resetPages: number; remoteAbandoned: boolean } & DecodedReply)
  | { kind: 'gone' };

/**
 * Time stamps of the last call any seat finished (wall-clock ms, `wallMs()`), for the per-call
 * breakdown of `npm run bench -- sandbox --profile`: meaningful with one call at a time.
 */
export const LAST_CALL = {
  /** Seat.run entered (the pool has taken the call). */
  start: 0,
  /** The request was published to the worker. */
  posted: 0,
  /** The worker saw it; its VM call returned; its reply was written (the worker's stamps). */
  seen: 0,
  called: 0,
  done: 0,
  /** The main thread saw DONE. */
  resumed: 0,
  /** Seat.run's reply was built. */
  end: 0,
};

const live = new Set<Seat>();
const encoder = new TextEncoder();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const seat of live) seat.terminate();
  });
}

export class Seat {
  readonly id: number;
  readonly #worker: Worker;
  readonly #h: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #at: ChannelLayout;
  readonly #stamps: Float64Array;
  /** What the thread's VM holds; closed from here once the thread has ended (thread-resources.ts). */
  readonly #owned = OwnedBlock.create();
  state: SeatState = 'starting';
  /** The host-call slot this seat's calls use (-1: none yet). */
  remoteSlot = -1;
  /** Resolves when the thread has started (READY); rejects with a SandboxWorkerError otherwise. */
  readonly ready: Promise<void>;
  /** Resolves with the exit code when the thread has ended. */
  readonly exited: Promise<number>;
  #seq = 0;
  #exitedFlag = false;
  #startTimer: NodeJS.Timeout | undefined;
  #stopTimer: NodeJS.Timeout | undefined;

  constructor(id: number, data: Omit<PoolWorkerData, 'channel' | 'owned'>, initTimeoutMs: number) {
    this.id = id;
    this.#at = channelLayout(data.inputSize, data.outputSize);
    const channel = new SharedArrayBuffer(this.#at.bytes);
    this.#h = new Int32Array(channel, 0, CH.WORDS);
    this.#bytes = new Uint8Array(channel);
    this.#stamps = stampView(channel);
    this.#worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: { ...data, channel, owned: this.#owned.buffer } satisfies PoolWorkerData });
    installExitHook();
    live.add(this);
    this.exited = new Promise<number>((resolve) => {
      this.#worker.once('exit', (code) => {
        this.#exitedFlag = true;
        this.state = 'dead';
        // The thread has been joined: nothing of it runs any more, so what it still marks as
        // owned (it was terminated, or died, before closing its VM) is closed here, and only that.
        this.#owned.reclaim();
        live.delete(this);
        clearTimeout(this.#startTimer);
        clearTimeout(this.#stopTimer);
        // Wake whatever waits on the channel: it sees the seat is dead.
        Atomics.notify(this.#h, CH.DONE);
        Atomics.notify(this.#h, CH.STATE);
        resolve(code);
      });
    });
    // An uncaught error in the thread: the 'exit' that follows does the rest.
    this.#worker.on('error', () => {});
    this.ready = this.#waitReady(initTimeoutMs);
  }

  async #waitReady(initTimeoutMs: number): Promise<void> {
    let timedOut = false;
    if (initTimeoutMs > 0) {
      this.#startTimer = setTimeout(() => {
        timedOut = true;
        Atomics.notify(this.#h, CH.STATE);
      }, initTimeoutMs + START_GRACE_MS);
    }
    for (;;) {
      const state = Atomics.load(this.#h, CH.STATE);
      if (state === WORKER_STATE.READY) break;
      if (state === WORKER_STATE.FAILED) {
        const r = this.#reply();
        const cause = r.error ? decodeError(r.error) : undefined;
        this.terminate();
        throw cause instanceof SandboxWorkerError ? cause : new SandboxWorkerError(`sandbox worker could not start: ${cause?.message ?? 'unknown error'}`, cause);
      }
      if (timedOut) {
        this.terminate();
        throw new SandboxWorkerError(
          `sandbox worker did not start within ${initTimeoutMs + START_GRACE_MS} ms (kvmpool_init may run ${initTimeoutMs} ms, initTimeoutMs)`,
          new SandboxTimeoutError('kvmpool_init', initTimeoutMs, 'the initTimeoutMs'),
        );
      }
      if (this.#exitedFlag) throw new SandboxWorkerError('sandbox worker thread exited while it started');
      const w = Atomics.waitAsync(this.#h, CH.STATE, state);
      if (w.async) await w.value;
    }
    clearTimeout(this.#startTimer);
    if (this.state === 'starting') this.state = 'idle';
    this.#worker.unref();
  }

  #reply(): DecodedReply {
    const len = Atomics.load(this.#h, CH.REPLY_LEN);
    return decodeReply(this.#bytes.subarray(this.#at.reply, this.#at.reply + CHANNEL_REPLY_BYTES), len);
  }

  /** Runs one call; never rejects ('gone' if the thread ended or the seat was stopped first). */
  async run(req: SeatRequest): Promise<SeatReply> {
    const start = wallMs();
    const h = this.#h;
    const at = this.#at;
    const name = this.#nameBytes(req.fn);
    if (name.length > CHANNEL_NAME_BYTES) throw new RangeError(`function name of ${name.length} bytes`);
    this.state = 'busy';
    this.#worker.ref();
    this.#bytes.set(name, at.name);
    this.#bytes.set(req.input, at.input);
    h[CH.NAME_LEN] = name.length;
    h[CH.INPUT_LEN] = req.input.length;
    h[CH.TIMEOUT_MS] = req.timeoutMs;
    h[CH.REMOTE_SLOT] = req.remoteSlot;
    Atomics.store(h, CH.CANCEL, 0);
    const seq = (this.#seq = (this.#seq + 1) | 0);
    const posted = wallMs();
    Atomics.store(h, CH.REQUEST, seq);
    Atomics.notify(h, CH.REQUEST);
    while (Atomics.load(h, CH.DONE) !== seq) {
      if (this.#exitedFlag) return { kind: 'gone' };
      const w = Atomics.waitAsync(h, CH.DONE, (seq - 1) | 0);
      if (w.async) await w.value;
    }
    const resumed = wallMs();
    if (this.state === 'busy') {
      this.state = 'idle';
      this.#worker.unref();
    }
    const ok = h[CH.OK] === 1;
    const outLen = Math.min(Math.max(h[CH.OUTPUT_LEN]!, 0), at.bytes - at.output);
    const decoded = this.#reply();
    const reply: SeatReply = {
      kind: 'done',
      ok,
      output: ok ? this.#bytes.slice(at.output, at.output + outLen) : new Uint8Array(0),
      resetPages: h[CH.RESET_PAGES]!,
      remoteAbandoned: h[CH.REMOTE_ABANDONED] === 1,
      error: decoded.error,
      prints: decoded.prints,
      printsDropped: decoded.printsDropped,
      printBytesDropped: decoded.printBytesDropped,
    };
    const s = this.#stamps;
    const last = LAST_CALL;
    last.start = start;
    last.posted = posted;
    last.seen = s[CALL_STAMP.SEEN]!;
    last.called = s[CALL_STAMP.CALLED]!;
    last.done = s[CALL_STAMP.DONE]!;
    last.resumed = resumed;
    last.end = wallMs();
    return reply;
  }

  #lastName = '';
  #lastNameBytes = new Uint8Array(0);

  /** `fn` as UTF-8, cached for the last name (a pool usually calls one function again and again). */
  #nameBytes(fn: string): Uint8Array {
    if (fn !== this.#lastName) {
      this.#lastNameBytes = encoder.encode(fn);
      this.#lastName = fn;
    }
    return this.#lastNameBytes;
  }

  /** Whether the worker has answered the last request (its reply may not be handled yet). */
  answered(): boolean {
    return Atomics.load(this.#h, CH.DONE) === this.#seq;
  }

  /** Cancels the running call: the flag, then one kick (see the ordering above). */
  cancel(): void {
    Atomics.store(this.#h, CH.CANCEL, 1);
    const tid = Atomics.load(this.#h, CH.TID);
    if (tid !== 0 && !this.#exitedFlag) kick(tid);
  }

  /**
   * Ends the thread cleanly (after its current call, which is cancelled if `cancel`): its
   * serve loop returns and it closes its VM. If it has not ended after `graceMs`, it is
   * terminated (a thread blocked in a host function may never come back).
   */
  stop(graceMs: number, cancel: boolean): Promise<number> {
    if (!this.#exitedFlag) {
      if (this.state !== 'dead') this.state = 'stopping';
      Atomics.store(this.#h, CH.STOP, 1);
      Atomics.notify(this.#h, CH.REQUEST);
      if (cancel) this.cancel();
      clearTimeout(this.#stopTimer);
      this.#stopTimer = setTimeout(() => this.terminate(), graceMs).unref();
    }
    return this.exited;
  }

  /**
   * Ends the thread now: asks V8 to stop it, sets the cancel flag and kicks it out of KVM_RUN
   * (termination takes effect when it is back in JavaScript). What its VM still holds (fds,
   * kvm_run mapping, timer) is closed at its 'exit' (OwnedBlock); `stop()` is the clean way.
   */
  terminate(): void {
    if (this.#exitedFlag) return;
    this.state = this.state === 'dead' ? 'dead' : 'stopping';
    Atomics.store(this.#h, CH.STOP, 1);
    Atomics.store(this.#h, CH.CANCEL, 1);
    void this.#worker.terminate().catch(() => {});
    const tid = Atomics.load(this.#h, CH.WORKER_TID);
    if (tid !== 0) kick(tid);
  }
}

/** One kick signal to thread `tid` (gone threads are fine: they need no kick). */
function kick(tid: number): void {
  try {
    signalThread(tid, KICK_SIGNAL);
  } catch {
    // ESRCH is reported as false; any other failure leaves the thread to its deadline
  }
}
