/**
 * Guest memory: each slot is backed by a growable SharedArrayBuffer (page-aligned, so KVM
 * can map it; shareable with worker threads). A slot keeps a strong reference to its
 * buffer until the VM is closed: KVM maps the pages, and a collected buffer's memory would
 * be reused by Node while the guest can still write it.
 */
import { GuestMemoryError, outOfRange } from './errors.js';
import { addressOf } from './ffi/index.js';
import { PAGE_SIZE, formatBytes, hex } from './util/size.js';

/**
 * The largest memory slot: the largest growable SharedArrayBuffer V8 makes (Node 20 refuses a
 * `maxByteLength` above 4 GiB with "Invalid array buffer max length").
 */
export const MAX_SLOT_BYTES = 4 * 2 ** 30;

export const KVM_MEM_LOG_DIRTY_PAGES = 1;
export const KVM_MEM_READONLY = 2;

/** A memory slot's settings, as `MemorySlot.describe()` and `Vm.memorySlots()` give them. */
export interface MemorySlotInfo {
  /** KVM slot number. */
  slot: number;
  /** First guest-physical address. */
  guestAddress: bigint;
  /** Size in bytes. */
  size: number;
  /** Guest writes become MMIO exits. */
  readOnly: boolean;
  /** KVM tracks written pages (`Vm.dirtyPages()`). */
  dirtyLog: boolean;
}

/**
 * One KVM memory slot: a range of guest-physical memory backed by a SharedArrayBuffer of the
 * slot's size. Node reserves the buffer and the kernel commits its pages on first touch, so a
 * slot costs resident memory only for the pages the guest or the host have written.
 */
export class MemorySlot {
  /** KVM slot number. */
  readonly slot: number;
  /** First guest-physical address (4 KiB aligned). */
  readonly guestAddress: bigint;
  /** Size in bytes (a multiple of 4096). */
  readonly size: number;
  /** Guest writes become MMIO exits. */
  readonly readOnly: boolean;
  /** KVM tracks written pages (`Vm.dirtyPages()`). */
  readonly dirtyLog: boolean;
  /** The backing memory, shared with the vCPU threads. */
  readonly buffer: SharedArrayBuffer;
  /** Zero-copy view of the slot's memory, as the guest sees it. */
  readonly bytes: Uint8Array;
  /** Where `buffer` is in the host process (`userspace_addr`). */
  readonly hostAddress: bigint;

  constructor(slot: number, guestAddress: bigint, size: number, flags: { readOnly: boolean; dirtyLog: boolean }) {
    if (guestAddress % BigInt(PAGE_SIZE) !== 0n) throw new RangeError(`memory slot ${slot}: guest address ${hex(guestAddress)} is not 4 KiB aligned`);
    if (size <= 0 || size % PAGE_SIZE !== 0) throw new RangeError(`memory slot ${slot}: size ${size} is not a positive multiple of 4096`);
    if (size > MAX_SLOT_BYTES) {
      throw outOfRange('memory', `${formatBytes(size)} is more than one memory slot can hold (at most ${formatBytes(MAX_SLOT_BYTES)}, the largest shared buffer Node.js makes)`);
    }
    this.slot = slot;
    this.guestAddress = guestAddress;
    this.size = size;
    this.readOnly = flags.readOnly;
    this.dirtyLog = flags.dirtyLog;
    // A growable SharedArrayBuffer is allocated by reserving pages, so its address is page-aligned.
    this.buffer = new SharedArrayBuffer(size, { maxByteLength: size });
    this.bytes = new Uint8Array(this.buffer);
    this.hostAddress = addressOf(this.bytes);
    if (this.hostAddress % BigInt(PAGE_SIZE) !== 0n) {
      throw new Error(`memory slot ${slot}: backing buffer at ${hex(this.hostAddress)} is not page-aligned`);
    }
  }

  /** @internal The dirty-log bitmap buffer and its KVM_GET_DIRTY_LOG argument, made on first use. */
  dirtyLogBuffers?: { bitmap: Uint8Array; words: BigUint64Array; arg: Uint8Array; clear: Uint8Array; clearWords: BigUint64Array; clearArg: Uint8Array };

  /** `KVM_MEM_*` flags of the slot. */
  get flags(): number {
    return (this.dirtyLog ? KVM_MEM_LOG_DIRTY_PAGES : 0) | (this.readOnly ? KVM_MEM_READONLY : 0);
  }

  /** One past the last guest-physical address. */
  get end(): bigint {
    return this.guestAddress + BigInt(this.size);
  }

  /** Whether `[gpa, gpa + length)` lies inside this slot. */
  contains(gpa: bigint, length = 1): boolean {
    return gpa >= this.guestAddress && gpa + BigInt(length) <= this.end;
  }

