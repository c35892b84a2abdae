/**
 * A bus maps address ranges (ports or guest-physical addresses) to devices. Ranges may not
 * overlap; a lookup is a binary search over the ranges sorted by base.
 *
 * An access reaches a device only if all of it, `[address, address + length)`, lies inside that
 * device's range (as kvmtool's mmio.c requires). One that straddles a range's end, spans two
 * devices or runs past the top of the space is unmapped: a read returns all-ones, a write is
 * dropped, and `unmapped` counts it. A device therefore never sees `offset + length` beyond its
 * own length. All arithmetic is on bigint, so `address + length` cannot wrap the way a u64 sum
 * at the top of the MMIO space would.
 */
import type { Device } from './device.js';

/** A device's range on a bus. */
export interface BusRange {
  /** First port or guest-physical address. */
  readonly base: bigint;
  /** Ports or bytes. */
  readonly length: bigint;
  /** The device. */
  readonly device: Device;
}

const MAX_DEVICE_LENGTH = 1n << 53n;
const hex = (n: bigint): string => `0x${n.toString(16)}`;

/**
 * Address ranges (ports or guest-physical addresses) mapped to devices, without overlap. An access reaches a
 * device only if it lies wholly inside the device's range; otherwise a read returns all-ones, a write is
 * dropped, and `unmapped` counts it.
 */
export class Bus {
  /** `pio` (ports, 2^16) or `mmio` (guest-physical, 2^64). */
  readonly kind: 'pio' | 'mmio';
  /** One past the highest address of the space: 2^16 ports or 2^64 bytes. */
  readonly limit: bigint;
  #ranges: BusRange[] = [];
  #unmapped = 0;

  constructor(kind: 'pio' | 'mmio') {
    this.kind = kind;
    this.limit = kind === 'pio' ? 0x1_0000n : 1n << 64n;
  }

  /** The ranges, sorted by base. */
  get ranges(): readonly BusRange[] {
    return this.#ranges;
  }

  /** Accesses that reached no device (nothing there, or not entirely inside one range). */
  get unmapped(): number {
    return this.#unmapped;
  }

  /** Maps `[base, base+length)` to `device`; throws if it overlaps a mapped range. */
  register(base: bigint | number, length: bigint | number, device: Device): void {
    const b = BigInt(base);
    const len = BigInt(length);
    if (len <= 0n) throw new RangeError(`${this.kind} bus: ${device.name} at ${hex(b)} has length ${len}`);
    // A device sees offsets as JS numbers: past 2^53 they would no longer be exact.
    if (len > MAX_DEVICE_LENGTH) throw new RangeError(`${this.kind} bus: ${device.name} at ${hex(b)} is ${hex(len)} long; a device spans at most 2^53 addresses`);
    if (b < 0n || b + len > this.limit) throw new RangeError(`${this.kind} bus: ${device.name} [${hex(b)}, ${hex(b + len)}) is outside the ${this.kind} space`);
    const clash = this.#ranges.find((r) => b < r.base + r.length && r.base < b + len);
    if (clash) {
      throw new RangeError(
        `${this.kind} bus: ${device.name} [${hex(b)}, ${hex(b + len)}) overlaps ${clash.device.name} [${hex(clash.base)}, ${hex(clash.base + clash.length)})`,
      );
    }
    this.#ranges.push({ base: b, length: len, device });
    this.#ranges.sort((x, y) => (x.base < y.base ? -1 : x.base > y.base ? 1 : 0));
  }

  /** Removes every range of `device`. */
  unregister(device: Device): void {
    this.#ranges = this.#ranges.filter((r) => r.device !== device);
  }

  /** The range holding the byte at `address`, or undefined. */
  find(address: bigint): BusRange | undefined {
    const rs = this.#ranges;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = rs[mid]!;
      if (address < r.base) hi = mid - 1;
      else if (address >= r.base + r.length) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  /** The range holding all of `[address, address + length)`, or undefined (also for length 0). */
  findAccess(address: bigint, length: number): BusRange | undefined {
    if (length <= 0) return undefined;
    const r = this.find(address);
    // `find` gave base <= address; the whole access must end at or before the range's end.
    return r && address + BigInt(length) <= r.base + r.length ? r : undefined;
  }

  /**
   * Reads `data.length` bytes at `address`; unmapped accesses read as all-ones. Returns a
   * promise when the device answers later, `true` when it answered, `false` when unmapped.
   */
  read(address: bigint, data: Uint8Array, source?: number): boolean | Promise<void> {
    const r = this.findAccess(address, data.length);
    if (!r) {
      data.fill(0xff);
      this.#unmapped++;
      return false;
    }
    return r.device.read(Number(address - r.base), data, source) ?? true;
  }

  /** Writes at `address`; unmapped writes are dropped (returns false). */
  write(address: bigint, data: Uint8Array, source?: number): boolean {
    const r = this.findAccess(address, data.length);
    if (!r) {
      this.#unmapped++;
      return false;
    }
    r.device.write(Number(address - r.base), data, source);
    return true;
  }
}
