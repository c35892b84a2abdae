/**
 * The exit ring: one per vCPU, in a SharedArrayBuffer. Its single producer is the vCPU's
 * worker thread, its single consumer the dispatcher on the main thread.
 *
 *   [ header: 16 Int32 words | reply area: REPLY_BYTES | records: SLOTS × RECORD_BYTES ]
 *
 * A record carries one guest access (or a chunk of a string access) that needs a device:
 *   +0 u32 seq   +4 u8 kind  +5 u8 size  +6 u16 len  +8 u64 address (port or GPA)  +16 data[48]
 *
 * Memory ordering. Only header words are accessed with Atomics; records and the reply area
 * are plain memory. JavaScript's Atomics are sequentially consistent, and an Atomics.load
 * that reads a value written by an Atomics.store synchronizes with it, so every plain write
 * made before the store is visible after the load. Hence:
 * - the producer fills a record, then `Atomics.store(TAIL)`; the consumer `Atomics.load(TAIL)`s
 *   before reading records below it, so it never sees a half-written record;
 * - the consumer reads a record, then `Atomics.store(HEAD)`; the producer `Atomics.load(HEAD)`s
 *   before reusing a slot, so it never overwrites a record still being read;
 * - the consumer writes the reply area, then `Atomics.store(REPLY_SEQ)`; the producer reads the
 *   reply only after loading that seq, so the answer is complete.
 * - No lost wake-up: a producer loads WAKE before it looks at what it waits for (and at its
 *   requests), then sleeps on WAKE with that value; whoever changes any of those changes it
 *   first and bumps WAKE after, so a change the producer missed makes its sleep return at once.
 * TAIL and HEAD are free-running u32 counters (the slot is `counter % SLOTS`, and SLOTS divides
 * 2^32); their difference, taken modulo 2^32, is the fill level, so wrap-around is harmless.
 * The VM-wide sequence skips 0 when it wraps (see `#nextSeq`).
 */
import { AdaptiveSpin, MAX_SPIN_US } from './spin-policy.js';

/**
 * The exit ring's header words (Int32 indices) and geometry: a single-producer (vCPU thread), single-consumer (dispatcher) ring of fixed-size records in a SharedArrayBuffer.
 * @enum
 */
export const RING = {
  /** Header words (Int32 indices). */
  TAIL: 0,
  HEAD: 1,
  REPLY_SEQ: 2,
  REPLY_LEN: 3,
  /** Set by the producer while it waits for free slots (back-pressure). */
  PRODUCER_WAITING: 4,
  /**
   * The word every producer wait sleeps on: bumped (and notified) after each change a waiting
   * producer must see — a reply, room made while it waits, a control request or kick.
   */
  WAKE: 5,
  HEADER_WORDS: 16,
  REPLY_BYTES: 4096,
  SLOTS: 256,
  RECORD_BYTES: 64,
  /** Data bytes a record can carry inline; longer string accesses take several records. */
  RECORD_DATA: 48,
} as const;

const REPLY_OFFSET = RING.HEADER_WORDS * 4;
const RECORDS_OFFSET = REPLY_OFFSET + RING.REPLY_BYTES;
/** Bytes of one exit ring's SharedArrayBuffer (header and records). */
export const RING_BYTES = RECORDS_OFFSET + RING.SLOTS * RING.RECORD_BYTES;

/**
 * What a ring record carries: a port write or read, an MMIO write or read.
 * @enum
 */
export const RECORD_KIND = { IO_OUT: 1, IO_IN: 2, MMIO_WRITE: 3, MMIO_READ: 4 } as const;
/** A `RECORD_KIND` value. */
export type RecordKind = (typeof RECORD_KIND)[keyof typeof RECORD_KIND];

/**
 * The VM-wide words every ring of a VM shares: the doorbell count, the dispatcher's "asleep"
 * flag, the global record sequence (so the dispatcher can handle all vCPUs' records in the
 * order they were posted), and the lock on KVM's VM-wide coalesced ring (one drainer at a time).
 * @enum
 */
export const DOORBELL = { COUNT: 0, SLEEPING: 1, SEQ: 2, COALESCED_LOCK: 3, WORDS: 4 } as const;

