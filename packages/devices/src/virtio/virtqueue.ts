/**
 * A split virtqueue (virtio 1.2 §2.7) walked from the device side over guest RAM.
 *
 * Layout the driver sets up (guest-physical, little-endian):
 *   descriptor table  16 × size bytes, 16-aligned: { addr u64, len u32, flags u16, next u16 }
 *   driver area       2-aligned: flags u16, idx u16, ring[size] u16, used_event u16
 *   device area       4-aligned: flags u16, idx u16, ring[size] { id u32, len u32 }, avail_event u16
 *
 * Everything in those areas is written by the guest and hostile. The walker reads each
 * descriptor once into locals, then validates it, and bounds every loop: a direct chain has at
 * most `size` descriptors, an indirect table at most its own entry count (≤ 32768), an indirect
 * descriptor may only be a chain's head and may not nest, every buffer must lie inside RAM
 * without wrapping, writable buffers must follow readable ones, and the driver may not claim
 * more than `size` chains available. Any violation throws `QueueError` (and only that); the
 * transport then marks the device as needing a reset. In tolerant mode (`pop(true)`, for a
 * device that can answer a request with an error status) a buffer outside RAM is counted in
 * `badBuffers` and left out instead; every structural fault still throws.
 *
 * Memory ordering (guest vCPU threads and this main thread share the rings):
 * - Driver → device: the guest writes descriptors and the ring entry, then (after its write
 *   barrier, a compiler barrier on x86) stores avail.idx. We read avail.idx with `Atomics.load`
 *   before reading the ring entry and descriptors. x86 is TSO: loads are not reordered with
 *   older loads, and stores are seen in program order, so once we observe the new idx we also
 *   observe the entries written before it. `Atomics.load` is sequentially consistent in the JS
 *   memory model, so V8 may not move our later plain loads above it either (on a non-shared
 *   buffer the same code is emitted; the argument rests on x86 plus the compiler barrier).
 * - Device → driver: we write the used element with plain stores, then store used.idx with
 *   `Atomics.store`. TSO keeps the two stores in order; the seq-cst store keeps V8 from sinking
 *   the element stores below it.
 * - Store→load: after publishing used.idx we read used_event / avail.flags to decide on an
 *   interrupt, and after publishing avail_event we re-read avail.idx. x86 may satisfy a load
 *   before an older store leaves the store buffer; V8 emits a seq-cst `Atomics.store` as `xchg`
 *   (a full fence), which closes that window — the driver does the mirror-image (mb) on its side,
 *   so either it sees our idx or we see its flag/idx, never neither.
 */
import {
  QueueError, VIRTQ_AVAIL_F, VIRTQ_DESC_F, VIRTQ_MAX_SIZE, type GuestRam, type VirtioQueue, type VirtqueueChain,
} from './types.js';

/** Where a virtqueue lives and what was negotiated for it. */
export interface VirtqueueOptions {
  /** Guest RAM. */
  ram: GuestRam;
  /** The queue's index in its device (for messages). */
  index: number;
  /** Entries: a power of two, at most `maxSize`. */
  size: number;
  /** The device's QueueNumMax; default 32768. */
  maxSize?: number;
  /** Guest-physical address of the descriptor table (16-aligned). */
  desc: bigint;
  /** Guest-physical address of the driver (available) area (2-aligned). */
  driver: bigint;
  /** Guest-physical address of the device (used) area (4-aligned). */
  device: bigint;
  /** VIRTIO_F_EVENT_IDX was negotiated. */
  eventIdx?: boolean;
  /** VIRTIO_F_INDIRECT_DESC was negotiated. */
  indirect?: boolean;
  /** Ring positions to resume from (a snapshot); default all 0. */
  state?: VirtqueueState;
}

/** A virtqueue's ring positions, for snapshots. */
export interface VirtqueueState {
  /** Next available-ring position the device will take (mod 2^16). */
  lastAvailIdx: number;
  /** The device's used.idx (mod 2^16). */
  usedIdx: number;
  /** used.idx at the last interrupt decision (mod 2^16). */
  signalledUsed: number;
}

const U64_END = 1n << 64n;
const DESC_BYTES = 16;

/** A view of `length` bytes at `gpa`, checked against RAM and 2^64. */
function area(ram: GuestRam, index: number, what: string, gpa: bigint, length: number): Uint8Array {
  if (gpa < 0n || gpa + BigInt(length) > U64_END) throw new QueueError(index, `${what} at 0x${gpa.toString(16)} wraps the address space`);
  const v = ram.view(gpa, length);
  if (v === undefined || v.length !== length) throw new QueueError(index, `${what} [0x${gpa.toString(16)}, +${length}) is outside guest RAM`);
  return v;
}

