/**
 * The vCPU run loop: KVM_RUN → decode → answer in the worker (fast path) | post to the exit
 * ring | wait for the dispatcher's answer. It returns at a safe point (outside KVM_RUN, no
 * access half done) when kicked, asked to pause or stop, and when the guest stops or dies.
 *
 * An access that needs a device is a `PendingAccess` until it is done: its coalesced
 * predecessors taken, its record posted, and for a read the answer copied into kvm_run.
 * Each of those steps either completes or gives up with nothing half done, so every wait in
 * them (the coalesced lock, ring room, the answer) is a safe point: a pause there returns to
 * the thread's event loop, which serves requests (registers…) while paused; the next `run()`
 * takes the access up where it was — a read posted before the pause goes on waiting for its
 * answer, and the guest gets it.
 */
import {
  CONTROL, KICK_SIGNAL, REQUEST, SOFT_IRQ, acknowledgeKicks, consumePending, describeExit, softIrqAccept, softIrqNext, softIrqPort,
  waitCheck, type CoalescedRing, type RunEnd, type Vcpu,
} from '@kvmpool/core/internal';
import { RECORD_KIND, RingProducer, WAIT_SLICE_MS, recordsFor, type RecordKind, type StepOutcome, type WaitCheck } from '@kvmpool/devices';

/** A device register the run loop answers in the vCPU thread from shared memory. */
export interface FastRegisterView {
  /** Access width in bytes it answers. */
  size: number;
  /** The device's shared words. */
  state: Int32Array;
  /** Which word holds the register. */
  index: number;
}

/** How a vCPU thread's run loop is set up (by the machine, through the thread protocol). */
export interface RunLoopOptions {
  /** Port → register answered in the thread. */
  fastPio: Map<number, FastRegisterView>;
  /** Guest-physical address → register answered in the thread. */
  fastMmio: Map<bigint, FastRegisterView>;
  /** Ports whose OUT stops this vCPU (the halt port, debug-exit). */
  stopPorts: Set<number>;
  /** The VM has coalesced zones: take KVM's coalesced ring into the exit ring at each exit. */
  coalesced: boolean;
  /**
   * The no-irqchip interrupt controller's state (machine/soft-irq.ts), for the vCPU that takes its
   * interrupts (vCPU 0): this loop injects them with KVM_INTERRUPT, serves its ports, and waits in
   * HLT (IF=1) for one instead of stopping.
   */
  softIrq?: Int32Array;
}

/** A guest access on its way to a device. `data` is the exit's data in kvm_run. */
interface PendingAccess {
  kind: RecordKind;
  address: bigint;
  size: number;
  data: Uint8Array;
  read: boolean;
  /** Set for an OUT to a port that stops the vCPU. */
  stopPort: number | undefined;
  /** The read's sequence number once posted. */
  seq: number | undefined;
}

/** Consecutive coalesced writes to one port, carried as one record chain. */
interface CoalescedRun {
  pio: boolean;
  address: bigint;
  size: number;
  bytes: number[];
}

/**
 * The vCPU thread's `KVM_RUN` loop: it answers fast registers in the thread, posts every other access to the
 * exit ring and waits for the dispatcher's answer to a read. `run()` returns at a safe point (no access half
 * done) when kicked, asked to pause or stop, or when the guest stops or dies. Started by `@kvmpool/worker/vcpu-
 * thread`; apps do not use it directly.
 */
export class RunLoop {
  readonly #vcpu: Vcpu;
  readonly #ring: RingProducer;
  readonly #ctl: Int32Array;
  readonly #opts: RunLoopOptions;
  readonly #coalesced: CoalescedRing | undefined;
  /** Every wait's check: acknowledges kicks, then pause/stop/go on. */
  readonly check: WaitCheck;
  #pending: PendingAccess | undefined;
  readonly #irq: Int32Array | undefined;
  /** The guest executed HLT with IF=1 and waits for an interrupt (no-irqchip controller only). */
  #halted = false;

  constructor(vcpu: Vcpu, ring: RingProducer, control: Int32Array, options: RunLoopOptions) {
    this.#vcpu = vcpu;
    this.#ring = ring;
    this.#ctl = control;
    this.#opts = options;
    this.#coalesced = options.coalesced ? vcpu.coalescedRing() : undefined;
    this.check = waitCheck(control, () => this.acknowledge());
    this.#irq = options.softIrq;
  }

