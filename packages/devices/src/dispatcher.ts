/**
 * The dispatcher: on the main thread, drains every vCPU's exit ring in a batch per wake-up,
 * hands each access to the PIO or MMIO bus, and answers reads. It sleeps on the VM-wide
 * doorbell with Atomics.waitAsync, so the event loop stays free while guests compute.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Bus } from './bus.js';
import { DISPATCHER_STATE, DOORBELL, RECORD_KIND, RingConsumer, tryWithCoalescedLock, type RingRecord } from './exit-ring.js';
import { AdaptiveSpin, MAX_SPIN_US } from './spin-policy.js';

/** KVM's VM-wide coalesced ring, as the dispatcher sees it. */
export interface CoalescedSource {
  /** Whether writes are waiting in KVM's coalesced ring. */
  pending(): boolean;
  /** The ring's current end (the kernel's `last`). */
  last(): number;
  /** Takes entries until the ring's start reaches `stop`; returns how many. */
  drainTo(stop: number, handle: (w: { pio: boolean; address: bigint; data: Uint8Array }) => void): number;
}

/** Counts of a `Dispatcher` since it was made. */
export interface DispatcherStats {
  /** Records handled. */
  records: number;
  /** Reads answered. */
  reads: number;
  /** Writes delivered. */
  writes: number;
  /** Times the dispatcher went to sleep on the doorbell and was woken. */
  wakeups: number;
  /** Non-empty drain passes. */
  batches: number;
  /** Accesses that hit no device. */
  unmapped: number;
  /** Waits for the next record that spun and saw one come (no sleep, no wake-up needed). */
  spinHits: number;
}

/**
 * A device threw (or its promise rejected) on a guest access; the device's error is the `cause`. The access is
 * answered all-ones (a read) or dropped (a write); a machine stops with this error.
 */