/** A 16-bit field read/written with seq-cst atomics where the host buffer allows it. */
class Word16 {
  readonly #u16: Uint16Array | undefined;
  readonly #dv: DataView;
  readonly #offset: number;
  constructor(view: Uint8Array, offset: number) {
    this.#offset = offset;
    this.#dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
    const abs = view.byteOffset + offset;
    this.#u16 = abs % 2 === 0 ? new Uint16Array(view.buffer, abs, 1) : undefined;
  }
  load(): number {
    return this.#u16 ? Atomics.load(this.#u16, 0) : this.#dv.getUint16(this.#offset, true);
  }
  store(value: number): void {
    if (this.#u16) Atomics.store(this.#u16, 0, value);
    else this.#dv.setUint16(this.#offset, value, true);
  }
}

/** A split virtqueue over guest RAM, device side (see the file's notes for bounds and ordering). */
export class Virtqueue implements VirtioQueue {
  readonly index: number;
  readonly size: number;
  readonly #ram: GuestRam;
  readonly #eventIdx: boolean;
  readonly #indirect: boolean;
  readonly #desc: DataView;
  readonly #avail: DataView;
  readonly #used: DataView;
  readonly #availIdx: Word16;
  readonly #usedIdxWord: Word16;
  readonly #availEvent: Word16;
  #lastAvail = 0;
  #usedIdx = 0;
  #signalled = 0;
  #budget = Infinity;
  #exhausted = false;

  /** Validates the size, alignments and that all three areas lie inside RAM (`QueueError` if not). */
  constructor(o: VirtqueueOptions) {
    this.index = o.index;
    const max = Math.min(o.maxSize ?? VIRTQ_MAX_SIZE, VIRTQ_MAX_SIZE);
    const n = o.size;
    if (!Number.isInteger(n) || n < 1 || n > max || (n & (n - 1)) !== 0) {
      throw new QueueError(o.index, `queue size ${n} is not a power of two in [1, ${max}]`);
    }
    this.size = n;
    if (o.desc % 16n !== 0n) throw new QueueError(o.index, `descriptor table 0x${o.desc.toString(16)} is not 16-aligned`);
    if (o.driver % 2n !== 0n) throw new QueueError(o.index, `driver area 0x${o.driver.toString(16)} is not 2-aligned`);
    if (o.device % 4n !== 0n) throw new QueueError(o.index, `device area 0x${o.device.toString(16)} is not 4-aligned`);
    this.#ram = o.ram;
    this.#eventIdx = o.eventIdx ?? false;
    this.#indirect = o.indirect ?? false;
    const d = area(o.ram, o.index, 'descriptor table', o.desc, DESC_BYTES * n);
    const a = area(o.ram, o.index, 'driver area', o.driver, 6 + 2 * n);
    const u = area(o.ram, o.index, 'device area', o.device, 6 + 8 * n);
    this.#desc = new DataView(d.buffer, d.byteOffset, d.byteLength);
    this.#avail = new DataView(a.buffer, a.byteOffset, a.byteLength);
    this.#used = new DataView(u.buffer, u.byteOffset, u.byteLength);
    this.#availIdx = new Word16(a, 2);
    this.#usedIdxWord = new Word16(u, 2);
    this.#availEvent = new Word16(u, 4 + 8 * n);
    if (o.state) {
      this.#lastAvail = o.state.lastAvailIdx & 0xffff;
      this.#usedIdx = o.state.usedIdx & 0xffff;
      this.#signalled = o.state.signalledUsed & 0xffff;
    }
  }

