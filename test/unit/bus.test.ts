import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Bus, type Device } from '@kvmpool/devices';

interface Access {
  op: 'read' | 'write';
  offset: number;
  data: number[];
}

class Probe implements Device {
  readonly name: string;
  readonly log: Access[] = [];
  constructor(name: string) {
    this.name = name;
  }
  read(offset: number, data: Uint8Array): void {
    this.log.push({ op: 'read', offset, data: [...data] });
    data.fill(offset & 0xff);
  }
  write(offset: number, data: Uint8Array): void {
    this.log.push({ op: 'write', offset, data: [...data] });
  }
}

describe('Bus', () => {
  it('routes accesses to the registered device with the offset into its range', () => {
    const bus = new Bus('pio');
    const uart = new Probe('uart0');
    bus.register(0x3f8, 8, uart);
    expect(bus.ranges).toEqual([{ base: 0x3f8n, length: 8n, device: uart }]);
    const d = new Uint8Array(1);
    expect(bus.read(0x3fdn, d)).toBe(true);
    expect(d[0]).toBe(5);
    expect(bus.write(0x3f8n, Uint8Array.of(0x41))).toBe(true);
    expect(uart.log).toEqual([
      { op: 'read', offset: 5, data: [0] },
      { op: 'write', offset: 0, data: [0x41] },
    ]);
  });

  it('rejects overlapping ranges, naming both devices and ranges', () => {
    const bus = new Bus('pio');
    bus.register(0x3f8, 8, new Probe('uart0'));
    expect(() => bus.register(0x3fc, 8, new Probe('uart1'))).toThrow(
      'pio bus: uart1 [0x3fc, 0x404) overlaps uart0 [0x3f8, 0x400)',
    );
    expect(() => bus.register(0x3f0, 9, new Probe('fdc'))).toThrow(/fdc \[0x3f0, 0x3f9\) overlaps uart0 \[0x3f8, 0x400\)/);
    expect(() => bus.register(0x3f0, 0x20, new Probe('big'))).toThrow(/big .* overlaps uart0/);
    // Touching ranges are fine.
    bus.register(0x3f0, 8, new Probe('below'));
    bus.register(0x400, 1, new Probe('above'));
    expect(bus.ranges.map((r) => r.device.name)).toEqual(['below', 'uart0', 'above']);
  });

  it('rejects empty ranges and ranges outside the space', () => {
    const bus = new Bus('pio');
    expect(() => bus.register(0x10, 0, new Probe('empty'))).toThrow(/empty at 0x10 has length 0/);
    expect(() => bus.register(0xffff, 2, new Probe('edge'))).toThrow(/outside the pio space/);
    const mmio = new Bus('mmio');
    mmio.register(0xffff_ffff_ffff_f000n, 0x1000n, new Probe('top'));
    expect(mmio.find(0xffff_ffff_ffff_ffffn)?.device.name).toBe('top');
  });

  it('finds the right range among many, at every boundary', () => {
    const bus = new Bus('mmio');
    const devices: Probe[] = [];
    // Registered out of order, with gaps between some ranges and none between others.
    const order = Array.from({ length: 200 }, (_, i) => (i * 73) % 200);
    for (const i of order) {
      const d = new Probe(`dev${i}`);
      devices[i] = d;
      const base = 0x1000_0000n + BigInt(i) * 0x1000n;
      bus.register(base, i % 3 === 0 ? 0x1000n : 0x800n, d);
    }
    for (let i = 0; i < 200; i++) {
      const base = 0x1000_0000n + BigInt(i) * 0x1000n;
      const len = i % 3 === 0 ? 0x1000n : 0x800n;
      expect(bus.find(base)?.device).toBe(devices[i]);
      expect(bus.find(base + len - 1n)?.device).toBe(devices[i]);
      // Just past a short range is a gap; just before a range is the previous one only if it is full-size.
      if (len < 0x1000n) expect(bus.find(base + len)).toBeUndefined();
      expect(bus.find(base - 1n)?.device).toBe(i > 0 && (i - 1) % 3 === 0 ? devices[i - 1] : undefined);
    }
    expect(bus.find(0x1000_0000n - 1n)).toBeUndefined();
    expect(bus.find(0x1000_0000n + 200n * 0x1000n)).toBeUndefined();
    expect(bus.find(0n)).toBeUndefined();
  });

  it('reads unmapped addresses as all-ones and drops unmapped writes', () => {
    const bus = new Bus('pio');
    const dev = new Probe('dev');
    bus.register(0x80, 1, dev);
    const d = Uint8Array.of(0, 0, 0, 0);
    expect(bus.read(0x81n, d)).toBe(false);
    expect([...d]).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(bus.write(0x7fn, Uint8Array.of(1))).toBe(false);
    expect(dev.log).toEqual([]);
  });

  it('unregisters a device', () => {
    const bus = new Bus('pio');
    const dev = new Probe('dev');
    bus.register(0x80, 1, dev);
    bus.unregister(dev);
    expect(bus.find(0x80n)).toBeUndefined();
    bus.register(0x80, 1, new Probe('again'));
  });
});

