import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  VIRTIO_BLK_S, VIRTIO_BLK_T, VIRTIO_INT, VIRTIO_STATUS, VirtioBlk, VirtioConsole, VirtioMmioTransport, VirtioRng,
} from '@kvmpool/devices';
import { FakeRam, MmioDriver, irqRecorder } from '../support/virtio.js';

/** Writes a blk request (header at `hdr`, one data buffer, status byte) into the ring at `head`, without notifying. */
function blkRequest(drv: MmioDriver, head: number, type: number, sector: bigint, data: { addr: bigint; len: number; write?: boolean }, hdr: bigint, status: bigint): void {
  const dv = drv.ram.dv();
  dv.setUint32(Number(hdr), type, true);
  dv.setBigUint64(Number(hdr) + 8, sector, true);
  drv.ram.bytes[Number(status)] = 0xee;
  drv.rings[0]!.chain(head, [{ addr: hdr, len: 16 }, data, { addr: status, len: 1, write: true }]);
}

describe('virtio snapshot state', () => {
  it('restores transport, queues and device into a fresh transport over the same RAM; an available request then completes', () => {
    const ram = new FakeRam(4 << 20);
    const disk = new Uint8Array(64 * 512).map((_, i) => (i * 13) & 0xff);
    const t1 = new VirtioMmioTransport(new VirtioBlk({ backing: disk }), { ram, irq: irqRecorder() });
    const drv1 = new MmioDriver(t1, ram);
    expect(drv1.init([16]) & VIRTIO_STATUS.DRIVER_OK).toBe(VIRTIO_STATUS.DRIVER_OK);
    // One request done before the snapshot…
    blkRequest(drv1, 0, VIRTIO_BLK_T.IN, 1n, { addr: 0x90000n, len: 512, write: true }, 0x80000n, 0x8f000n);
    drv1.notify(0);
    expect(drv1.rings[0]!.takeUsed()).toEqual([{ id: 0, len: 513 }]);
    drv1.ack();
    drv1.rings[0]!.setUsedEvent(1); // EVENT_IDX: as a driver does, ask to hear of the next used entry
    // …and one made available whose notify never arrived.
    blkRequest(drv1, 3, VIRTIO_BLK_T.IN, 2n, { addr: 0x91000n, len: 1024, write: true }, 0x80100n, 0x8f100n);
    const state = JSON.parse(JSON.stringify(t1.exportState())) as unknown;
    expect(ram.bytes[0x8f100]).toBe(0xee);

    const irq = irqRecorder();
    const blk2 = new VirtioBlk({ backing: disk });
    const t2 = new VirtioMmioTransport(blk2, { ram, irq });
    t2.importState(state);
    expect(ram.bytes[0x8f100]).toBe(VIRTIO_BLK_S.OK);
    expect([...ram.bytes.subarray(0x91000, 0x91000 + 1024)]).toEqual([...disk.subarray(1024, 2048)]);
    expect(t2.status).toBe(VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER | VIRTIO_STATUS.FEATURES_OK | VIRTIO_STATUS.DRIVER_OK);
    expect(t2.negotiatedFeatures).toBe(t1.negotiatedFeatures);
    expect(t2.interruptStatus).toBe(VIRTIO_INT.USED_BUFFER);
    expect(irq.level()).toBe(true);
    expect(blk2.stats().requests).toBe(1); // only the pending one, the done one is not redone
    // The driver goes on with the restored transport: the used ring continues at index 1.
    const drv2 = new MmioDriver(t2, ram);
    drv2.rings.push(drv1.rings[0]!);
    expect(drv1.rings[0]!.takeUsed()).toEqual([{ id: 3, len: 1025 }]);
    blkRequest(drv2, 6, VIRTIO_BLK_T.OUT, 9n, { addr: 0x92000n, len: 512 }, 0x80200n, 0x8f200n);
    drv2.notify(0);
    expect(drv1.rings[0]!.takeUsed()).toEqual([{ id: 6, len: 1 }]);
    expect(drv1.rings[0]!.usedIdx()).toBe(3);
  });

  it('keeps the interrupt status, config generation, selectors and DEVICE_NEEDS_RESET', () => {
    const ram = new FakeRam(1 << 20);
    const t1 = new VirtioMmioTransport(new VirtioRng(), { ram, irq: irqRecorder() });
    const drv = new MmioDriver(t1, ram);
    drv.init([8]);
    drv.rings[0]!.setDesc(0, { addr: 0x80000n, len: 1, flags: 1, next: 0 }); // a loop
    drv.rings[0]!.offer(0);
    drv.notify(0);
    drv.w32(0x30, 5);
    expect(t1.needsReset).toBe(true);
    const s = JSON.parse(JSON.stringify(t1.exportState())) as Parameters<VirtioMmioTransport['importState']>[0];
    const t2 = new VirtioMmioTransport(new VirtioRng(), { ram, irq: irqRecorder() });
    t2.importState(s);
    expect(t2.needsReset).toBe(true);
    expect(t2.lastError?.message).toMatch(/loop/);
    expect(t2.status & VIRTIO_STATUS.DEVICE_NEEDS_RESET).toBe(VIRTIO_STATUS.DEVICE_NEEDS_RESET);
    expect(t2.interruptStatus).toBe(VIRTIO_INT.CONFIG_CHANGE);
    const d2 = new MmioDriver(t2, ram);
    expect(d2.r32(0xfc)).toBe(drv.r32(0xfc));
    expect(d2.r32(0x34)).toBe(0); // QueueSel 5 kept: no such queue
  });

  it('resumes a console transmit chain that was paused half-way', async () => {
    const ram = new FakeRam(4 << 20);
    const c1 = new VirtioConsole({ txHighWater: 1024 });
    const t1 = new VirtioMmioTransport(c1, { ram, irq: irqRecorder() });
    const drv = new MmioDriver(t1, ram);
    drv.init([16, 16]);
    const big = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
    ram.bytes.set(big, 0x100000);
    drv.rings[1]!.chain(0, [{ addr: 0x100000n, len: big.length }]);
    drv.notify(1);
    // The first 64 KiB slice sits in c1's stream (the reader is behind); the rest is still in guest RAM.
    expect(c1.stream.readableLength).toBe(65536);
    const state = JSON.parse(JSON.stringify(t1.exportState())) as unknown;
    expect((state as { device: { tx: unknown } }).device.tx).toEqual({ head: 0, offset: 65536 });

    const c2 = new VirtioConsole();
    const out: Buffer[] = [];
    c2.stream.on('data', (b: Buffer) => out.push(b));
    new VirtioMmioTransport(c2, { ram, irq: irqRecorder() }).importState(state);
    await tick();
    expect(Buffer.compare(Buffer.concat(out), Buffer.from(big.subarray(65536)))).toBe(0);
    expect(drv.rings[1]!.takeUsed()).toEqual([{ id: 0, len: 0 }]);
  });

  it('refuses a state that is not one', () => {
    const t = new VirtioMmioTransport(new VirtioRng(), { ram: new FakeRam(4096), irq: irqRecorder() });
    const good = t.exportState();
    for (const bad of [null, 3, {}, { ...good, driverFeatures: 'x' }, { ...good, queues: [] }, { ...good, queues: [{ ...good.queues[0], desc: -1 }] }]) {
      expect(() => t.importState(bad)).toThrow(TypeError);
    }
    t.importState(good);
  });
});