  /** The slot's settings as plain data. */
  describe(): MemorySlotInfo {
    return { slot: this.slot, guestAddress: this.guestAddress, size: this.size, readOnly: this.readOnly, dirtyLog: this.dirtyLog };
  }
}

/**
 * Bounds-checked access to guest physical memory across a VM's slots. Every access names
 * its range in the error when no single slot backs it.
 */
/**
 * Bounds-checked access to guest physical memory across a VM's slots. Every access names its range in the error
 * (`GuestMemoryError`) when no single slot backs it.
 */
export class GuestMemory {
  /** Sorted by guest address; non-overlapping. */
  #slots: MemorySlot[] = [];

  /** The slots, sorted by guest address. */
  get slots(): readonly MemorySlot[] {
    return this.#slots;
  }

  /** @internal */
  insert(slot: MemorySlot): void {
    const overlap = this.#slots.find((s) => slot.guestAddress < s.end && s.guestAddress < slot.end);
    if (overlap) {
      throw new RangeError(
        `memory slot ${slot.slot} [${hex(slot.guestAddress)}, ${hex(slot.end)}) overlaps slot ${overlap.slot} [${hex(overlap.guestAddress)}, ${hex(overlap.end)})`,
      );
    }
    this.#slots.push(slot);
    this.#slots.sort((a, b) => (a.guestAddress < b.guestAddress ? -1 : 1));
  }

  /** @internal */
  remove(slot: MemorySlot): void {
    this.#slots = this.#slots.filter((s) => s !== slot);
  }

  /** The slot that holds `[gpa, gpa+length)` entirely (binary search). */
  slotAt(gpa: bigint, length = 1): MemorySlot {
    const slots = this.#slots;
    let lo = 0;
    let hi = slots.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = slots[mid]!;
      if (gpa < s.guestAddress) hi = mid - 1;
      else if (gpa >= s.end) lo = mid + 1;
      else {
        if (!s.contains(gpa, length)) throw new GuestMemoryError(gpa, length, `crosses the end of slot ${s.slot} at ${hex(s.end)}`);
        return s;
      }
    }
    throw new GuestMemoryError(gpa, length, 'no memory slot backs this address');
  }

  /** A zero-copy view of `length` bytes at `gpa`. Writes through it are seen by the guest. */
  view(gpa: bigint | number, length: number): Uint8Array {
    const g = BigInt(gpa);
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`length ${length} is not a valid byte count`);
    const s = this.slotAt(g, Math.max(length, 1));
    const off = Number(g - s.guestAddress);
    return s.bytes.subarray(off, off + length);
  }

  /** A copy of `length` bytes at `gpa`. */
  read(gpa: bigint | number, length: number): Uint8Array {
    return this.view(gpa, length).slice();
  }

  /** Copies `data` to `gpa`. */
  write(gpa: bigint | number, data: ArrayLike<number> | Uint8Array): void {
    this.view(gpa, data.length).set(data);
  }

  /** Fills `[gpa, gpa+length)` with `value`. */
  fill(gpa: bigint | number, length: number, value = 0): void {
    this.view(gpa, length).fill(value);
  }

  #dv(gpa: bigint | number, size: number): DataView {
    const v = this.view(gpa, size);
    return new DataView(v.buffer, v.byteOffset, size);
  }

  /** Reads a byte. */
  readU8(gpa: bigint | number): number {
    return this.#dv(gpa, 1).getUint8(0);
  }
  /** Reads a little-endian 16-bit value. */
  readU16(gpa: bigint | number): number {
    return this.#dv(gpa, 2).getUint16(0, true);
  }
  /** Reads a little-endian 32-bit value. */
  readU32(gpa: bigint | number): number {
    return this.#dv(gpa, 4).getUint32(0, true);
  }
  /** Reads a little-endian 64-bit value. */
  readU64(gpa: bigint | number): bigint {
    return this.#dv(gpa, 8).getBigUint64(0, true);
  }
  /** Writes a byte. */
  writeU8(gpa: bigint | number, v: number): void {
    this.#dv(gpa, 1).setUint8(0, v);
  }
  /** Writes a little-endian 16-bit value. */
  writeU16(gpa: bigint | number, v: number): void {
    this.#dv(gpa, 2).setUint16(0, v, true);
  }
  /** Writes a little-endian 32-bit value. */
  writeU32(gpa: bigint | number, v: number): void {
    this.#dv(gpa, 4).setUint32(0, v >>> 0, true);
  }
  /** Writes a little-endian 64-bit value. */
  writeU64(gpa: bigint | number, v: bigint): void {
    this.#dv(gpa, 8).setBigUint64(0, BigInt.asUintN(64, v), true);
  }
}
