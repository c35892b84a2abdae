/**
 * The main thread's handle on one vCPU thread: starts the worker, makes the vCPU in it, and
 * drives its state machine — kick (immediate_exit + a signal to the thread, retried until the
 * thread acknowledges), pause, resume, stop.
 */
import type { Remote } from 'comlink';
import { RingProducer, createRingBuffer } from '@kvmpool/devices';
import { VcpuThreadError } from '../errors.js';
import { signalThread } from '../signals.js';
import { vcpuThreads, type VcpuThread } from './thread-pool.js';
import {
  CONTROL, KICK_SIGNAL, REQUEST, VCPU_STATE_NAME, type FastPathEntry, type GuestDebugConfig, type RunEnd, type VcpuConfig,
  type VcpuState, type VcpuThreadApi, type VcpuThreadEvent,
} from './protocol.js';
import { VcpuMapping } from './vcpu-mapping.js';
import type { VcpuSnapshot } from '../vcpu-state.js';
import type { Translation } from '../vcpu.js';

const KICK_RETRY_MS = 1;
/** How long a kick blocks the event loop at most, waiting for the acknowledgement. */
const KICK_SYNC_WAIT_MS = 0.2;

export interface VcpuHandleInit {
  id: number;
  vmFd: number;
  mmapSize: number;
  doorbell: SharedArrayBuffer;
  fastPath: FastPathEntry[];
  stopPorts: number[];
  coalesced: boolean;
  /** Called once if the thread dies outside a control call. */
  onThreadError: (e: VcpuThreadError) => void;
  /** Events the thread sends unasked (debug stops). */
  onEvent?: (e: VcpuThreadEvent) => void;
}

export class VcpuHandle {
  readonly id: number;
  readonly ring: SharedArrayBuffer;
  readonly control: Int32Array;
  readonly #thread: VcpuThread;
  readonly #api: Remote<VcpuThreadApi>;
  #tid = 0;
  #mapping: VcpuMapping | undefined;
  #closed = false;
  #dead = false;
  readonly #died: Promise<never>;
  #markDead!: (e: VcpuThreadError) => void;
  /** Kicks sent (signals), for stats. */
  kicksSent = 0;