  /**
   * Right before KVM_RUN (after the safe point cleared immediate_exit, see soft-irq.ts for the ordering):
   * inject the controller's next interrupt if the guest can take it now, else ask KVM to exit as soon as
   * it can (kvm_run.request_interrupt_window → KVM_EXIT_IRQ_WINDOW_OPEN).
   */
  #offerInterrupt(irq: Int32Array): void {
    const vcpu = this.#vcpu;
    const line = softIrqNext(irq);
    if (line < 0) {
      if (vcpu.requestInterruptWindow) vcpu.requestInterruptWindow = false;
      return;
    }
    if (vcpu.readyForInterruptInjection) {
      vcpu.interrupt(softIrqAccept(irq, line));
      vcpu.requestInterruptWindow = false;
    } else {
      vcpu.requestInterruptWindow = true;
    }
  }

  /**
   * HLT with IF=1 under the no-irqchip controller: sleep until it has an interrupt to deliver. Every
   * wake-up is a safe point. CONTROL.WAKE is read before the lines are looked at, and the main thread
   * bumps it after it raises one (soft-irq.ts), so no request is missed between the look and the sleep.
   */
  #waitForInterrupt(irq: Int32Array): 'go-on' | 'pause' | 'stop' {
    const ctl = this.#ctl;
    for (;;) {
      const gen = Atomics.load(ctl, CONTROL.WAKE);
      const c = this.check();
      if (c !== 'go-on') return c;
      if (softIrqNext(irq) >= 0) return 'go-on';
      Atomics.wait(ctl, CONTROL.WAKE, gen, WAIT_SLICE_MS);
    }
  }

  /** The controller's ports, answered here (an IN's bytes go into kvm_run). */
  #servePort(irq: Int32Array, port: number, size: number, data: Uint8Array, write: boolean): void {
    for (let i = 0; i < data.length; i++) {
      const v = softIrqPort(irq, port - SOFT_IRQ.PORT + (i % size), write, data[i]!);
      if (!write) data[i] = v;
    }
  }

  /** Acknowledges kicks (this thread is at a safe point); true if there were any. */
  acknowledge(): boolean {
    return acknowledgeKicks(
      this.#ctl,
      () => {
        this.#vcpu.immediateExit = false;
      },
      () => void consumePending(KICK_SIGNAL),
    );
  }

  /** What a pending access is, for error messages (undefined when none). */
  get pendingAccess(): {
    /** A read (the vCPU waits for its answer) rather than a write. */
    read: boolean;
    /** Its record is in the ring already. */
    posted: boolean;
    /** E.g. `read of port 0x3fd`. */
    description: string;
  } | undefined {
    const p = this.#pending;
    if (!p) return undefined;
    const bus = p.kind === RECORD_KIND.IO_IN || p.kind === RECORD_KIND.IO_OUT ? 'port' : 'MMIO address';
    return { read: p.read, posted: p.seq !== undefined, description: `${p.read ? 'read' : 'write'} of ${bus} 0x${p.address.toString(16)}` };
  }

  /**
   * Finishes a pending write now, for a state save while paused: the dispatcher keeps draining,
   * so room comes soon — but waits at most `boundMs` (a stopped dispatcher makes none), then
   * gives up with 'pause'. A pending read is left alone.
   */
  finishPendingWrite(boundMs: number): StepOutcome {
    if (!this.#pending || this.#pending.read) return 'done';
    const end = performance.now() + boundMs;
    const r = this.#advance(() => {
      if (this.check() === 'stop') return 'stop';
      return performance.now() > end ? 'pause' : 'go-on';
    });
    return r === 'pause' || r === 'stop' ? r : 'done';
  }

  /** Runs the vCPU until it must return; says why (kicked, paused, stopped, halted, crashed…). */
  run(): RunEnd {
    const ctl = this.#ctl;
    const vcpu = this.#vcpu;
    for (;;) {
      // The safe point: a kick (even one with no request) returns to the thread's event loop once.
      const kicked = this.acknowledge();
      const request = Atomics.load(ctl, CONTROL.REQUEST);
      if (request === REQUEST.stop) return { reason: 'stopped' };
      if (request === REQUEST.pause || kicked) return { reason: 'kicked' };
      if (this.#pending) {
        const r = this.#advance(this.check);
        if (r === 'stop') return { reason: 'stopped' };
        if (r === 'pause') return { reason: 'kicked' };
        if (r !== 'done') return r;
      }
      const irq = this.#irq;
      if (irq) {
        if (this.#halted) {
          const w = this.#waitForInterrupt(irq);
          if (w === 'stop') return { reason: 'stopped' };
          if (w === 'pause') return { reason: 'kicked' };
          this.#halted = false;
        }
        this.#offerInterrupt(irq);
      }
      const exit = vcpu.run();
      Atomics.add(ctl, CONTROL.EXITS, 1);
      switch (exit.kind) {
        case 'intr':
          // A kick: the signal is pending in this thread (blocked outside KVM_RUN); take it.
          consumePending(KICK_SIGNAL);
          Atomics.add(ctl, CONTROL.KICKS_IN_RUN, 1);
          continue;
        case 'io': {
          if (irq && exit.port >= SOFT_IRQ.PORT && exit.port + exit.size <= SOFT_IRQ.PORT + SOFT_IRQ.PORTS) {
            this.#servePort(irq, exit.port, exit.size, exit.data, exit.direction === 'out');
            continue;
          }
          const stopPort = exit.direction === 'out' && this.#opts.stopPorts.has(exit.port) ? exit.port : undefined;
          if (exit.direction === 'in') {
            const fast = this.#opts.fastPio.get(exit.port);
            // A fast answer must not overtake this vCPU's own posted writes (they may change the
            // register): only answer locally when the dispatcher has taken all of them. Coalesced
            // writes may still be queued: a device marks a register fast only if they cannot change it.
            if (fast && fast.size === exit.size && this.#ring.drained()) {
              fillFromState(fast, exit.data, exit.size);
              continue;
            }
          }
          const kind = exit.direction === 'out' ? RECORD_KIND.IO_OUT : RECORD_KIND.IO_IN;
          this.#pending = { kind, address: BigInt(exit.port), size: exit.size, data: exit.data, read: exit.direction === 'in', stopPort, seq: undefined };
          break;
        }
        case 'mmio': {
          if (exit.direction === 'read') {
            const fast = this.#opts.fastMmio.get(exit.address);
            if (fast && fast.size === exit.size && this.#ring.drained()) {
              fillFromState(fast, exit.data, exit.size);
              continue;
            }
          }
          const kind = exit.direction === 'write' ? RECORD_KIND.MMIO_WRITE : RECORD_KIND.MMIO_READ;
          this.#pending = { kind, address: exit.address, size: exit.size, data: exit.data, read: exit.direction === 'read', stopPort: undefined, seq: undefined };
          break;
        }
        case 'hlt':
          // With the no-irqchip controller, HLT with interrupts enabled waits for one (the loop's top).
          if (irq && vcpu.interruptFlag) {
            this.#halted = true;
            continue;
          }
          return { reason: 'hlt' };
        case 'debug':
          return { reason: 'debug', pc: exit.pc, dr6: exit.dr6, exception: exit.exception };
        case 'irq_window_open':
          continue;
        default: {
          let rip = 0n;
          try {
            rip = vcpu.getRegs().rip;
          } catch {
            // registers unreadable after a failed entry: report rip 0
          }
          return { reason: 'crashed', exit, rip, description: describeExit(exit) };
        }
      }
      // The access goes to its device now; the loop's top takes it up again after a pause.
      const r = this.#advance(this.check);
      if (r === 'stop') return { reason: 'stopped' };
      if (r === 'pause') return { reason: 'kicked' };
      if (r !== 'done') return r;
    }
  }

  /** Moves the pending access on as far as it goes: done (or a stop port), or pause/stop with nothing half done. */
  #advance(check: WaitCheck): StepOutcome | RunEnd {
    const p = this.#pending!;
    if (p.seq === undefined) {
      const c = this.#takeCoalesced(check);
      if (c !== 'done') return c;
      if (!p.read) {
        const r = this.#ring.post(p.kind, p.address, p.size, p.data, check);
        if (r !== 'done') return r;
        this.#pending = undefined;
        return p.stopPort === undefined ? 'done' : { reason: 'stop-port', port: p.stopPort };
      }
      const seq = this.#ring.postRead(p.kind, p.address, p.size, p.data.length, check);
      if (typeof seq !== 'number') return seq;
      p.seq = seq;
      Atomics.store(this.#ctl, CONTROL.READ_PENDING, 1);
    }
    const r = this.#ring.awaitReply(p.seq, p.data, check);
    if (r !== 'done') return r;
    this.#pending = undefined;
    Atomics.store(this.#ctl, CONTROL.READ_PENDING, 0);
    return 'done';
  }

  /**
   * Moves KVM's queued coalesced writes into this vCPU's exit ring, under the VM-wide lock,
   * before this vCPU posts anything: the writes it made before this exit are then handled
   * before the exit's own access. Consecutive writes to one port share a record chain. The
   * room for all of them is reserved before any entry is taken, so a pause or stop while
   * waiting leaves KVM's ring as it was.
   */
  #takeCoalesced(check: WaitCheck): StepOutcome {
    const ring = this.#coalesced;
    if (!ring?.pending()) return 'done';
    const locked = this.#ring.lockCoalesced(check);
    if (locked !== 'done') return locked;
    try {
      const stop = ring.last();
      const runs: CoalescedRun[] = [];
      ring.peekTo(stop, (w) => {
        let run = runs.at(-1);
        if (!run || !w.pio || !run.pio || run.address !== w.address || run.size !== w.data.length) {
          run = { pio: w.pio, address: w.address, size: w.data.length, bytes: [] };
          runs.push(run);
        }
        for (const b of w.data) run.bytes.push(b);
      });
      const need = runs.reduce((n, r) => n + recordsFor(r.bytes.length), 0);
      const room = this.#ring.reserve(need, check);
      if (room !== 'done') return room;
      ring.drainTo(stop, () => {});
      for (const run of runs) {
        this.#ring.postReserved(run.pio ? RECORD_KIND.IO_OUT : RECORD_KIND.MMIO_WRITE, run.address, run.size, Uint8Array.from(run.bytes));
      }
      this.#ring.ring();
      return 'done';
    } finally {
      this.#ring.unlockCoalesced();
    }
  }
}

/** Writes the register's current value, little-endian, into each `size`-byte item of `data`. */
function fillFromState(fast: FastRegisterView, data: Uint8Array, size: number): void {
  const v = Atomics.load(fast.state, fast.index);
  for (let at = 0; at < data.length; at += size) {
    for (let i = 0; i < size; i++) data[at + i] = i < 4 ? (v >>> (8 * i)) & 0xff : 0;
  }
}