describe('Bus: whole accesses only', () => {
  it('treats an access that straddles the end of a device as unmapped: all-ones, dropped, counted', () => {
    const bus = new Bus('pio');
    const dev = new Probe('dev');
    bus.register(0x80, 4, dev);
    const d = Uint8Array.of(0, 0, 0, 0);
    expect(bus.read(0x82n, d)).toBe(false); // bytes 0x82..0x85: the last two are past the device
    expect([...d]).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(bus.write(0x83n, Uint8Array.of(1, 2))).toBe(false);
    expect(bus.unmapped).toBe(2);
    expect(dev.log).toEqual([]);
    // Exactly at the end is still inside.
    expect(bus.write(0x80n, Uint8Array.of(1, 2, 3, 4))).toBe(true);
    expect(bus.read(0x83n, new Uint8Array(1))).toBe(true);
    expect(dev.log.map((a) => a.offset)).toEqual([0, 3]);
    expect(bus.unmapped).toBe(2);
  });

  it('treats an access spanning two adjacent devices as unmapped', () => {
    const bus = new Bus('mmio');
    const a = new Probe('a');
    const b = new Probe('b');
    bus.register(0x1000n, 0x10n, a);
    bus.register(0x1010n, 0x10n, b);
    expect(bus.write(0x100cn, new Uint8Array(8))).toBe(false);
    expect(a.log).toEqual([]);
    expect(b.log).toEqual([]);
  });

  it('rejects an access past the top of the 64-bit space without wrapping to address 0', () => {
    const bus = new Bus('mmio');
    const low = new Probe('low');
    const top = new Probe('top');
    bus.register(0n, 0x1000n, low);
    bus.register(0xffff_ffff_ffff_f000n, 0x1000n, top);
    const d = new Uint8Array(8);
    expect(bus.read(0xffff_ffff_ffff_fffcn, d)).toBe(false);
    expect(bus.read(0xffff_ffff_ffff_fff8n, d)).toBe(true);
    expect(top.log.map((x) => x.offset)).toEqual([0xff8]);
    expect(low.log).toEqual([]);
  });
});

/** A device that records every access and checks it against its own length. */
class Bounded implements Device {
  readonly seen: { offset: number; length: number }[] = [];
  constructor(readonly name: string, readonly length: bigint) {}
  read(offset: number, data: Uint8Array): void {
    this.seen.push({ offset, length: data.length });
    data.fill(0x5a);
  }
  write(offset: number, data: Uint8Array): void {
    this.seen.push({ offset, length: data.length });
  }
}