export class DeviceAccessError extends Error {
  /** Always `'DeviceAccessError'`. */
  override readonly name = 'DeviceAccessError';
  /** Always `'ERR_KVMPOOL_DEVICE'`. */
  readonly code = 'ERR_KVMPOOL_DEVICE';
  /** The device's name. */
  readonly device: string;
  /** The vCPU (or sandbox slot) that made the access. */
  readonly vcpu: number;
  constructor(device: string, vcpu: number, access: string, cause: unknown) {
    super(`device ${device} failed on ${access} from vCPU ${vcpu}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.device = device;
    this.vcpu = vcpu;
  }
}

/** Longest stretch of back-to-back draining before the event loop gets a turn. */
const MAX_BUSY_MS = 4;

/**
 * Default bound on how long a posted write may wait before the dispatcher takes it (ms).
 * The policy (exit-ring.ts DISPATCHER_STATE): posted writes do not wake a dozing dispatcher;
 * it drains at the end of each doze of this length, and before it answers any read, pause,
 * snapshot or stop of the VM (those drain every ring first, in posting order). 0: every
 * posted write wakes it (no dozing).
 */
export const POSTED_WRITE_BOUND_MS = 1;

/** Side work a dispatcher serves in its loop (`Dispatcher.sideWork`). */
export interface DispatcherSideWork {
  /** For error messages. */
  readonly name: string;
  /** Whether there is work now (cheap: the loop's spin calls it). */
  pending(): boolean;
  /** Does it; returns how many items it handled. Runs after the rings were drained. */
  run(): number;
}

/** Options of `new Dispatcher()`: the posted-write bound and the spin before sleeping. */
export interface DispatcherOptions {
  /** See POSTED_WRITE_BOUND_MS (default 1 ms; 0 wakes the dispatcher for every posted write). */
  postedWriteBoundMs?: number | undefined;
  /**
   * Longest spin before the dispatcher sleeps, µs (spin-policy.ts: only with a core free and
   * when its recent waits were short; at most MAX_SPIN_US = 100). Default 100; 0: never spin.
   */
  maxSpinUs?: number | undefined;
}

/**
 * The main-thread side of the exit bus: it drains every vCPU's exit ring when a doorbell rings
 * (`Atomics.waitAsync`), calls the devices in the VM-wide order of the accesses, and answers reads.
 * `createMachine()` makes one per machine.
 */
export class Dispatcher {
  /** The port bus. */
  readonly pio: Bus;
  /** The MMIO bus. */
  readonly mmio: Bus;
  readonly #doorbell: Int32Array;
  readonly #rings = new Map<number, RingConsumer>();
  #running = false;
  #loop: Promise<void> | undefined;
  /** Counts since it was made. */
  readonly stats: DispatcherStats = { records: 0, reads: 0, writes: 0, wakeups: 0, batches: 0, unmapped: 0, spinHits: 0 };
  readonly #spin: AdaptiveSpin;
  /** Called when a device throws; the access is answered with all-ones and dispatch goes on. */
  onDeviceError: (e: DeviceAccessError) => void = () => {};
  /**
   * KVM's coalesced ring, when the VM has coalesced zones: vCPU threads drain it into their
   * exit rings before they post anything, and `flushCoalesced()` takes what is left.
   */
  coalesced: CoalescedSource | undefined;

  /** The posted-write bound in ms (0: no dozing). */
  readonly postedWriteBoundMs: number;

  constructor(pio: Bus, mmio: Bus, doorbell: SharedArrayBuffer, options: DispatcherOptions = {}) {
    this.pio = pio;
    this.mmio = mmio;
    this.#doorbell = new Int32Array(doorbell);
    const bound = options.postedWriteBoundMs ?? POSTED_WRITE_BOUND_MS;
    if (typeof bound !== 'number' || !Number.isFinite(bound) || bound < 0) {
      throw new TypeError(`postedWriteBoundMs must be a finite number of ms ≥ 0 (got ${String(bound)})`);
    }
    this.postedWriteBoundMs = bound;
    const spin = options.maxSpinUs ?? MAX_SPIN_US;
    if (typeof spin !== 'number' || !Number.isFinite(spin) || spin < 0 || spin > MAX_SPIN_US) {
      throw new TypeError(`maxSpinUs must be a number of µs from 0 to ${MAX_SPIN_US} (got ${String(spin)})`);
    }
    this.#spin = new AdaptiveSpin(spin);
  }

  /** Whether any ring holds a record (or the side work has something). */
  #hasRecords(): boolean {
    for (const ring of this.#rings.values()) if (ring.pending() > 0) return true;
    return this.sideWork?.pending() ?? false;
  }

  /**
   * Work from outside the exit rings that the loop serves like records, after draining them: a
   * machine's virtio queue notifies that arrived by ioeventfd (its watcher thread raises flags and
   * rings this dispatcher's doorbell). The loop's spin looks at `pending()` too, so a notify that
   * comes while it spins is taken at once instead of after the spin.
   */
  sideWork: DispatcherSideWork | undefined;

  #drainWithSide(): number {
    const n = this.drainAll();
    const side = this.sideWork;
    if (!side?.pending()) return n;
    try {
      return n + side.run();
    } catch (e) {
      this.onDeviceError(new DeviceAccessError(side.name, -1, 'side work', e));
      return n + 1;
    }
  }

  /** Adds vCPU `vcpu`'s ring (and the doorbell it rings). */
  addRing(vcpu: number, ring: SharedArrayBuffer, doorbell: SharedArrayBuffer): void {
    this.#rings.set(vcpu, new RingConsumer(ring, doorbell));
  }

  /**
   * Handles every waiting record, across all rings in the order they were posted (by their
   * VM-wide sequence numbers); returns how many.
   */
  drainAll(): number {
    let n = 0;
    const rings = this.#rings;
    if (rings.size === 1) {
      for (const [vcpu, ring] of rings) n = ring.drain((r) => this.#handle(vcpu, ring, r));
    } else {
      for (;;) {
        let best: RingConsumer | undefined;
        let bestVcpu = -1;
        let bestSeq = 0;
        for (const [vcpu, ring] of rings) {
          const seq = ring.peekSeq();
          if (seq === undefined) continue;
          if (!best || ((seq - bestSeq) | 0) < 0) {
            best = ring;
            bestVcpu = vcpu;
            bestSeq = seq;
          }
        }
        if (!best) break;
        const ring = best;
        ring.takeOne((r) => this.#handle(bestVcpu, ring, r));
        n++;
      }
    }
    if (n > 0) {
      this.stats.batches++;
      this.stats.records += n;
    }
    return n;
  }

  /**
   * Takes coalesced writes no vCPU has taken yet (a guest that writes without ever exiting).
   * Under the coalesced lock: first the records already posted, then only the coalesced entries
   * that were in the ring before those records were looked at — any record that precedes them
   * in a vCPU's order was posted by then, so the per-vCPU order holds.
   */
  flushCoalesced(): number {
    const src = this.coalesced;
    if (!src || !src.pending()) return 0;
    // Never wait for the lock here: its holder, a vCPU thread, may be waiting for us to drain
    // its exit ring. If it is busy, that thread is taking the entries anyway.
    const n = tryWithCoalescedLock(this.#doorbell, () => {
      const stop = src.last();
      const records = this.drainAll();
      return records + src.drainTo(stop, (w) => this.write(w.pio ? 'pio' : 'mmio', w.address, w.data));
    });
    return n ?? 0;
  }

  #handle(vcpu: number, ring: RingConsumer, r: RingRecord): void {
    const isRead = r.kind === RECORD_KIND.IO_IN || r.kind === RECORD_KIND.MMIO_READ;
    const bus = r.kind === RECORD_KIND.IO_IN || r.kind === RECORD_KIND.IO_OUT ? this.pio : this.mmio;
    const access = (): string => `${isRead ? 'read' : 'write'} of ${r.size} at ${bus.kind} 0x${r.address.toString(16)}`;
    const failed = (e: unknown): void => {
      r.data.fill(0xff);
      this.onDeviceError(new DeviceAccessError(bus.find(r.address)?.device.name ?? '?', vcpu, access(), e));
    };
    // Items a device answers later (a string read may have several, settling in any order).
    let later: Promise<void>[] | undefined;
    try {
      // String I/O: `len / size` items to the same port, in order.
      const step = bus === this.pio && r.size > 0 ? r.size : r.data.length;
      for (let at = 0; at < r.data.length; at += step) {
        const item = r.data.subarray(at, at + step);
        const done = isRead ? bus.read(r.address, item, vcpu) : bus.write(r.address, item, vcpu);
        if (done === false) this.stats.unmapped++;
        else if (done !== true) (later ??= []).push(done);
      }
    } catch (e) {
      failed(e);
    }
    if (!isRead) {
      this.stats.writes++;
      return;
    }
    this.stats.reads++;
    if (later) {
      // The vCPU waits for this one reply; its ring holds nothing behind the read. The reply
      // goes out once every item has settled — never earlier, or a late item would write into
      // the reply area of the vCPU's next read — and a rejection answers it all-ones.
      this.pendingReplies++;
      Promise.allSettled(later)
        .then((results) => {
          const bad = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
          if (bad) failed(bad.reason);
        })
        .catch(() => {}) // an onDeviceError that throws must not leave the vCPU waiting
        .finally(() => {
          this.pendingReplies--;
          ring.reply(r.seq);
        });
    } else {
      ring.reply(r.seq);
    }
  }

  /** Reads answered by a promise that has not settled yet. */
  pendingReplies = 0;

  /** Hands a write that did not come through a ring (a coalesced one) to its bus. */
  write(bus: 'pio' | 'mmio', address: bigint, data: Uint8Array): void {
    const b = bus === 'pio' ? this.pio : this.mmio;
    try {
      if (!b.write(address, data, -1)) this.stats.unmapped++;
      this.stats.writes++;
    } catch (e) {
      const name = b.find(address)?.device.name ?? '?';
      this.onDeviceError(new DeviceAccessError(name, -1, `coalesced write at ${bus} 0x${address.toString(16)}`, e));
    }
  }

  /** Starts the dispatch loop. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops the loop after a final drain. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    Atomics.add(this.#doorbell, DOORBELL.COUNT, 1);
    Atomics.notify(this.#doorbell, DOORBELL.COUNT);
    await this.#loop;
    this.drainAll();
    this.flushCoalesced();
  }

  async #run(): Promise<void> {
    const bell = this.#doorbell;
    const bound = this.postedWriteBoundMs;
    let busySince = performance.now();
    // Whether the last wake-up found posted writes: then doze (more may follow, and they do
    // not wake us), else sleep until woken — a guest that only reads sleeps as it always did.
    let active = false;
    let writes = this.stats.writes;
    while (this.#running) {
      if (this.#drainWithSide() > 0) {
        if (this.stats.writes !== writes) {
          active = true;
          writes = this.stats.writes;
        }
        if (performance.now() - busySince > MAX_BUSY_MS) {
          await yieldToEventLoop();
          busySince = performance.now();
        }
        continue;
      }
      // Spin first, while the policy allows it (spin-policy.ts): still AWAKE, so producers
      // post without waking us, and the next record is taken within a microsecond.
      if (this.#spin.spin(() => this.#hasRecords())) {
        this.#spin.ended();
        this.stats.spinHits++;
        continue;
      }
      // Say how we sleep, then look once more: a producer that rang before it saw the state
      // has already published its record, and one that rang after acts on the state.
      const doze = active && bound > 0;
      Atomics.store(bell, DOORBELL.SLEEPING, doze ? DISPATCHER_STATE.DOZING : DISPATCHER_STATE.ASLEEP);
      const seen = Atomics.load(bell, DOORBELL.COUNT);
      active = false;
      if (this.#drainWithSide() === 0 && this.#running) {
        const w = doze ? Atomics.waitAsync(bell, DOORBELL.COUNT, seen, bound) : Atomics.waitAsync(bell, DOORBELL.COUNT, seen);
        if (w.async) {
          await w.value;
          this.stats.wakeups++;
        }
      } else if (this.stats.writes !== writes) {
        active = true;
        writes = this.stats.writes;
      }
      Atomics.store(bell, DOORBELL.SLEEPING, DISPATCHER_STATE.AWAKE);
      this.#spin.ended();
      busySince = performance.now();
    }
  }
}