/**
 * DOORBELL.SLEEPING: what the dispatcher is doing, and so which posts must wake it.
 *   AWAKE  draining: nobody needs to wake it.
 *   DOZING asleep for at most its posted-write bound (Dispatcher `postedWriteBoundMs`, default
 *          1 ms), after which it drains anyway: a posted write does not wake it (the lazy
 *          doorbell: it is seen within the bound); a read, or a producer waiting for room,
 *          does — someone waits for it.
 *   ASLEEP asleep until woken: every post wakes it.
 * The dispatcher dozes after a wake-up that found posted writes, and falls asleep after a
 * doze that found none (and after reads alone: a reading guest wakes it anyway); so a guest that posts writes steadily costs one main-thread wake-up per bound
 * instead of one per write (and no futex wake per write in the vCPU thread), and an idle VM
 * costs nothing. No post is missed: a producer publishes TAIL and then loads SLEEPING; the
 * dispatcher stores SLEEPING and then loads TAIL (all sequentially consistent), so either the
 * producer sees the state that asks it to wake the dispatcher, or the dispatcher sees the record.
 */
export const DISPATCHER_STATE = { AWAKE: 0, ASLEEP: 1, DOZING: 2 } as const;

/** A zeroed SharedArrayBuffer for one vCPU's exit ring. */
export function createRingBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(RING_BYTES);
}

/** A zeroed SharedArrayBuffer for a VM's doorbell words (`DOORBELL`). */
export function createDoorbell(): SharedArrayBuffer {
  return new SharedArrayBuffer(DOORBELL.WORDS * 4);
}

/** Views over one ring's SharedArrayBuffer, shared by producer and consumer. */
class RingViews {
  /** The ring's header words (`RING` indices). */
  readonly header: Int32Array;
  /** The whole ring as bytes. */
  readonly bytes: Uint8Array;
  /** The whole ring as a DataView. */
  readonly view: DataView;
  /** The VM's doorbell words (`DOORBELL` indices). */
  readonly doorbell: Int32Array;

  constructor(ring: SharedArrayBuffer, doorbell: SharedArrayBuffer) {
    if (ring.byteLength !== RING_BYTES) throw new RangeError(`exit ring: buffer is ${ring.byteLength} bytes, expected ${RING_BYTES}`);
    this.header = new Int32Array(ring, 0, RING.HEADER_WORDS);
    this.bytes = new Uint8Array(ring);
    this.view = new DataView(ring);
    this.doorbell = new Int32Array(doorbell);
  }
}

/**
 * What a producer's wait asks each time it wakes: go on waiting, or give up because the vCPU
 * is asked to pause or to stop. Every wait of the producer is a safe point: it calls `check`
 * before each sleep, and every sleep is bounded (WAIT_SLICE_MS), so a request is seen even
 * if nobody notifies the word it sleeps on.
 */
export type WaitCheck = () => 'go-on' | 'pause' | 'stop';
/** The outcome of a producer step: done, or abandoned at a safe point with nothing half done. */
export type StepOutcome = 'done' | 'pause' | 'stop';

/** Longest single sleep of a producer wait before it looks at its `check` again. */
export const WAIT_SLICE_MS = 50;

/** Records needed to carry `bytes` of data (a read or an empty write still takes one). */
export function recordsFor(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / RING.RECORD_DATA));
}

/** Options of `new RingProducer()`. */
export interface RingProducerOptions {
  /**
   * Longest the producer spins for the answer to a read before it sleeps, µs (0–MAX_SPIN_US;
   * default 0: never). The spin follows the dispatcher's policy (spin-policy.ts): only with a
   * core free for it and while recent answers came within about twice the bound.
   */
  replySpinUs?: number | undefined;
}

/** Producer side (the vCPU worker). */
export class RingProducer extends RingViews {
  readonly #spin: AdaptiveSpin | undefined;

  constructor(ring: SharedArrayBuffer, doorbell: SharedArrayBuffer, options: RingProducerOptions = {}) {
    super(ring, doorbell);
    const us = options.replySpinUs ?? 0;
    if (typeof us !== 'number' || !Number.isFinite(us) || us < 0 || us > MAX_SPIN_US) {
      throw new RangeError(`replySpinUs must be a number of µs from 0 to ${MAX_SPIN_US} (got ${String(us)})`);
    }
    this.#spin = us > 0 ? new AdaptiveSpin(us) : undefined;
  }

