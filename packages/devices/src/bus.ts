/**
 * A bus maps address ranges (ports or guest-physical addresses) to devices. Ranges may not
 * overlap; a lookup is a binary search over the ranges sorted by base.
 */
import type { Device } from './device.js';

export interface BusRange {
  readonly base: bigint;
  readonly length: bigint;
  readonly device: Device;
}

const hex = (n: bigint): string => `0x${n.toString(16)}`;

export class Bus {
  readonly kind: 'pio' | 'mmio';
  #ranges: BusRange[] = [];

  constructor(kind: 'pio' | 'mmio') {
    this.kind = kind;
  }

  get ranges(): readonly BusRange[] {
    return this.#ranges;
  }

  /** Maps `[base, base+length)` to `device`; throws if it overlaps a mapped range. */
  register(base: bigint | number, length: bigint | number, device: Device): void {
    const b = BigInt(base);
    const len = BigInt(length);
    const limit = this.kind === 'pio' ? 0x1_0000n : 1n << 64n;
    if (len <= 0n) throw new RangeError(`${this.kind} bus: ${device.name} at ${hex(b)} has length ${len}`);
    if (b < 0n || b + len > limit) throw new RangeError(`${this.kind} bus: ${device.name} [${hex(b)}, ${hex(b + len)}) is outside the ${this.kind} space`);
    const clash = this.#ranges.find((r) => b < r.base + r.length && r.base < b + len);
    if (clash) {
      throw new RangeError(
        `${this.kind} bus: ${device.name} [${hex(b)}, ${hex(b + len)}) overlaps ${clash.device.name} [${hex(clash.base)}, ${hex(clash.base + clash.length)})`,
      );
    }
    this.#ranges.push({ base: b, length: len, device });
    this.#ranges.sort((x, y) => (x.base < y.base ? -1 : x.base > y.base ? 1 : 0));
  }

  unregister(device: Device): void {
    this.#ranges = this.#ranges.filter((r) => r.device !== device);
  }

  /** The range holding `address`, or undefined. */
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

  /**
   * Reads `data.length` bytes at `address`; unmapped addresses read as all-ones. Returns a
   * promise when the device answers later, `true` when it answered, `false` when unmapped.
   */
  read(address: bigint, data: Uint8Array, source?: number): boolean | Promise<void> {
    const r = this.find(address);
    if (!r) {
      data.fill(0xff);
      return false;
    }
    return r.device.read(Number(address - r.base), data, source) ?? true;
  }

  /** Writes at `address`; writes to unmapped addresses are dropped (returns false). */
  write(address: bigint, data: Uint8Array, source?: number): boolean {
    const r = this.find(address);
    if (!r) return false;
    r.device.write(Number(address - r.base), data, source);
    return true;
  }
}
