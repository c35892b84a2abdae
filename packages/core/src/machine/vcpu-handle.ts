/**
 * The main thread's handle on one vCPU thread (the state machine is in vcpu-lifecycle.ts):
 * starts the worker and makes the vCPU in it, sends it typed requests (refused at once with a
 * VcpuStateError when the vCPU's state does not allow them), kicks, pauses, resumes, stops.
 * It owns what the thread opened once the thread is gone: a thread that dies or does not
 * answer `close` is terminated, and the handle closes its vCPU fd, /dev/kvm fd and kvm_run
 * mapping (the thread reports them at init).
 */
import { RingProducer, createRingBuffer } from '@kvmpool/devices';
import { ClosedError, VcpuThreadError, decodeError } from '../errors.js';
import { signalThread } from '../signals.js';
import { reclaimOwned } from '../thread-resources.js';
import type { VcpuSnapshot } from '../vcpu-state.js';
import type { Translation } from '../vcpu.js';
import { vcpuThreads, type VcpuThread } from './thread-pool.js';
import {
  CONTROL, KICK_SIGNAL, REQUEST, VCPU_STATE_NAME, isFinal, kickAcknowledged, recordKick, refusal, type FastPathEntry,
  type GuestDebugConfig, type OwnedResources, type RunEnd, type VcpuConfig, type VcpuReply, type VcpuRequest,
  type VcpuRequests, type VcpuRequestType, type VcpuState, type VcpuThreadEvent,
} from './vcpu-lifecycle.js';
import { VcpuMapping } from './vcpu-mapping.js';

/** How long a kick blocks the event loop at most, waiting for the acknowledgement. */
const KICK_SYNC_WAIT_MS = 0.2;
/**
 * A wait on the thread looks again after 0.25 ms, then 0.5, 1, 2 … up to 50 ms (whether the
 * thread is still there, and what it has done). The early looks are not only for dead threads: here,
 * Node 20 under kvm_pvm, the main thread's `Atomics.waitAsync` was seen to miss the thread's
 * `Atomics.notify` now and then and resolve only at its timeout — with one fixed 50 ms timeout
 * the kick benchmark's p99 was 50.6–51 ms, with 5 ms it was 5.5–5.7 ms, while the
 * acknowledgement itself had long been stored. The re-check bounds such a miss: with this
 * schedule the p99 was 0.33–0.44 ms (`npm run bench -- exit-bus --quick`).
 */
const RECHECK_MS = 50;
const recheckMs = (attempt: number): number => Math.min(RECHECK_MS, 2 ** (attempt - 2));
/** How long `close()` waits for the thread to close its vCPU before it ends the thread. */
const CLOSE_TIMEOUT_MS = 1000;
/** How long `stop()` waits for the thread to see the request. */
export const STOP_ACK_MS = 1000;

export interface VcpuHandleInit {
  id: number;
  vmFd: number;
  mmapSize: number;
  doorbell: SharedArrayBuffer;
  fastPath: FastPathEntry[];
  stopPorts: number[];
  coalesced: boolean;
  /** Longest spin for a read's answer before sleeping, µs. */
  replySpinUs: number;
  /** The no-irqchip interrupt controller's state, for the vCPU that takes its interrupts. */
  softIrq?: SharedArrayBuffer;
  /** Called once if the thread dies outside a control call. */
  onThreadError: (e: VcpuThreadError) => void;
  /** Events the thread sends unasked (debug stops). */
  onEvent?: (e: VcpuThreadEvent) => void;
}

/**
 * Where kicks spent their wait for the acknowledgement, process-wide (for `npm run bench --
 * exit-bus`, which reports them beside the kick latency): acknowledged before any wait, in
 * the short synchronous wait, or after going asynchronous; and how many of each wait took
 * longer than 1 ms (`lateSync`: the thread was woken in time but got the CPU late — the host's
 * scheduler; `lateAsync`: the acknowledgement itself came late, or the event loop woke late).
 */
export const KICK_WAITS = { immediate: 0, sync: 0, async: 0, lateSync: 0, lateAsync: 0 };

/** Live handles, so that a process exit can stop their threads (see `stopAllOnExit`). */
const live = new Set<VcpuHandle>();
let exitHook = false;

export class VcpuHandle {
  readonly id: number;
  readonly ring: SharedArrayBuffer;
  readonly control: Int32Array;
  readonly #doorbell: SharedArrayBuffer;
  readonly #thread: VcpuThread;
  #tid = 0;
  #mapping: VcpuMapping | undefined;
  #owned: OwnedResources | undefined;
  #closed = false;
  #dead: VcpuThreadError | undefined;
  /** The thread has ended: nothing runs in it any more. */
  #gone = false;
  #nextId = 1;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  /** Requests other than `run` in flight: a resume waits for them (they need the vCPU still). */
  readonly #inflight = new Set<Promise<unknown>>();
  /** Kick signals sent, for stats. */
  kicksSent = 0;