  /**
   * A VM-wide sequence number: records of all vCPUs are handled in the order they were posted.
   * It never is 0: a ring's REPLY_SEQ starts at 0, and a read numbered 0 after the counter
   * wraps at 2^32 would take that initial value for its answer.
   */
  #nextSeq(): number {
    for (;;) {
      const seq = (Atomics.add(this.doorbell, DOORBELL.SEQ, 1) + 1) | 0;
      if (seq !== 0) return seq;
    }
  }

  /**
   * Posts an access. Data longer than a record is split over several records, in order. Waits
   * (Atomics.wait, never spinning) until the ring has room for all of them, so the post is
   * all or nothing: 'pause' or 'stop' from `check` leaves the ring untouched and the post can
   * be made again later.
   */
  post(kind: RecordKind, address: bigint, size: number, data: Uint8Array, check: WaitCheck): StepOutcome {
    const r = this.reserve(recordsFor(data.length), check);
    if (r !== 'done') return r;
    this.postReserved(kind, address, size, data);
    this.#ring(false, true);
    return 'done';
  }

  /** Publishes an access into slots `reserve` made sure are free (no wait, no doorbell). */
  postReserved(kind: RecordKind, address: bigint, size: number, data: Uint8Array): void {
    let offset = 0;
    do {
      const len = Math.min(data.length - offset, RING.RECORD_DATA);
      this.#publish(this.#nextSeq(), kind, address, size, len, data.subarray(offset, offset + len));
      offset += len;
    } while (offset < data.length);
  }

  /**
   * Posts a read of `length` bytes; returns its sequence number (to wait on with
   * `awaitReply`), or 'pause' / 'stop' with nothing posted.
   */
  postRead(kind: RecordKind, address: bigint, size: number, length: number, check: WaitCheck): number | 'pause' | 'stop' {
    if (length > RING.REPLY_BYTES) throw new RangeError(`exit ring: a read of ${length} bytes exceeds ${RING.REPLY_BYTES}`);
    const r = this.reserve(1, check);
    if (r !== 'done') return r;
    const seq = this.#nextSeq();
    this.#publish(seq, kind, address, size, length);
    this.#ring();
    return seq;
  }

  /** True once the dispatcher has answered read `seq` (then `takeReply` copies it out). */
  replied(seq: number): boolean {
    return Atomics.load(this.header, RING.REPLY_SEQ) === (seq | 0);
  }

  /** Copies the answer of the read just replied to into `data`. */
  takeReply(data: Uint8Array): void {
    data.set(this.bytes.subarray(REPLY_OFFSET, REPLY_OFFSET + data.length));
  }

  /**
   * Waits for the answer to read `seq` and copies it into `data`. 'pause' or 'stop' leaves the
   * read posted: wait for it again later (the reply slot keeps the answer until the next read).
   */
  awaitReply(seq: number, data: Uint8Array, check: WaitCheck): StepOutcome {
    const spin = this.replied(seq) ? undefined : this.#spin;
    if (spin) {
      // Spin first, while the policy allows it: a dispatcher that is awake answers within a few
      // microseconds, and a reply that finds nobody in Atomics.wait costs it no futex wake. The
      // spin ends on any change of WAKE — the reply, or a control request the loop below checks.
      const gen = Atomics.load(this.header, RING.WAKE);
      spin.spin(() => Atomics.load(this.header, RING.WAKE) !== gen);
    }
    try {
      for (;;) {
        const gen = Atomics.load(this.header, RING.WAKE);
        if (Atomics.load(this.header, RING.REPLY_SEQ) === (seq | 0)) break;
        const c = check();
        if (c !== 'go-on') return c;
        Atomics.wait(this.header, RING.WAKE, gen, WAIT_SLICE_MS);
      }
    } finally {
      spin?.ended();
    }
    this.takeReply(data);
    return 'done';
  }

  /**
   * Posts a read and waits for its answer, copying it into `data`. For callers that cannot
   * pause in the middle of a read: 'pause' from `check` is ignored; returns false (data
   * untouched) if `check` said stop.
   */
  request(kind: RecordKind, address: bigint, size: number, data: Uint8Array, check: WaitCheck): boolean {
    const noPause: WaitCheck = () => (check() === 'stop' ? 'stop' : 'go-on');
    const seq = this.postRead(kind, address, size, data.length, noPause);
    if (typeof seq !== 'number') return false;
    return this.awaitReply(seq, data, noPause) === 'done';
  }

  /**
   * Fills the record at TAIL (a slot `reserve` made sure is free) and publishes it. `inline`
   * is the data a write carries; a read carries none (its `len` is the size of the answer).
   */
  #publish(seq: number, kind: RecordKind, address: bigint, size: number, len: number, inline?: Uint8Array): void {
    const tail = Atomics.load(this.header, RING.TAIL);
    const at = RECORDS_OFFSET + ((tail >>> 0) % RING.SLOTS) * RING.RECORD_BYTES;
    this.view.setUint32(at, seq >>> 0, true);
    this.view.setUint8(at + 4, kind);
    this.view.setUint8(at + 5, size);
    this.view.setUint16(at + 6, len, true);
    this.view.setBigUint64(at + 8, address, true);
    if (inline) this.bytes.set(inline, at + 16);
    Atomics.store(this.header, RING.TAIL, (tail + 1) | 0);
  }

  /**
   * Waits until `count` slots are free. The dispatcher drains whether or not this vCPU is
   * paused, so the wait ends as long as it runs; when it does not (the machine is stopping),
   * `check` ends it.
   */
  reserve(count: number, check: WaitCheck): StepOutcome {
    if (count > RING.SLOTS) throw new RangeError(`exit ring: ${count} records needed, the ring holds ${RING.SLOTS}`);
    if (this.#room() >= count) return 'done';
    try {
      for (;;) {
        // Say we wait before looking at HEAD: a consumer that moves HEAD after this store sees
        // the flag and bumps WAKE; one that moved it before, the look at HEAD sees.
        Atomics.store(this.header, RING.PRODUCER_WAITING, 1);
        const gen = Atomics.load(this.header, RING.WAKE);
        if (this.#room() >= count) return 'done';
        const c = check();
        if (c !== 'go-on') return c;
        this.#ring(true);
        Atomics.wait(this.header, RING.WAKE, gen, WAIT_SLICE_MS);
      }
    } finally {
      Atomics.store(this.header, RING.PRODUCER_WAITING, 0);
    }
  }

  #room(): number {
    return RING.SLOTS - ((Atomics.load(this.header, RING.TAIL) - Atomics.load(this.header, RING.HEAD)) >>> 0);
  }

  /** Rings the doorbell after `postReserved` (writes: lazily, see DISPATCHER_STATE). */
  ring(): void {
    this.#ring(false, true);
  }

  /** Takes the VM-wide coalesced-ring lock, or gives up when `check` says pause or stop. */
  lockCoalesced(check: WaitCheck): StepOutcome {
    return lockCoalesced(this.doorbell, check);
  }

  /** Releases the VM-wide coalesced-ring lock taken with `lockCoalesced()`. */
  unlockCoalesced(): void {
    unlockCoalesced(this.doorbell);
  }

  /** True when the dispatcher has taken every record posted so far. */
  drained(): boolean {
    return Atomics.load(this.header, RING.HEAD) === Atomics.load(this.header, RING.TAIL);
  }

  /**
   * Wakes a producer waiting on this ring (for a reply or for room) and any vCPU waiting for
   * the coalesced lock, so it looks at its requests now (control paths: stop, pause, kick).
   */
  static wake(ring: SharedArrayBuffer, doorbell?: SharedArrayBuffer): void {
    wakeProducer(new Int32Array(ring, 0, RING.HEADER_WORDS));
    if (doorbell) Atomics.notify(new Int32Array(doorbell), DOORBELL.COALESCED_LOCK);
  }

  /**
   * Rings the doorbell; wakes the dispatcher only if its state asks for it (DISPATCHER_STATE):
   * a posted write (`lazy`) only when it is ASLEEP, anything else when it is not AWAKE.
   */
  #ring(force = false, lazy = false): void {
    Atomics.add(this.doorbell, DOORBELL.COUNT, 1);
    const state = Atomics.load(this.doorbell, DOORBELL.SLEEPING);
    if (force || state === DISPATCHER_STATE.ASLEEP || (state === DISPATCHER_STATE.DOZING && !lazy)) Atomics.notify(this.doorbell, DOORBELL.COUNT);
  }
}