  /** The ring positions (for snapshots). */
  exportState(): VirtqueueState {
    return { lastAvailIdx: this.#lastAvail, usedIdx: this.#usedIdx, signalledUsed: this.#signalled };
  }

  /** Whether the driver has made chains available that `pop()` has not taken (no validation). */
  hasAvailable(): boolean {
    return this.#availIdx.load() !== this.#lastAvail;
  }

  /**
   * Lets the next `pop()` calls take at most `chains` chains (the transport sets this before each
   * `process()`, so a guest that refills its ring as fast as the device drains it cannot keep
   * the host's event loop busy); once spent, `pop()` returns undefined and `exhausted` is set.
   */
  setBudget(chains: number): void {
    this.#budget = chains;
    this.#exhausted = false;
  }

  /** The last budget ran out with chains possibly still available (the transport comes back for them). */
  get exhausted(): boolean {
    return this.#exhausted;
  }

  pop(tolerant = false): VirtqueueChain | undefined {
    if (this.#budget <= 0) {
      this.#exhausted = true;
      return undefined;
    }
    let availIdx = this.#availIdx.load();
    if (availIdx === this.#lastAvail) {
      if (!this.#eventIdx) return undefined;
      // Ask for a notify at the next chain, then look again (store→load, see the file's notes).
      this.#availEvent.store(this.#lastAvail);
      availIdx = this.#availIdx.load();
      if (availIdx === this.#lastAvail) return undefined;
    }
    const pending = (availIdx - this.#lastAvail) & 0xffff;
    if (pending > this.size) throw new QueueError(this.index, `avail.idx ${availIdx} is ${pending} entries ahead of the device (queue size ${this.size})`);
    const head = this.#avail.getUint16(4 + 2 * (this.#lastAvail % this.size), true);
    if (head >= this.size) throw new QueueError(this.index, `available head ${head} is not below the queue size ${this.size}`);
    const chain = this.#walk(head, tolerant);
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    this.#budget--;
    return chain;
  }

  chain(head: number, tolerant = false): VirtqueueChain {
    if (!Number.isInteger(head) || head < 0 || head >= this.size) throw new QueueError(this.index, `chain head ${head} is not below the queue size ${this.size}`);
    return this.#walk(head, tolerant);
  }

  #walk(head: number, tolerant: boolean): VirtqueueChain {
    const readable: Uint8Array[] = [];
    const writable: Uint8Array[] = [];
    let readableLength = 0;
    let writableLength = 0;
    let table = this.#desc;
    let entries = this.size;
    let where = 'descriptor';
    let i = head;
    let count = 0;
    let seenWritable = false;
    let badBuffers = 0;
    let lastWritableBad = false;
    /** A buffer's view; in tolerant mode a buffer outside RAM (or wrapping) is counted and skipped instead. */
    const buffer = (what: string, addr: bigint, len: number): Uint8Array | undefined => {
      if (!tolerant) return area(this.#ram, this.index, what, addr, len);
      const v = addr + BigInt(len) <= U64_END ? this.#ram.view(addr, len) : undefined;
      if (v !== undefined && v.length === len) return v;
      badBuffers++;
      return undefined;
    };
    for (;;) {
      if (i >= entries) throw new QueueError(this.index, `${where} index ${i} is not below ${entries}`);
      if (++count > entries) throw new QueueError(this.index, `chain from head ${head} is longer than ${entries} descriptors (a loop?)`);
      const off = i * DESC_BYTES;
      const addr = table.getBigUint64(off, true);
      const len = table.getUint32(off + 8, true);
      const flags = table.getUint16(off + 12, true);
      const next = table.getUint16(off + 14, true);
      if (flags & VIRTQ_DESC_F.INDIRECT) {
        if (!this.#indirect) throw new QueueError(this.index, `${where} ${i} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated`);
        if (table !== this.#desc) throw new QueueError(this.index, `indirect descriptor ${i} inside an indirect table`);
        if (count !== 1) throw new QueueError(this.index, `indirect descriptor ${i} is not the chain's head`);
        if (flags & VIRTQ_DESC_F.NEXT) throw new QueueError(this.index, `indirect descriptor ${i} also has NEXT set`);
        if (len === 0 || len % DESC_BYTES !== 0 || len / DESC_BYTES > VIRTQ_MAX_SIZE) {
          throw new QueueError(this.index, `indirect table length ${len} is not a multiple of 16 in [16, ${DESC_BYTES * VIRTQ_MAX_SIZE}]`);
        }
        const t = area(this.#ram, this.index, 'indirect table', addr, len);
        table = new DataView(t.buffer, t.byteOffset, t.byteLength);
        entries = len / DESC_BYTES;
        where = 'indirect descriptor';
        i = 0;
        count = 0;
        continue;
      }
      if (flags & VIRTQ_DESC_F.WRITE) {
        seenWritable = true;
        if (len > 0) {
          const v = buffer(`${where} ${i}`, addr, len);
          lastWritableBad = v === undefined;
          if (v) {
            writable.push(v);
            writableLength += len;
          }
        }
      } else {
        if (seenWritable) throw new QueueError(this.index, `readable ${where} ${i} follows a writable one`);
        if (len > 0) {
          const v = buffer(`${where} ${i}`, addr, len);
          if (v) {
            readable.push(v);
            readableLength += len;
          }
        }
      }
      if (!(flags & VIRTQ_DESC_F.NEXT)) break;
      i = next;
    }
    return tolerant
      ? { head, readable, writable, readableLength, writableLength, badBuffers, lastWritableBad }
      : { head, readable, writable, readableLength, writableLength };
  }

  push(head: number, writtenLength: number): void {
    if (!Number.isInteger(head) || head < 0 || head >= this.size) throw new RangeError(`virtqueue ${this.index}: push of head ${head} outside the queue`);
    const len = Math.max(0, Math.min(Math.trunc(writtenLength) || 0, 0xffffffff));
    const slot = 4 + 8 * (this.#usedIdx % this.size);
    this.#used.setUint32(slot, head, true);
    this.#used.setUint32(slot + 4, len, true);
    this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
    this.#usedIdxWord.store(this.#usedIdx);
  }

  needsInterrupt(): boolean {
    const now = this.#usedIdx;
    const old = this.#signalled;
    if (now === old) return false;
    this.#signalled = now;
    if (this.#eventIdx) {
      const usedEvent = this.#avail.getUint16(4 + 2 * this.size, true);
      // vring_need_event(): the driver asked to hear of the entry at used_event; did we cross it?
      return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    return (this.#avail.getUint16(0, true) & VIRTQ_AVAIL_F.NO_INTERRUPT) === 0;
  }
}
