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

/** The MMIO side of a transport, as a driver sees it. */
export interface MmioDevice {
  read(offset: number, data: Uint8Array): void | Promise<void>;
  write(offset: number, data: Uint8Array): void;
}

/** A virtio-mmio driver: 32-bit register accesses and the initialisation sequence of virtio 1.2 §3.1. */
export class MmioDriver {
  readonly dev: MmioDevice;
  readonly ram: FakeRam;
  readonly rings: DriverRing[] = [];
  constructor(dev: MmioDevice, ram: FakeRam) {
    this.dev = dev;
    this.ram = ram;
  }
  r32(offset: number): number {
    const d = new Uint8Array(4);
    void this.dev.read(offset, d);
    return new DataView(d.buffer).getUint32(0, true);
  }
  w32(offset: number, v: number): void {
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, v >>> 0, true);
    this.dev.write(offset, d);
  }
  config(offset: number, length: number): Uint8Array {
    const d = new Uint8Array(length);
    void this.dev.read(0x100 + offset, d);
    return d;
  }
  deviceFeatures(): bigint {
    this.w32(0x14, 0);
    const lo = this.r32(0x10);
    this.w32(0x14, 1);
    return (BigInt(this.r32(0x10)) << 32n) | BigInt(lo);
  }
  setDriverFeatures(f: bigint): void {
    this.w32(0x24, 0);
    this.w32(0x20, Number(f & 0xffffffffn));
    this.w32(0x24, 1);
    this.w32(0x20, Number(f >> 32n));
  }
  /**
   * Reset, ACKNOWLEDGE|DRIVER, features (`accept(offered)` picks them; default: all offered),
   * FEATURES_OK, then queue set-up (`sizes[i]` entries each, rings at 0x10000·(i+1)), DRIVER_OK.
   * Returns the status read back.
   */
  init(sizes: number[], accept: (offered: bigint) => bigint = (o) => o): number {
    this.w32(0x70, 0);
    this.w32(0x70, 1);
    this.w32(0x70, 3);
    this.setDriverFeatures(accept(this.deviceFeatures()));
    this.w32(0x70, 3 | 8);
    if (!(this.r32(0x70) & 8)) return this.r32(0x70);
    this.rings.length = 0;
    sizes.forEach((size, i) => {
      this.w32(0x30, i);
      const ring = DriverRing.at(this.ram, size, BigInt(0x10000 * (i + 1)));
      this.w32(0x38, size);
      this.w32(0x80, Number(ring.desc & 0xffffffffn));
      this.w32(0x84, Number(ring.desc >> 32n));
      this.w32(0x90, Number(ring.driver & 0xffffffffn));
      this.w32(0x94, Number(ring.driver >> 32n));
      this.w32(0xa0, Number(ring.device & 0xffffffffn));
      this.w32(0xa4, Number(ring.device >> 32n));
      this.w32(0x44, 1);
      this.rings.push(ring);
    });
    this.w32(0x70, 3 | 8 | 4);
    return this.r32(0x70);
  }
  notify(queue: number): void {
    this.w32(0x50, queue);
  }
  /** Reads InterruptStatus and acknowledges all of it. */
  ack(): number {
    const s = this.r32(0x60);
    this.w32(0x64, s);
    return s;
  }
}

/** An IrqLine that records every level it is driven to. */
export function irqRecorder(): { set(level: boolean): void; levels: boolean[]; level(): boolean } {
  const levels: boolean[] = [];
  return { levels, set: (l: boolean) => void levels.push(l), level: () => levels.at(-1) ?? false };
}