  private constructor(id: number, thread: VcpuThread, doorbell: SharedArrayBuffer) {
    this.id = id;
    this.#thread = thread;
    this.#doorbell = doorbell;
    this.control = new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4));
    this.ring = createRingBuffer();
  }

  /** Takes a vCPU thread (from the pool, or a new one) and creates the vCPU inside it. */
  static async start(init: VcpuHandleInit): Promise<VcpuHandle> {
    const h = new VcpuHandle(init.id, vcpuThreads.acquire(), init.doorbell);
    h.#thread.own(init.id, {
      onMessage: (m) => h.#onMessage(m, init.onEvent),
      onDeath: (e) => {
        if (h.#dead) return;
        h.#dead = e;
        h.#rejectAll(e);
        if (!h.#closed) init.onThreadError(e);
      },
      onExit: () => {
        h.#gone = true;
        h.#reclaim();
      },
    });
    live.add(h);
    if (!exitHook) {
      exitHook = true;
      process.on('exit', stopAllOnExit);
    }
    try {
      const { tid, owned } = await h.#send('init', {
        vmFd: init.vmFd,
        vcpuId: init.id,
        ring: h.ring,
        doorbell: init.doorbell,
        control: h.control.buffer as SharedArrayBuffer,
        fastPath: init.fastPath,
        stopPorts: init.stopPorts,
        coalesced: init.coalesced,
        replySpinUs: init.replySpinUs,
        ...(init.softIrq ? { softIrq: init.softIrq } : {}),
      });
      h.#tid = tid;
      h.#owned = owned;
      if (h.#gone) h.#reclaim(); // the thread ended between its answer and now
      h.#mapping = new VcpuMapping(owned.vcpuFd, init.mmapSize);
    } catch (e) {
      await h.close();
      throw e;
    }
    return h;
  }

  #onMessage(m: VcpuReply, onEvent?: (e: VcpuThreadEvent) => void): void {
    if ('kvmpoolEvent' in m) {
      onEvent?.(m);
      return;
    }
    const w = this.#waiting.get(m.kvmpoolReply);
    if (!w) return;
    this.#waiting.delete(m.kvmpoolReply);
    if (m.ok) w.resolve(m.value);
    else w.reject(decodeError(m.error));
  }

  #rejectAll(e: Error): void {
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) w.reject(e);
  }

  /** Sends request `type`; refused at once if the vCPU's state does not allow it. */
  #send<K extends VcpuRequestType>(type: K, arg: VcpuRequests[K][0]): Promise<VcpuRequests[K][1]> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (this.#closed && type !== 'close') return Promise.reject(new ClosedError(`vCPU ${this.id}`));
    if (type !== 'init') {
      const no = refusal(this.id, this.state, type);
      if (no) return Promise.reject(no);
    }
    const id = this.#nextId++;
    const p = new Promise<VcpuRequests[K][1]>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.#thread.post({ id, type, arg } as VcpuRequest);
    if (type !== 'run') {
      this.#inflight.add(p);
      const done = (): void => void this.#inflight.delete(p);
      p.then(done, done);
    }
    return p;
  }

  /** The VM-wide coalesced ring is reachable through any vCPU's mapping. */
  get mapping(): VcpuMapping | undefined {
    return this.#mapping;
  }

  get state(): VcpuState {
    return VCPU_STATE_NAME[Atomics.load(this.control, CONTROL.STATE)] ?? 'crashed';
  }

  get exits(): number {
    return Atomics.load(this.control, CONTROL.EXITS) >>> 0;
  }

  /** True while a device read of this vCPU waits for its answer. */
  get readPending(): boolean {
    return Atomics.load(this.control, CONTROL.READ_PENDING) !== 0;
  }

  configure(config: VcpuConfig): Promise<void> {
    return this.#send('configure', config);
  }

  /** Resolves once the thread has left the created state (it runs, or already ended). */
  started(): Promise<void> {
    return this.#waitState((s) => s !== 'created');
  }

  /** Runs the vCPU; resolves when its run loop ends for good (hlt, stop, crash…). */
  run(): Promise<RunEnd> {
    return this.#send('run', undefined);
  }

  /**
   * Brings the vCPU to its next safe point and resolves once the thread has acknowledged:
   * one kick event (see vcpu-lifecycle.ts), no resend. A vCPU that is not started or has
   * ended has no safe point to reach: the kick resolves at once. `boundMs` bounds the wait
   * for the acknowledgement (a thread that hangs never gives one).
   */
  async kick(boundMs = Infinity): Promise<void> {
    if (this.#dead || this.#closed) return;
    const s = this.state;
    if (s === 'created' || isFinal(s)) return;
    const ctl = this.control;
    const { want, signal } = recordKick(ctl, () => this.#mapping?.requestImmediateExit());
    if (signal && signalThread(this.#tid, KICK_SIGNAL)) this.kicksSent++;
    this.#wakeWaits();
    let synced = false;
    let asyncSince = 0;
    let attempt = 0;
    const end = performance.now() + boundMs;
    for (;;) {
      if (kickAcknowledged(ctl, want) || this.#dead || performance.now() > end) {
        const waits = KICK_WAITS;
        if (asyncSince > 0) {
          waits.async++;
          if (performance.now() - asyncSince > 1) waits.lateAsync++;
        } else if (synced) waits.sync++;
        else waits.immediate++;
        return;
      }
      const st = this.state;
      if (st === 'created' || isFinal(st)) return;
      const ack = Atomics.load(ctl, CONTROL.KICK_ACK);
      // The acknowledgement usually comes within tens of microseconds: wait for it briefly
      // and synchronously once (waking the main thread's event loop costs more than that).
      if (!synced) {
        synced = true;
        const t0 = performance.now();
        if (Atomics.wait(ctl, CONTROL.KICK_ACK, ack, KICK_SYNC_WAIT_MS) === 'ok') {
          if (performance.now() - t0 > 1) KICK_WAITS.lateSync++;
          continue;
        }
      }
      asyncSince ||= performance.now();
      const w = Atomics.waitAsync(ctl, CONTROL.KICK_ACK, ack, recheckMs(attempt++));
      if (w.async) await w.value;
    }
  }

  /**
   * Gets a running vCPU out of KVM_RUN (or its HLT wait) so that its run loop looks at the no-irqchip
   * interrupt controller again: immediate_exit, a WAKE bump, and a signal. Unlike `kick()` it is no safe-
   * point event and waits for nothing; soft-irq.ts argues why no request is missed.
   */
  interruptKick(): void {
    if (this.#dead || this.#closed || this.state !== 'running') return;
    this.#mapping?.requestImmediateExit();
    Atomics.add(this.control, CONTROL.WAKE, 1);
    Atomics.notify(this.control, CONTROL.WAKE);
    if (signalThread(this.#tid, KICK_SIGNAL)) this.kicksSent++;
  }

  /** Wakes the thread from whatever it waits on (paused, a device reply, ring room, the coalesced lock). */
  #wakeWaits(): void {
    Atomics.add(this.control, CONTROL.WAKE, 1);
    Atomics.notify(this.control, CONTROL.WAKE);
    RingProducer.wake(this.ring, this.#doorbell);
  }

  async #waitState(done: (s: VcpuState) => boolean): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.#dead) return;
      const raw = Atomics.load(this.control, CONTROL.STATE);
      if (done(VCPU_STATE_NAME[raw] ?? 'crashed')) return;
      const w = Atomics.waitAsync(this.control, CONTROL.STATE, raw, recheckMs(attempt));
      if (w.async) await w.value;
    }
  }

  /**
   * Pauses a running vCPU; resolves once it is out of KVM_RUN and paused (or ended). A vCPU
   * waiting for a device read pauses too; it goes on waiting for the answer when resumed.
   */
  async pause(): Promise<void> {
    const s = this.state;
    if (s === 'created' || isFinal(s) || this.#dead) return;
    Atomics.compareExchange(this.control, CONTROL.REQUEST, REQUEST.none, REQUEST.pause);
    // Once the kick is acknowledged the thread is at a safe point and has seen the request.
    await this.kick();
    await this.#waitState((st) => st !== 'running');
  }

  /** Lets a paused vCPU run again; resolves once it has left the paused state. */
  async resume(): Promise<void> {
    // Requests sent while it was paused are answered first (they need it still).
    await Promise.allSettled([...this.#inflight]);
    // Count resumes, not states: the vCPU may stop again (a debug exit) before we look.
    const before = Atomics.load(this.control, CONTROL.RESUMES);
    if (Atomics.compareExchange(this.control, CONTROL.REQUEST, REQUEST.pause, REQUEST.none) !== REQUEST.pause) return;
    this.#wakeWaits();
    for (let attempt = 0; ; attempt++) {
      if (this.#dead || Atomics.load(this.control, CONTROL.RESUMES) !== before || this.state !== 'paused') return;
      const w = Atomics.waitAsync(this.control, CONTROL.RESUMES, before, recheckMs(attempt));
      if (w.async) await w.value;
    }
  }

  /**
   * Asks the vCPU to stop, from any state; wakes it from a device wait, a pause or KVM_RUN.
   * Resolves once the thread has seen the request, or after STOP_ACK_MS if it does not answer
   * (a hung thread: `close()` ends it).
   */
  async stop(): Promise<void> {
    this.#requestStop();
    await this.kick(STOP_ACK_MS);
  }

  #requestStop(): void {
    Atomics.store(this.control, CONTROL.REQUEST, REQUEST.stop);
    this.#wakeWaits();
  }

  getRegs(): Promise<VcpuRequests['getRegs'][1]> {
    return this.#send('getRegs', undefined);
  }
  setRegs(regs: VcpuRequests['setRegs'][0]): Promise<void> {
    return this.#send('setRegs', regs);
  }
  getSregs(): Promise<VcpuRequests['getSregs'][1]> {
    return this.#send('getSregs', undefined);
  }
  setSregs(sregs: VcpuRequests['setSregs'][0]): Promise<void> {
    return this.#send('setSregs', sregs);
  }
  saveState(irqchip: boolean): Promise<VcpuSnapshot> {
    return this.#send('saveState', { irqchip });
  }
  loadState(state: VcpuSnapshot): Promise<void> {
    return this.#send('loadState', state);
  }
  setGuestDebug(config: GuestDebugConfig): Promise<void> {
    return this.#send('setGuestDebug', config);
  }
  /** Resolves once the thread is paused (e.g. after it stopped itself at a debug exit). */
  paused(): Promise<void> {
    return this.#waitState((s) => s !== 'running');
  }
  translate(gva: bigint): Promise<Translation> {
    return this.#send('translate', gva);
  }

  /** Fault injection for tests: an uncaught exception in the vCPU thread, or a thread that hangs. Resolves once sent. */
  async injectFault(message: string, hang = false): Promise<void> {
    try {
      const sent = this.#send('injectFault', { message, hang });
      // A running thread serves requests only when it is back in its event loop: kick it there.
      if (this.state === 'running') void this.kick();
      await sent;
    } catch (e) {
      // The thread may die before its answer arrives: that is the point.
      if (!(e instanceof VcpuThreadError)) throw e;
    }
  }

  /**
   * Closes the vCPU in its thread and unmaps the main-thread mapping; the thread goes back to
   * the pool. A thread that is dead or does not answer in time is ended, and what it held is
   * closed from here. Pending requests are rejected. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#mapping?.close();
    this.#mapping = undefined;
    let clean = false;
    if (!this.#dead) {
      let timer: NodeJS.Timeout | undefined;
      try {
        clean = await Promise.race([
          this.#send('close', undefined).then(() => true),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(false), CLOSE_TIMEOUT_MS);
          }),
        ]);
      } catch {
        clean = false; // the thread died meanwhile
      } finally {
        clearTimeout(timer);
      }
    }
    this.#rejectAll(new ClosedError(`vCPU ${this.id}`));
    live.delete(this);
    if (clean) {
      vcpuThreads.release(this.#thread);
      return;
    }
    // A thread stuck in KVM_RUN only ends once it is back in JavaScript: stop-kick it first.
    this.#requestStop();
    // (Not to a thread already gone: its tid may belong to another thread by now.)
    if (this.#tid !== 0 && !this.#gone) signalThread(this.#tid, KICK_SIGNAL);
    this.#thread.disown();
    await this.#thread.worker.terminate();
    this.#gone = true;
    this.#reclaim();
  }

  /**
   * Closes what the (now gone) thread still held: its vCPU fd and kvm_run mapping, its
   * /dev/kvm fd. The thread clears each OWNED bit before it closes that resource itself, so
   * nothing is closed twice (thread-resources.ts).
   */
  #reclaim(): void {
    const o = this.#owned;
    if (!o || !this.#gone) return;
    reclaimOwned(this.control, CONTROL.OWNED, o);
    this.#owned = undefined;
  }

  /** Synchronous stop-kick for process exit: the thread leaves KVM_RUN, so it can be ended. */
  stopForExit(): void {
    if (this.#dead || this.#tid === 0) return;
    this.#requestStop();
    recordKick(this.control, () => this.#mapping?.requestImmediateExit());
    try {
      signalThread(this.#tid, KICK_SIGNAL);
    } catch {
      // exiting anyway
    }
  }
}

/** On process exit, every live vCPU thread is stop-kicked: Node can then end it (not wait on KVM_RUN forever). */
function stopAllOnExit(): void {
  for (const h of live) h.stopForExit();
}