/** Bumps the ring's WAKE word and wakes a producer sleeping on it (after the change it must see). */
function wakeProducer(header: Int32Array): void {
  Atomics.add(header, RING.WAKE, 1);
  Atomics.notify(header, RING.WAKE);
}

/**
 * Runs `fn` holding the lock on KVM's coalesced ring if nobody holds it now; returns undefined
 * otherwise. The dispatcher uses this: a vCPU thread holding the lock may be waiting for the
 * dispatcher to make room in its exit ring, so the dispatcher must never wait for the lock.
 */
export function tryWithCoalescedLock<T>(doorbell: Int32Array, fn: () => T): T | undefined {
  if (Atomics.compareExchange(doorbell, DOORBELL.COALESCED_LOCK, 0, 1) !== 0) return undefined;
  try {
    return fn();
  } finally {
    unlockCoalesced(doorbell);
  }
}

/**
 * Takes the lock on KVM's coalesced ring. Whoever drains that ring turns its entries into
 * handled (or posted) accesses under this lock, so entries are never taken twice or out of
 * order. Holders only copy entries out and never wait while they hold it (a vCPU reserves the
 * room it needs first), so a wait here is short; it still is a safe point: 'pause' or 'stop'
 * from `check` gives up without the lock.
 */
export function lockCoalesced(doorbell: Int32Array, check: WaitCheck): StepOutcome {
  while (Atomics.compareExchange(doorbell, DOORBELL.COALESCED_LOCK, 0, 1) !== 0) {
    const c = check();
    if (c !== 'go-on') return c;
    Atomics.wait(doorbell, DOORBELL.COALESCED_LOCK, 1, WAIT_SLICE_MS);
  }
  return 'done';
}

