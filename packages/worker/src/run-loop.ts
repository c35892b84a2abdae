/**
 * The vCPU run loop: KVM_RUN → decode → answer in the worker (fast path) | post to the exit
 * ring | wait for the dispatcher's answer. It returns at a safe point (outside KVM_RUN, no
 * access half-done) when kicked, and when the guest stops or dies.
 */
import {
  CONTROL, KICK_SIGNAL, REQUEST, consumePending, describeExit, type CoalescedRing, type IoExit, type MmioExit, type RunEnd,
  type Vcpu,
} from '@kvmpool/core/internal';
import { RECORD_KIND, RingProducer, type WaitCheck } from '@kvmpool/devices';

export interface FastRegisterView {
  size: number;
  state: Int32Array;
  index: number;
}

export interface RunLoopOptions {
  fastPio: Map<number, FastRegisterView>;
  fastMmio: Map<bigint, FastRegisterView>;
  stopPorts: Set<number>;
  /** The VM has coalesced zones: take KVM's coalesced ring into the exit ring at each exit. */
  coalesced: boolean;
}

export class RunLoop {
  readonly #vcpu: Vcpu;
  readonly #ring: RingProducer;
  readonly #ctl: Int32Array;
  readonly #opts: RunLoopOptions;
  readonly #check: WaitCheck;

  constructor(vcpu: Vcpu, ring: RingProducer, control: Int32Array, options: RunLoopOptions) {
    this.#vcpu = vcpu;
    this.#ring = ring;
    this.#ctl = control;
    this.#opts = options;
    this.#check = () => (Atomics.load(control, CONTROL.REQUEST) === REQUEST.stop ? 'stop' : 'go-on');
    this.#coalesced = options.coalesced ? vcpu.coalescedRing() : undefined;
  }

  readonly #coalesced: CoalescedRing | undefined;

  /** Acknowledges any pending kick; true if there was one or a request is waiting. */
  #safePoint(): boolean {
    const ctl = this.#ctl;
    const req = Atomics.load(ctl, CONTROL.KICK_REQ);
    if (req === Atomics.load(ctl, CONTROL.KICK_ACK) && Atomics.load(ctl, CONTROL.REQUEST) === REQUEST.none) return false;
    this.#vcpu.immediateExit = false;
    Atomics.store(ctl, CONTROL.KICK_ACK, req);
    Atomics.notify(ctl, CONTROL.KICK_ACK);
    return true;
  }

  run(): RunEnd {
    const ctl = this.#ctl;
    const vcpu = this.#vcpu;
    for (;;) {
      if (this.#safePoint()) {
        return Atomics.load(ctl, CONTROL.REQUEST) === REQUEST.stop ? { reason: 'stopped' } : { reason: 'kicked' };
      }
      const exit = vcpu.run();
      Atomics.add(ctl, CONTROL.EXITS, 1);
      switch (exit.kind) {
        case 'intr':
          // A kick: the signal is pending in this thread (blocked outside KVM_RUN); take it.
          consumePending(KICK_SIGNAL);
          vcpu.immediateExit = false;
          Atomics.add(ctl, CONTROL.KICKS_IN_RUN, 1);
          continue;
        case 'io':
          if (!this.#io(exit)) return { reason: 'stopped' };
          if (exit.direction === 'out' && this.#opts.stopPorts.has(exit.port)) return { reason: 'stop-port', port: exit.port };
          continue;
        case 'mmio':
          if (!this.#mmio(exit)) return { reason: 'stopped' };
          continue;
        case 'hlt':
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
    }
  }

  /**
   * Moves KVM's queued coalesced writes into this vCPU's exit ring, under the VM-wide lock,
   * before this vCPU posts anything: the writes it made before this exit are then handled
   * before the exit's own access. Consecutive writes to one address share a record.
   */
  #takeCoalesced(): boolean {
    const ring = this.#coalesced;
    if (!ring?.pending()) return true;
    return this.#ring.withCoalescedLock(() => {
      let ok = true;
      let run: { pio: boolean; address: bigint; size: number; bytes: number[] } | undefined;
      const flush = (): void => {
        if (!run || !ok) return;
        ok = this.#ring.post(run.pio ? RECORD_KIND.IO_OUT : RECORD_KIND.MMIO_WRITE, run.address, run.size, Uint8Array.from(run.bytes), this.#check);
        run = undefined;
      };
      ring.drain((w) => {
        if (!run || run.pio !== w.pio || run.address !== w.address || run.size !== w.data.length || !w.pio) {
          flush();
          run = { pio: w.pio, address: w.address, size: w.data.length, bytes: [] };
        }
        for (const b of w.data) run.bytes.push(b);
      });
      flush();
      return ok;
    });
  }

  #io(e: IoExit): boolean {
    const port = BigInt(e.port);
    if (e.direction === 'out') return this.#takeCoalesced() && this.#ring.post(RECORD_KIND.IO_OUT, port, e.size, e.data, this.#check);
    const fast = this.#opts.fastPio.get(e.port);
    // A fast answer must not overtake this vCPU's own posted writes (they may change the
    // register): only answer locally when the dispatcher has taken all of them. Coalesced
    // writes may still be queued: a device marks a register fast only if they cannot change it.
    if (fast && fast.size === e.size && this.#ring.drained()) {
      fillFromState(fast, e.data, e.size);
      return true;
    }
    return this.#takeCoalesced() && this.#ring.request(RECORD_KIND.IO_IN, port, e.size, e.data, this.#check);
  }

  #mmio(e: MmioExit): boolean {
    if (e.direction === 'write') return this.#takeCoalesced() && this.#ring.post(RECORD_KIND.MMIO_WRITE, e.address, e.size, e.data, this.#check);
    const fast = this.#opts.fastMmio.get(e.address);
    if (fast && fast.size === e.size && this.#ring.drained()) {
      fillFromState(fast, e.data, e.size);
      return true;
    }
    return this.#takeCoalesced() && this.#ring.request(RECORD_KIND.MMIO_READ, e.address, e.size, e.data, this.#check);
  }
}

/** Writes the register's current value, little-endian, into each `size`-byte item of `data`. */
function fillFromState(fast: FastRegisterView, data: Uint8Array, size: number): void {
  const v = Atomics.load(fast.state, fast.index);
  for (let at = 0; at < data.length; at += size) {
    for (let i = 0; i < size; i++) data[at + i] = i < 4 ? (v >>> (8 * i)) & 0xff : 0;
  }
}