describe('Bus properties', () => {
  const space = (kind: 'pio' | 'mmio'): bigint => (kind === 'pio' ? 0x1_0000n : 1n << 64n);
  // Ranges clustered in a small window (so they collide often), some at the very top of the space.
  const rangeArb = (kind: 'pio' | 'mmio') =>
    fc.record({
      base: fc.oneof(fc.bigInt({ min: 0n, max: 0x200n }), fc.bigInt({ min: space(kind) - 0x200n, max: space(kind) + 0x10n }), fc.bigInt({ min: -4n, max: space(kind) })),
      length: fc.oneof(fc.bigInt({ min: -1n, max: 0x40n }), fc.bigInt({ min: 0n, max: space(kind) })),
    });
  const accessArb = (kind: 'pio' | 'mmio') =>
    fc.record({
      address: fc.oneof(fc.bigInt({ min: 0n, max: 0x280n }), fc.bigInt({ min: space(kind) - 0x240n, max: space(kind) - 1n })),
      size: fc.oneof(fc.constantFrom(1, 2, 4, 8), fc.integer({ min: 1, max: 64 })),
      write: fc.boolean(),
    });

  for (const kind of ['pio', 'mmio'] as const) {
    it(`${kind}: registering throws exactly when a range is empty, outside the space or overlaps one registered`, () => {
      fc.assert(
        fc.property(fc.array(rangeArb(kind), { maxLength: 24 }), (ranges) => {
          const bus = new Bus(kind);
          const accepted: { base: bigint; end: bigint }[] = [];
          ranges.forEach((r, i) => {
            const end = r.base + r.length;
            const valid = r.length > 0n && r.length <= 1n << 53n && r.base >= 0n && end <= space(kind);
            const overlaps = accepted.some((a) => r.base < a.end && a.base < end);
            const register = (): void => bus.register(r.base, r.length, new Bounded(`d${i}`, r.length));
            if (valid && !overlaps) {
              register();
              accepted.push({ base: r.base, end });
            } else {
              expect(register).toThrow(RangeError);
            }
          });
          expect(bus.ranges.length).toBe(accepted.length);
        }),
      );
    });

    it(`${kind}: a device sees an access only when all of it lies inside its range, at the right offset`, () => {
      fc.assert(
        fc.property(fc.array(rangeArb(kind), { maxLength: 16 }), fc.array(accessArb(kind), { maxLength: 40 }), (ranges, accesses) => {
          const bus = new Bus(kind);
          const devices: { base: bigint; dev: Bounded }[] = [];
          ranges.forEach((r, i) => {
            const dev = new Bounded(`d${i}`, r.length);
            try {
              bus.register(r.base, r.length, dev);
              devices.push({ base: r.base, dev });
            } catch {
              // rejected ranges are the other property's business
            }
          });
          let unmapped = 0;
          for (const a of accesses) {
            const end = a.address + BigInt(a.size);
            const owner = devices.find((d) => d.base <= a.address && end <= d.base + d.dev.length);
            const before = owner?.dev.seen.length ?? 0;
            const data = new Uint8Array(a.size);
            const done = a.write ? bus.write(a.address, data) : bus.read(a.address, data);
            if (owner) {
              expect(done).toBe(true);
              expect(owner.dev.seen.length).toBe(before + 1);
              expect(owner.dev.seen.at(-1)).toEqual({ offset: Number(a.address - owner.base), length: a.size });
              if (!a.write) expect(data.every((b) => b === 0x5a)).toBe(true);
            } else {
              unmapped++;
              expect(done).toBe(false);
              if (!a.write) expect(data.every((b) => b === 0xff)).toBe(true);
            }
          }
          expect(bus.unmapped).toBe(unmapped);
          for (const { dev } of devices) {
            for (const s of dev.seen) {
              expect(s.offset).toBeGreaterThanOrEqual(0);
              expect(BigInt(s.offset + s.length) <= dev.length).toBe(true);
            }
          }
        }),
      );
    });
  }
});