/** Releases the VM-wide coalesced-ring lock in `doorbell` and wakes one waiter. */
export function unlockCoalesced(doorbell: Int32Array): void {
  Atomics.store(doorbell, DOORBELL.COALESCED_LOCK, 0);
  Atomics.notify(doorbell, DOORBELL.COALESCED_LOCK, 1);
}

/** One exit as the consumer sees it. */
export interface RingRecord {
  /** Its place in the VM-wide order of posted records. */
  seq: number;
  /** Port or MMIO, read or write. */
  kind: RecordKind;
  /** Access width in bytes. */
  size: number;
  /** The port or guest-physical address. */
  address: bigint;
  /** Inline data (a view into the ring: valid until the record is released). */
  data: Uint8Array;
}

/** Consumer side (the dispatcher). */
export class RingConsumer extends RingViews {
  /** Records waiting. */
  pending(): number {
    return (Atomics.load(this.header, RING.TAIL) - Atomics.load(this.header, RING.HEAD)) >>> 0;
  }

  /**
   * Calls `handle` for each waiting record, in order, then releases them all at once.
   * Returns how many it handled.
   */
  drain(handle: (r: RingRecord) => void, max: number = RING.SLOTS): number {
    const head = Atomics.load(this.header, RING.HEAD);
    const tail = Atomics.load(this.header, RING.TAIL);
    const n = Math.min((tail - head) >>> 0, max);
    for (let i = 0; i < n; i++) {
      const at = RECORDS_OFFSET + (((head + i) >>> 0) % RING.SLOTS) * RING.RECORD_BYTES;
      const kind = this.view.getUint8(at + 4) as RecordKind;
      const len = this.view.getUint16(at + 6, true);
      handle({
        seq: this.view.getUint32(at, true),
        kind,
        size: this.view.getUint8(at + 5),
        address: this.view.getBigUint64(at + 8, true),
        data: kind === RECORD_KIND.IO_IN || kind === RECORD_KIND.MMIO_READ
          ? this.bytes.subarray(REPLY_OFFSET, REPLY_OFFSET + len)
          : this.bytes.subarray(at + 16, at + 16 + len),
      });
    }
    if (n > 0) {
      Atomics.store(this.header, RING.HEAD, (head + n) | 0);
      if (Atomics.load(this.header, RING.PRODUCER_WAITING) !== 0) wakeProducer(this.header);
    }
    return n;
  }

  /** The sequence number of the next waiting record, or undefined when there is none. */
  peekSeq(): number | undefined {
    const head = Atomics.load(this.header, RING.HEAD);
    if (head === Atomics.load(this.header, RING.TAIL)) return undefined;
    return this.view.getUint32(RECORDS_OFFSET + ((head >>> 0) % RING.SLOTS) * RING.RECORD_BYTES, true) | 0;
  }

  /** Handles and releases the next record (the caller checked there is one). */
  takeOne(handle: (r: RingRecord) => void): void {
    this.drain(handle, 1);
  }

  /** Publishes the answer to read `seq` (its data already written into the record's `data`). */
  reply(seq: number): void {
    Atomics.store(this.header, RING.REPLY_SEQ, seq | 0);
    wakeProducer(this.header);
  }
}
