/**
 * KVM's coalesced MMIO/PIO ring: a page shared with the kernel (page
 * KVM_COALESCED_MMIO_PAGE_OFFSET of every vCPU mapping, the same page for the whole VM) where
 * KVM queues writes to coalesced zones instead of exiting. The kernel appends at `last`; the
 * reader consumes from `first`. Only one thread may read it at a time (see
 * `lockCoalesced` in @kvmpool/devices). `first` and `last` are plain loads and stores: the
 * kernel writes an entry before it advances `last` (with its own write barrier), and reads
 * `first` to see free room; x86-64 keeps stores in order and loads in order.
 */
import { KVM_COALESCED_MMIO, KVM_COALESCED_MMIO_RING } from './ffi/index.js';

export const KVM_COALESCED_MMIO_PAGE_OFFSET = 2;
const PAGE = 4096;
const ENTRIES = Math.floor((PAGE - KVM_COALESCED_MMIO_RING.size) / KVM_COALESCED_MMIO.size);
const FIRST = KVM_COALESCED_MMIO_RING.offsets.first;
const LAST = KVM_COALESCED_MMIO_RING.offsets.last;

export interface CoalescedWrite {
  pio: boolean;
  address: bigint;
  data: Uint8Array;
}

/** An index the kernel wrote must lie inside the ring, or a loop to it would never end. */
function checkIndex(i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= ENTRIES) throw new RangeError(`coalesced ring: index ${i} outside 0..${ENTRIES - 1}`);
}

export class CoalescedRing {
  readonly #view: DataView;
  readonly #bytes: Uint8Array;

  /** `page` is the 4 KiB ring page inside a vCPU mapping. */
  constructor(page: Uint8Array) {
    if (page.byteLength < PAGE) throw new RangeError(`coalesced ring: ${page.byteLength} bytes, a page is ${PAGE}`);
    this.#bytes = page;
    this.#view = new DataView(page.buffer, page.byteOffset, PAGE);
  }

  /** Whether KVM has queued entries nobody took yet. */
  pending(): boolean {
    return this.#view.getUint32(FIRST, true) !== this.#view.getUint32(LAST, true);
  }

  /** The kernel's end index. */
  last(): number {
    return this.#view.getUint32(LAST, true);
  }

  /** Looks at the entries from the start up to `stop`, oldest first, without taking them. */
  peekTo(stop: number, visit: (w: CoalescedWrite) => void): number {
    checkIndex(stop);
    let n = 0;
    for (let first = this.#view.getUint32(FIRST, true); first !== stop; first = (first + 1) % ENTRIES) {
      visit(this.#entry(first));
      n++;
    }
    return n;
  }

  #entry(index: number): CoalescedWrite {
    const v = this.#view;
    const o = KVM_COALESCED_MMIO.offsets;
    const at = KVM_COALESCED_MMIO_RING.size + index * KVM_COALESCED_MMIO.size;
    const len = Math.min(v.getUint32(at + o.len, true), 8);
    return {
      pio: v.getUint32(at + o.pio, true) !== 0,
      address: v.getBigUint64(at + o.phys_addr, true),
      data: this.#bytes.subarray(at + o.data, at + o.data + len),
    };
  }

  /** Takes entries, oldest first, until the start reaches `stop` (default: the current end). */
  drainTo(stop: number, handle: (w: CoalescedWrite) => void): number {
    checkIndex(stop);
    const v = this.#view;
    let first = v.getUint32(FIRST, true);
    let n = 0;
    while (first !== stop) {
      handle(this.#entry(first));
      first = (first + 1) % ENTRIES;
      // The kernel reads `first` to see free space: publish each entry as soon as it is taken.
      v.setUint32(FIRST, first, true);
      n++;
    }
    return n;
  }

  drain(handle: (w: CoalescedWrite) => void): number {
    return this.drainTo(this.last(), handle);
  }
}
