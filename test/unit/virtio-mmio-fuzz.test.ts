// A hostile driver: random MMIO accesses (any offset, width, value) and random ring contents in
// front of each device model. The transport and devices must never throw to the host, must only
// ever fail with a QueueError (→ DEVICE_NEEDS_RESET), and must hand out views inside RAM only.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QueueError, VirtioBlk, VirtioConsole, VirtioMmioTransport, VirtioRng, type VirtioDevice } from '@kvmpool/devices';
import { FakeRam, MmioDriver, irqRecorder } from '../support/virtio.js';

const RAM = 1 << 20;

const access = fc.record({
  kind: fc.constantFrom('read', 'write', 'notify', 'garbage', 'desc', 'desc', 'desc', 'offer', 'offer', 'chain', 'chain'),
  header: fc.record({ type: fc.constantFrom(0, 1, 4, 8, 11, 13, 99), sector: fc.oneof(fc.bigInt({ min: 0n, max: 70n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })) }),
  queue: fc.integer({ min: 0, max: 1 }),
  desc: fc.record({
    i: fc.integer({ min: 0, max: 9 }),
    addr: fc.oneof({ weight: 5, arbitrary: fc.bigInt({ min: 0x80000n, max: 0x90000n }) }, { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
    len: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(0, 1, 16, 17, 32, 512, 1024, 1025) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) }),
    flags: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(0, 1, 2, 3) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 7 }) }),
    next: fc.integer({ min: 0, max: 9 }),
  }),
  offset: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(0x14, 0x20, 0x24, 0x30, 0x38, 0x44, 0x50, 0x64, 0x70, 0x80, 0x84, 0x90, 0xa0, 0xfc, 0x100) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1100 }) },
  ),
  width: fc.constantFrom(1, 2, 4, 4, 4, 8),
  value: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 0xffffffff })),
  // Mostly into the rings MmioDriver.init() places (queue i at 0x10000·(i+1): descriptors, avail, used).
  at: fc.oneof(
    { weight: 4, arbitrary: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 0, max: 0x90 })).map(([q, o]) => 0x10000 * q + o) },
    { weight: 3, arbitrary: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 0x80, max: 0x96 })).map(([q, o]) => 0x10000 * q + o) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: RAM - 8 }) },
  ),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
});

function devices(): [string, () => VirtioDevice][] {
  return [
    ['blk', () => new VirtioBlk({ backing: new Uint8Array(64 * 512) })],
    ['console', () => {
      const c = new VirtioConsole({ txHighWater: 64 });
      c.stream.write('input for the guest');
      return c;
    }],
    ['rng', () => new VirtioRng()],
  ];
}

describe('virtio-mmio under a hostile driver (property)', () => {
  for (const [name, make] of devices()) {
    it(`${name}: never throws, fails only with QueueError, views stay in RAM`, () => {
      let resets = 0;
      let completed = 0;
      fc.assert(
        fc.property(fc.boolean(), fc.array(access, { maxLength: 60 }), (initFirst, ops) => {
          const ram = new FakeRam(RAM);
          const dev = make();
          const t = new VirtioMmioTransport(dev, { ram, irq: irqRecorder() });
          const drv = new MmioDriver(t, ram);
          if (initFirst) drv.init(Array.from({ length: dev.queueCount }, () => 8));
          for (const op of ops) {
            const data = new Uint8Array(op.width);
            for (let i = 0; i < op.width; i++) data[i] = i < 4 ? (op.value >>> (8 * i)) & 0xff : 0;
            if (op.kind === 'read') void t.read(op.offset, data);
            else if (op.kind === 'write') t.write(op.offset, data);
            else if (op.kind === 'notify') t.notifyQueue(op.value & 3);
            else if (op.kind === 'garbage') ram.bytes.set(op.bytes, op.at);
            else {
              const ring = drv.rings[Math.min(op.queue, drv.rings.length - 1)];
              if (!ring) continue;
              if (op.kind === 'desc') ring.setDesc(op.desc.i % ring.size, op.desc);
              else if (op.kind === 'chain') {
                // A request-shaped chain: a 16-byte header, a data buffer, a status byte.
                const dv = ram.dv();
                dv.setUint32(0x80000, op.header.type, true);
                dv.setBigUint64(0x80008, op.header.sector, true);
                ring.chain(op.desc.i % ring.size, [
                  { addr: 0x80000n, len: 16 }, { addr: 0x81000n, len: op.desc.len & 0xfff, write: (op.desc.flags & 2) !== 0 }, { addr: 0x8f000n, len: 1, write: true },
                ].slice(0, 1 + (op.desc.next % 3)));
              }
              else ring.offer(op.desc.i);
            }
          }
          for (let q = 0; q < dev.queueCount; q++) t.notifyQueue(q);
          completed += t.exportState().queues.reduce((n, q) => n + (q.ring?.usedIdx ?? 0), 0);
          if (t.needsReset) {
            resets++;
            expect(t.lastError).toBeInstanceOf(QueueError);
          }
          for (const v of ram.views) expect(ram.contains(v)).toBe(true);
          if (dev instanceof VirtioConsole) dev.stream.destroy();
        }),
        { numRuns: 400 },
      );
      // The generators reach both outcomes: malformed rings and served requests.
      expect(resets).toBeGreaterThan(10);
      expect(completed).toBeGreaterThan(10);
    });
  }
});
