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
 * Cancel, one flag and one signal, per call: each request has its slot's control words
 * (call-channel.ts). The worker publishes its tid (SLOT.TID, via the VM's control words) and
 * then loads SLOT.CANCEL before each KVM_RUN; the canceller stores SLOT.CANCEL and then loads
 * SLOT.TID, and kicks that thread if it is set (a pipelined call not started yet has no tid: it
 * sees the flag before its first KVM_RUN). Atomics are sequentially consistent, so
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
import { CALL_STAMP, CH, CHANNEL_NAME_BYTES, CHANNEL_REPLY_BYTES, CLAIM, HEADER_WORDS, SLOT, SLOTS, WORKER_STATE, channelLayout, isDone, slotOf, slotWord, stampView, wallMs, type ChannelLayout } from './call-channel.js';
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
  /** The thread ended (or the seat was stopped) before it answered. */
  | { kind: 'gone' }
  /** The request was taken back before the worker started it (`steal`). */
  | { kind: 'stolen' };

/** A request posted to the worker and not yet read back. */
interface Posted {
  seq: number;
  start: number;
  posted: number;
  stolen: boolean;
  resolve: (r: SeatReply) => void;
}

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
  /** Requests posted and not yet read back, in order (at most SLOTS). */
  readonly #posted: Posted[] = [];
  #collecting = false;
  #exitedFlag = false;
  #startTimer: NodeJS.Timeout | undefined;
  #stopTimer: NodeJS.Timeout | undefined;

  constructor(id: number, data: Omit<PoolWorkerData, 'channel' | 'owned'>, initTimeoutMs: number) {
    this.id = id;
    this.#at = channelLayout(data.inputSize, data.outputSize);
    const channel = new SharedArrayBuffer(this.#at.bytes);
    this.#h = new Int32Array(channel, 0, HEADER_WORDS);
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
        for (const p of this.#posted.splice(0)) p.resolve({ kind: 'gone' });
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

  #reply(slot = 0): DecodedReply {
    const len = this.#h[slotWord(slot, SLOT.REPLY_LEN)]!;
    const at = this.#at.slots[slot]!.reply;
    return decodeReply(this.#bytes.subarray(at, at + CHANNEL_REPLY_BYTES), len);
  }

  /** Requests posted and not yet answered and read back (0 idle, 1 running, more: pipelined behind it). */
  get inflight(): number {
    return this.#posted.length;
  }

  /**
   * Posts one call; its `reply` never rejects ('gone' if the thread ended or the seat was
   * stopped first). At most SLOTS calls may be posted at once: the second waits in the channel
   * and the worker starts it as soon as the first is done (call-channel.ts).
   */
  post(req: SeatRequest): { seq: number; reply: Promise<SeatReply> } {
    if (this.#posted.length >= SLOTS) throw new Error(`seat ${this.id}: ${SLOTS} calls are posted already`);
    const start = wallMs();
    const h = this.#h;
    const name = this.#nameBytes(req.fn);
    if (name.length > CHANNEL_NAME_BYTES) throw new RangeError(`function name of ${name.length} bytes`);
    const seq = (this.#seq + 1) | 0;
    const slot = slotOf(seq);
    const at = this.#at.slots[slot]!;
    this.state = 'busy';
    this.#worker.ref();
    // The slot's last request (seq - SLOTS) has been read back (#posted holds at most SLOTS): nothing else touches it now.
    this.#bytes.set(name, at.name);
    this.#bytes.set(req.input, at.input);
    h[slotWord(slot, SLOT.NAME_LEN)] = name.length;
    h[slotWord(slot, SLOT.INPUT_LEN)] = req.input.length;
    h[slotWord(slot, SLOT.TIMEOUT_MS)] = req.timeoutMs;
    h[slotWord(slot, SLOT.REMOTE_SLOT)] = req.remoteSlot;
    h[slotWord(slot, SLOT.CLAIM)] = CLAIM.POSTED;
    Atomics.store(h, slotWord(slot, SLOT.CANCEL), 0);
    this.#seq = seq;
    const reply = new Promise<SeatReply>((resolve) => {
      this.#posted.push({ seq, start, posted: wallMs(), stolen: false, resolve });
    });
    // REQUEST's store publishes the slot's words and areas to the worker (its load of REQUEST).
    Atomics.store(h, CH.REQUEST, seq);
    Atomics.notify(h, CH.REQUEST);
    if (this.#exitedFlag) for (const p of this.#posted.splice(0)) p.resolve({ kind: 'gone' });
    else if (!this.#collecting) void this.#collect();
    return { seq, reply };
  }

  /** Reads the replies back in order as DONE passes them; one loop per seat while calls are posted. */
  async #collect(): Promise<void> {
    this.#collecting = true;
    const h = this.#h;
    try {
      while (this.#posted.length > 0) {
        const head = this.#posted[0]!;
        const done = Atomics.load(h, CH.DONE);
        if (!isDone(done, head.seq)) {
          if (this.#exitedFlag) return; // the exit handler answered them all
          const w = Atomics.waitAsync(h, CH.DONE, done);
          if (w.async) await w.value;
          continue;
        }
        this.#posted.shift();
        head.resolve(head.stolen ? { kind: 'stolen' } : this.#read(head));
      }
    } finally {
      this.#collecting = false;
    }
    if (this.state === 'busy') {
      this.state = 'idle';
      this.#worker.unref();
    }
  }

  #read(p: Posted): SeatReply {
    const resumed = wallMs();
    const h = this.#h;
    const slot = slotOf(p.seq);
    const at = this.#at.slots[slot]!;
    const ok = h[slotWord(slot, SLOT.OK)] === 1;
    const outLen = Math.min(Math.max(h[slotWord(slot, SLOT.OUTPUT_LEN)]!, 0), this.#at.bytes - at.output);
    const decoded = this.#reply(slot);
    const reply: SeatReply = {
      kind: 'done',
      ok,
      output: ok ? this.#bytes.slice(at.output, at.output + outLen) : new Uint8Array(0),
      resetPages: h[slotWord(slot, SLOT.RESET_PAGES)]!,
      remoteAbandoned: h[slotWord(slot, SLOT.REMOTE_ABANDONED)] === 1,
      error: decoded.error,
      prints: decoded.prints,
      printsDropped: decoded.printsDropped,
      printBytesDropped: decoded.printBytesDropped,
    };
    const s = this.#stamps;
    const last = LAST_CALL;
    last.start = p.start;
    last.posted = p.posted;
    last.seen = s[CALL_STAMP.SEEN]!;
    last.called = s[CALL_STAMP.CALLED]!;
    last.done = s[CALL_STAMP.DONE]!;
    last.resumed = resumed;
    last.end = wallMs();
    return reply;
  }

  /** The input bytes of posted request `seq` (for a call moved to another seat). */
  inputOf(seq: number): Uint8Array {
    const slot = slotOf(seq);
    const at = this.#at.slots[slot]!.input;
    return this.#bytes.slice(at, at + Math.max(0, this.#h[slotWord(slot, SLOT.INPUT_LEN)]!));
  }

  /**
   * Takes posted request `seq` back if the worker has not started it (CLAIM 0→2; the worker's
   * own claim is the same compareExchange, so exactly one side wins). True: it will not run, and
   * its reply is 'stolen'.
   */
  steal(seq: number): boolean {
    const p = this.#posted.find((x) => x.seq === seq);
    // After the thread's exit the posted list is answered ('gone'); the slot still tells whether
    // the request was claimed, and its area still holds the input (nothing reuses it).
    if (this.#exitedFlag ? !isDone(this.#seq, seq) : !p || p.stolen) return false;
    if (Atomics.compareExchange(this.#h, slotWord(slotOf(seq), SLOT.CLAIM), CLAIM.POSTED, CLAIM.STOLEN) !== CLAIM.POSTED) return false;
    if (p) p.stolen = true;
    return true;
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

  /** Whether the worker has answered request `seq` (its reply may not be read back yet). */
  answered(seq: number): boolean {
    return isDone(Atomics.load(this.#h, CH.DONE), seq);
  }

  /**
   * Cancels posted request `seq`, running or not yet started: its slot's flag, then one kick
   * (see the ordering above). A request already read back is left alone (its slot may hold a
   * later one).
   */
  cancel(seq: number): void {
    if (!this.#posted.some((p) => p.seq === seq)) return;
    this.#cancelSlot(slotOf(seq));
  }

  #cancelSlot(slot: number): void {
    Atomics.store(this.#h, slotWord(slot, SLOT.CANCEL), 1);
    const tid = Atomics.load(this.#h, slotWord(slot, SLOT.TID));
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
      if (cancel) for (let i = 0; i < SLOTS; i++) this.#cancelSlot(i);
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
    for (let i = 0; i < SLOTS; i++) Atomics.store(this.#h, slotWord(i, SLOT.CANCEL), 1);
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
