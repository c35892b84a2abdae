import { describe, expect, it } from 'vitest';
import { VIRTIO_DEVICE_ID, VIRTIO_RNG_MAX_REQUEST, VIRTIO_STATUS, VirtioMmioTransport, VirtioRng } from '@kvmpool/devices';
import { FakeRam, MmioDriver, irqRecorder } from '../support/virtio.js';

function rig(maxRequest?: number, shared = false) {
  const ram = new FakeRam(4 << 20, 0n, shared);
  const rng = new VirtioRng(maxRequest === undefined ? {} : { maxRequest });
  const irq = irqRecorder();
  const t = new VirtioMmioTransport(rng, { ram, irq });
  const drv = new MmioDriver(t, ram);
  expect(drv.init([16]) & VIRTIO_STATUS.DRIVER_OK).toBe(VIRTIO_STATUS.DRIVER_OK);
  return { ram, rng, drv, irq };
}

describe('VirtioRng', () => {
  it('fills each writable buffer with random bytes and reports the length', () => {
    const { ram, drv, rng, irq } = rig();
    expect(drv.r32(0x008)).toBe(VIRTIO_DEVICE_ID.ENTROPY);
    drv.rings[0]!.chain(0, [{ addr: 0x80000n, len: 100, write: true }]);
    drv.rings[0]!.chain(1, [{ addr: 0x81000n, len: 1, write: true }, { addr: 0x82000n, len: 31, write: true }]);
    drv.notify(0);
    expect(drv.rings[0]!.takeUsed()).toEqual([{ id: 0, len: 100 }, { id: 1, len: 32 }]);
    const a = ram.bytes.subarray(0x80000, 0x80000 + 100);
    expect(new Set(a).size).toBeGreaterThan(30); // 100 uniform bytes: ~82 distinct values expected
    expect(rng.bytesServed).toBe(132);
    expect(irq.level()).toBe(true);
  });

  it('bounds a request to 64 KiB (or maxRequest) and answers a chain with no writable bytes with 0', () => {
    const { drv, ram } = rig();
    drv.rings[0]!.chain(0, [{ addr: 0x100000n, len: 200_000, write: true }]);
    drv.rings[0]!.chain(1, [{ addr: 0x80000n, len: 8 }]);
    drv.notify(0);
    expect(drv.rings[0]!.takeUsed()).toEqual([{ id: 0, len: VIRTIO_RNG_MAX_REQUEST }, { id: 1, len: 0 }]);
    expect(ram.bytes.subarray(0x100000 + 65536, 0x100000 + 200_000).every((b) => b === 0)).toBe(true);
    const small = rig(10);
    small.drv.rings[0]!.chain(0, [{ addr: 0x80000n, len: 4, write: true }, { addr: 0x81000n, len: 40, write: true }]);
    small.drv.notify(0);
    expect(small.drv.rings[0]!.takeUsed()).toEqual([{ id: 0, len: 10 }]);
    expect(small.ram.bytes.subarray(0x81000 + 6, 0x81000 + 40).every((b) => b === 0)).toBe(true);
  });

  it('works over SharedArrayBuffer-backed RAM and validates maxRequest', () => {
    const { drv } = rig(undefined, true);
    drv.rings[0]!.chain(0, [{ addr: 0x80000n, len: 64, write: true }]);
    drv.notify(0);
    expect(drv.rings[0]!.takeUsed()).toEqual([{ id: 0, len: 64 }]);
    for (const m of [0, -1, 65537, 1.5]) expect(() => new VirtioRng({ maxRequest: m })).toThrow(RangeError);
  });
});
