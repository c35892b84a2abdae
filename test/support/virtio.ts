/**
 * Driver-side helpers for the virtio unit tests: a fake guest RAM over a Uint8Array, and a split
 * ring laid out in it the way a driver would (descriptors, avail ring, used ring).
 */
import type { GuestRam } from '@kvmpool/devices';

/** Guest RAM of `size` bytes at guest-physical 0 (or `base`), with the bounds a real memory map has. */
export class FakeRam implements GuestRam {
  readonly bytes: Uint8Array;
  readonly base: bigint;
  /** Every view handed out, to check that each lies inside RAM. */
  readonly views: Uint8Array[] = [];
  constructor(size: number, base = 0n, shared = false) {
    this.bytes = new Uint8Array(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
    this.base = base;
  }
  view(gpa: bigint, length: number): Uint8Array | undefined {
    if (!Number.isInteger(length) || length < 0) return undefined;
    const start = gpa - this.base;
    if (start < 0n || start + BigInt(length) > BigInt(this.bytes.length)) return undefined;
    const v = this.bytes.subarray(Number(start), Number(start) + length);
    this.views.push(v);
    return v;
  }
  /** Whether `v` is a window of this RAM's buffer. */
  contains(v: Uint8Array): boolean {
    return v.buffer === this.bytes.buffer && v.byteOffset >= this.bytes.byteOffset && v.byteOffset + v.byteLength <= this.bytes.byteOffset + this.bytes.byteLength;
  }
  dv(): DataView {
    return new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }
}

/** One descriptor as a driver writes it. */
export interface Desc {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

/** A split ring at fixed places in a FakeRam, driven from the driver side. */
export class DriverRing {
  readonly ram: FakeRam;
  readonly size: number;
  readonly desc: bigint;
  readonly driver: bigint;
  readonly device: bigint;
  #availIdx = 0;
  #usedSeen = 0;
  constructor(ram: FakeRam, size: number, desc: bigint, driver: bigint, device: bigint) {
    this.ram = ram;
    this.size = size;
    this.desc = desc;
    this.driver = driver;
    this.device = device;
  }
  /** Places a ring of `size` at 0x1000 / 0x1000+16·size / next 4 KiB (needs RAM for it). */
  static at(ram: FakeRam, size: number, base = 0x1000n): DriverRing {
    const desc = base;
    const driver = desc + BigInt(16 * size);
    const device = (driver + BigInt(6 + 2 * size) + 0xfffn) & ~0xfffn;
    return new DriverRing(ram, size, desc, driver, device);
  }
  setDesc(i: number, d: Desc, table = this.desc): void {
    const dv = this.ram.dv();
    const o = Number(table - this.ram.base) + 16 * i;
    dv.setBigUint64(o, d.addr, true);
    dv.setUint32(o + 8, d.len, true);
    dv.setUint16(o + 12, d.flags, true);
    dv.setUint16(o + 14, d.next, true);
  }
  /** Puts `head` in the avail ring and bumps avail.idx. */
  offer(head: number): void {
    const dv = this.ram.dv();
    const a = Number(this.driver - this.ram.base);
    dv.setUint16(a + 4 + 2 * (this.#availIdx % this.size), head, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    dv.setUint16(a + 2, this.#availIdx, true);
  }
  setAvailIdx(idx: number): void {
    this.#availIdx = idx & 0xffff;
    this.ram.dv().setUint16(Number(this.driver - this.ram.base) + 2, this.#availIdx, true);
  }
  setAvailFlags(flags: number): void {
    this.ram.dv().setUint16(Number(this.driver - this.ram.base), flags, true);
  }
  setUsedEvent(v: number): void {
    this.ram.dv().setUint16(Number(this.driver - this.ram.base) + 4 + 2 * this.size, v, true);
  }
  availEvent(): number {
    return this.ram.dv().getUint16(Number(this.device - this.ram.base) + 4 + 8 * this.size, true);
  }
  usedIdx(): number {
    return this.ram.dv().getUint16(Number(this.device - this.ram.base) + 2, true);
  }
  /** Used elements the device added since the last call. */
  takeUsed(): { id: number; len: number }[] {
    const dv = this.ram.dv();
    const u = Number(this.device - this.ram.base);
    const out: { id: number; len: number }[] = [];
    const idx = this.usedIdx();
    while (this.#usedSeen !== idx) {
      const slot = u + 4 + 8 * (this.#usedSeen % this.size);
      out.push({ id: dv.getUint32(slot, true), len: dv.getUint32(slot + 4, true) });
      this.#usedSeen = (this.#usedSeen + 1) & 0xffff;
    }
    return out;
  }
  /**
   * Writes a chain of buffers at descriptors first..first+n-1 (readable then writable) and offers
   * it. Returns the head.
   */
  chain(first: number, bufs: { addr: bigint; len: number; write?: boolean }[], offer = true): number {
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.setDesc((first + k) % this.size, { addr: b.addr, len: b.len, flags: (b.write ? 2 : 0) | (last ? 0 : 1), next: (first + k + 1) % this.size });
    });
    if (offer) this.offer(first);
    return first;
  }
}
