import { describe, expect, it } from 'vitest';
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