  private constructor(id: number, thread: VcpuThread, control: Int32Array, ring: SharedArrayBuffer) {
    this.id = id;
    this.#thread = thread;
    this.control = control;
    this.ring = ring;
    this.#api = thread.api;
    this.#died = new Promise<never>((_, reject) => {
      this.#markDead = (e) => {
        this.#dead = true;
        reject(e);
      };
    });
    this.#died.catch(() => {}); // observed through #call
  }

  /** A control call that fails, instead of hanging, if the thread dies meanwhile. */
  #call<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.#died]);
  }

  /** Takes a vCPU thread (from the pool, or a new one) and creates the vCPU inside it. */
  static async start(init: VcpuHandleInit): Promise<VcpuHandle> {
    const thread = vcpuThreads.acquire();
    const control = new Int32Array(new SharedArrayBuffer(CONTROL.WORDS * 4));
    const h = new VcpuHandle(init.id, thread, control, createRingBuffer());
    thread.own(
      init.id,
      (e) => {
        if (h.#dead) return;
        h.#markDead(e);
        if (!h.#closed) init.onThreadError(e);
      },
      init.onEvent,
    );
    try {
      const { tid, vcpuFd } = await h.#call(h.#api.init({
        vmFd: init.vmFd,
        vcpuId: init.id,
        ring: h.ring,
        doorbell: init.doorbell,
        control: control.buffer as SharedArrayBuffer,
        fastPath: init.fastPath,
        stopPorts: init.stopPorts,
        coalesced: init.coalesced,
      }));
      h.#tid = tid;
      h.#mapping = new VcpuMapping(vcpuFd, init.mmapSize);
    } catch (e) {
      await h.close();
      throw e;
    }
    return h;
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

  configure(config: VcpuConfig): Promise<void> {
    return this.#call(this.#api.configure(config));
  }

  /** Resolves once the thread has left the created state (it runs, or already ended). */
  started(): Promise<void> {
    return this.#waitState((s) => s !== 'created');
  }

  /** Runs the vCPU; resolves when its run loop ends for good (hlt, stop, crash…). */
  run(): Promise<RunEnd> {
    return this.#call<RunEnd>(this.#api.run());
  }

  /**
   * Brings the vCPU out of KVM_RUN to its next safe point, and resolves once the thread has
   * acknowledged. Sets immediate_exit (for a vCPU about to enter KVM_RUN), then signals the
   * thread (for one inside it), again every millisecond until the acknowledgement arrives.
   */
  async kick(): Promise<void> {
    const ctl = this.control;
    const want = (Atomics.add(ctl, CONTROL.KICK_REQ, 1) + 1) | 0;
    this.#mapping?.requestImmediateExit();
    for (;;) {
      const ack = Atomics.load(ctl, CONTROL.KICK_ACK);
      if (((ack - want) | 0) >= 0) return;
      const s = this.state;
      // Not started, or ended: there is no run loop to acknowledge.
      if (s === 'created' || s === 'stopped' || s === 'crashed' || this.#dead) return;
      if (s === 'paused') {
        // Paused threads wait on the REQUEST word and acknowledge kicks when woken.
        Atomics.notify(ctl, CONTROL.REQUEST);
      } else if (signalThread(this.#tid, KICK_SIGNAL)) {
        this.kicksSent++;
      }
      // The acknowledgement usually comes within tens of microseconds: wait for it briefly
      // and synchronously (waking the main thread's event loop costs more than that), then
      // asynchronously until the retry.
      if (Atomics.wait(ctl, CONTROL.KICK_ACK, ack, KICK_SYNC_WAIT_MS) === 'ok') continue;
      const w = Atomics.waitAsync(ctl, CONTROL.KICK_ACK, ack, KICK_RETRY_MS);
      if (w.async) await w.value;
    }
  }

  async #waitState(done: (s: VcpuState) => boolean): Promise<void> {
    for (;;) {
      if (this.#dead) return;
      const raw = Atomics.load(this.control, CONTROL.STATE);
      if (done(VCPU_STATE_NAME[raw] ?? 'crashed')) return;
      const w = Atomics.waitAsync(this.control, CONTROL.STATE, raw, 100);
      if (w.async) await w.value;
    }
  }

  /** Pauses a running vCPU; resolves once it is out of KVM_RUN and paused (or already ended). */
  async pause(): Promise<void> {
    const s = this.state;
    if (s === 'created' || s === 'stopped' || s === 'crashed') return;
    this.#request(REQUEST.pause);
    // Once the kick is acknowledged the thread is at a safe point and has seen the request.
    await this.kick();
    await this.#waitState((st) => st !== 'running');
  }

  /** Lets a paused vCPU run again; resolves once it has left the paused state. */
  async resume(): Promise<void> {
    if (Atomics.load(this.control, CONTROL.REQUEST) !== REQUEST.pause) return;
    // Count resumes, not states: the vCPU may stop again (a debug exit) before we look.
    const before = Atomics.load(this.control, CONTROL.RESUMES);
    this.#request(REQUEST.none);
    for (;;) {
      if (this.#dead || Atomics.load(this.control, CONTROL.RESUMES) !== before) return;
      const s = this.state;
      if (s === 'stopped' || s === 'crashed') return;
      const w = Atomics.waitAsync(this.control, CONTROL.RESUMES, before, 100);
      if (w.async) await w.value;
    }
  }

  /** Asks the vCPU to stop, from any state; wakes it from a device wait, a pause or KVM_RUN. */
  async stop(): Promise<void> {
    this.#request(REQUEST.stop);
    RingProducer.wake(this.ring);
    await this.kick();
  }

  #request(r: number): void {
    Atomics.store(this.control, CONTROL.REQUEST, r);
    Atomics.notify(this.control, CONTROL.REQUEST);
  }

  getRegs(): ReturnType<Remote<VcpuThreadApi>['getRegs']> {
    return this.#call(this.#api.getRegs());
  }
  setRegs(...args: Parameters<VcpuThreadApi['setRegs']>): Promise<void> {
    return this.#call(this.#api.setRegs(...args));
  }
  getSregs(): ReturnType<Remote<VcpuThreadApi>['getSregs']> {
    return this.#call(this.#api.getSregs());
  }
  setSregs(...args: Parameters<VcpuThreadApi['setSregs']>): Promise<void> {
    return this.#call(this.#api.setSregs(...args));
  }

  saveState(irqchip: boolean): Promise<VcpuSnapshot> {
    return this.#call(this.#api.saveState(irqchip));
  }
  loadState(state: VcpuSnapshot): Promise<void> {
    return this.#call(this.#api.loadState(state));
  }
  setGuestDebug(config: GuestDebugConfig): Promise<void> {
    return this.#call(this.#api.setGuestDebug(config));
  }
  /** Resolves once the thread is paused (e.g. after it stopped itself at a debug exit). */
  paused(): Promise<void> {
    return this.#waitState((s) => s !== 'running');
  }
  translate(gva: bigint): Promise<Translation> {
    return this.#call(this.#api.translate(gva));
  }

  /** Fault injection for tests: an uncaught exception in the vCPU thread. Resolves once sent. */
  async injectFault(message: string): Promise<void> {
    try {
      await this.#call(this.#api.injectFault(message));
    } catch (e) {
      // The thread may die before its answer arrives: that is the point.
      if (!(e instanceof VcpuThreadError)) throw e;
    }
  }

  /**
   * Closes the vCPU in its thread and unmaps the main-thread mapping; the thread goes back to
   * the pool (or is ended, if it does not answer). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#mapping?.close();
    this.#mapping = undefined;
    let clean = false;
    if (!this.#dead) {
      try {
        clean = await Promise.race([
          this.#call(this.#api.close()).then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), 1000).unref()),
        ]);
      } catch {
        clean = false; // the thread died meanwhile
      }
    }
    if (clean) vcpuThreads.release(this.#thread);
    else {
      this.#thread.disown();
      await this.#thread.worker.terminate();
    }
  }
}
