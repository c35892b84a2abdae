import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QueueError, VIRTQ_AVAIL_F, VIRTQ_DESC_F, Virtqueue } from '@kvmpool/devices';
import { DriverRing, FakeRam } from '../support/virtio.js';

const { NEXT, WRITE, INDIRECT } = VIRTQ_DESC_F;

function setup(size = 8, opts: { eventIdx?: boolean; indirect?: boolean; ramSize?: number } = {}) {
  const ram = new FakeRam(opts.ramSize ?? 0x20000);
  const ring = DriverRing.at(ram, size);
  const q = new Virtqueue({
    ram, index: 0, size, desc: ring.desc, driver: ring.driver, device: ring.device,
    eventIdx: opts.eventIdx ?? false, indirect: opts.indirect ?? false,
  });
  return { ram, ring, q };
}

function expectQueueError(f: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(QueueError);
  expect((caught as QueueError).code).toBe('ERR_KVMPOOL_VIRTQUEUE');
  expect((caught as Error).message).toMatch(pattern);
}

describe('Virtqueue: split ring walk', () => {
  it('returns nothing on an empty ring, then a readable+writable chain whose views are the guest buffers', () => {
    const { ram, ring, q } = setup();
    expect(q.pop()).toBeUndefined();
    ram.bytes.set([1, 2, 3, 4], 0x8000);
    ring.chain(2, [{ addr: 0x8000n, len: 4 }, { addr: 0x9000n, len: 3 }, { addr: 0x9100n, len: 5, write: true }]);
    expect(q.hasAvailable()).toBe(true);
    const c = q.pop()!;
    expect(c.head).toBe(2);
    expect(c.readable.map((v) => [...v])).toEqual([[1, 2, 3, 4], [0, 0, 0]]);
    expect(c.readableLength).toBe(7);
    expect(c.writableLength).toBe(5);
    c.writable[0]!.set([9, 9]);
    expect([...ram.bytes.subarray(0x9100, 0x9102)]).toEqual([9, 9]);
    expect(q.pop()).toBeUndefined();
    q.push(c.head, 2);
    expect(ring.takeUsed()).toEqual([{ id: 2, len: 2 }]);
    expect(ring.usedIdx()).toBe(1);
  });

  it('wraps the 16-bit ring indices', () => {
    const ram = new FakeRam(0x20000);
    const ring = DriverRing.at(ram, 4);
    ring.setAvailIdx(0xfffe);
    const q = new Virtqueue({ ram, index: 1, size: 4, desc: ring.desc, driver: ring.driver, device: ring.device, state: { lastAvailIdx: 0xfffe, usedIdx: 0xfffe, signalledUsed: 0xfffe } });
    for (let k = 0; k < 4; k++) {
      ring.chain(k, [{ addr: 0x8000n + BigInt(k), len: 1, write: true }]);
      const c = q.pop()!;
      expect(c.head).toBe(k);
      q.push(c.head, 1);
    }
    expect(ring.usedIdx()).toBe(2);
    expect(q.exportState()).toEqual({ lastAvailIdx: 2, usedIdx: 2, signalledUsed: 0xfffe });
  });

  it('skips zero-length descriptors and clamps the written length to u32', () => {
    const { ring, q } = setup();
    ring.chain(0, [{ addr: 0xffff_ffff_ffffn, len: 0 }, { addr: 0x8000n, len: 2, write: true }]);
    const c = q.pop()!;
    expect(c.readable).toEqual([]);
    expect(c.writable.length).toBe(1);
    q.push(c.head, 2 ** 40);
    q.push(c.head, -5);
    const used = ring.takeUsed();
    expect(used.map((u) => u.len)).toEqual([0xffffffff, 0]);
    expect(() => q.push(8, 0)).toThrow(RangeError);
  });

  it('stops at its budget and says so', () => {
    const { ring, q } = setup();
    for (let k = 0; k < 3; k++) ring.chain(k, [{ addr: 0x8000n, len: 1, write: true }]);
    q.setBudget(2);
    expect(q.pop()?.head).toBe(0);
    expect(q.pop()?.head).toBe(1);
    expect(q.exhausted).toBe(false);
    expect(q.pop()).toBeUndefined();
    expect(q.exhausted).toBe(true);
    q.setBudget(Infinity);
    expect(q.exhausted).toBe(false);
    expect(q.pop()?.head).toBe(2);
    // re-walking a popped head does not touch the ring
    expect(q.chain(1).writableLength).toBe(1);
    expect(q.pop()).toBeUndefined();
    expectQueueError(() => q.chain(8), /head 8/);
  });

  it('in tolerant mode counts and skips buffers outside RAM, but still throws on structural faults', () => {
    const { ring, q } = setup();
    ring.chain(0, [{ addr: 0x8000n, len: 4 }, { addr: 0x40000n, len: 4 }, { addr: 0x9000n, len: 2, write: true }, { addr: (1n << 64n) - 1n, len: 2, write: true }]);
    const c = q.pop(true)!;
    expect(c).toMatchObject({ readableLength: 4, writableLength: 2, badBuffers: 2, lastWritableBad: true });
    expect(q.chain(0, true).badBuffers).toBe(2);
    expectQueueError(() => q.chain(0), /outside guest RAM/);
    ring.setDesc(4, { addr: 0x40000n, len: 1, flags: NEXT, next: 4 });
    ring.offer(4);
    expectQueueError(() => q.pop(true), /longer than 8/);
    const ok = setup();
    ok.ring.chain(0, [{ addr: 0x8000n, len: 4, write: true }]);
    expect(ok.q.pop(true)).toMatchObject({ badBuffers: 0, lastWritableBad: false });
  });

  it('follows an indirect table when negotiated', () => {
    const { ram, ring, q } = setup(8, { indirect: true });
    const table = 0xa000n;
    ring.setDesc(0, { addr: 0x8000n, len: 16, flags: NEXT, next: 1 }, table);
    ring.setDesc(1, { addr: 0x8100n, len: 512, flags: WRITE | NEXT, next: 2 }, table);
    ring.setDesc(2, { addr: 0x8400n, len: 1, flags: WRITE, next: 0 }, table);
    ring.setDesc(5, { addr: table, len: 48, flags: INDIRECT, next: 0 });
    ring.offer(5);
    const c = q.pop()!;
    expect(c.head).toBe(5);
    expect(c.readableLength).toBe(16);
    expect(c.writableLength).toBe(513);
    expect(c.writable.every((v) => ram.contains(v))).toBe(true);
  });

  it('refuses indirect descriptors that are not negotiated, nested, chained, misplaced or of a bad length', () => {
    const cases: [string, (r: DriverRing) => void, RegExp][] = [
      ['nested', (r) => {
        r.setDesc(0, { addr: 0xb000n, len: 16, flags: INDIRECT, next: 0 }, 0xa000n);
        r.setDesc(0, { addr: 0xa000n, len: 16, flags: INDIRECT, next: 0 });
      }, /inside an indirect table/],
      ['with NEXT', (r) => r.setDesc(0, { addr: 0xa000n, len: 16, flags: INDIRECT | NEXT, next: 1 }), /NEXT/],
      ['not head', (r) => {
        r.setDesc(0, { addr: 0x8000n, len: 1, flags: NEXT, next: 1 });
        r.setDesc(1, { addr: 0xa000n, len: 16, flags: INDIRECT, next: 0 });
      }, /not the chain's head/],
      ['length 0', (r) => r.setDesc(0, { addr: 0xa000n, len: 0, flags: INDIRECT, next: 0 }), /multiple of 16/],
      ['length 17', (r) => r.setDesc(0, { addr: 0xa000n, len: 17, flags: INDIRECT, next: 0 }), /multiple of 16/],
      ['huge', (r) => r.setDesc(0, { addr: 0n, len: 16 * 65536, flags: INDIRECT, next: 0 }), /multiple of 16/],
      ['outside RAM', (r) => r.setDesc(0, { addr: 0x1f000n, len: 0x2000, flags: INDIRECT, next: 0 }), /outside guest RAM/],
    ];
    for (const [, build, pattern] of cases) {
      const { ring, q } = setup(8, { indirect: true });
      build(ring);
      ring.offer(0);
      expectQueueError(() => q.pop(), pattern);
    }
    const { ring, q } = setup(8, { indirect: false });
    ring.setDesc(0, { addr: 0xa000n, len: 16, flags: INDIRECT, next: 0 });
    ring.offer(0);
    expectQueueError(() => q.pop(), /not negotiated/);
  });

  it('refuses loops, over-long chains, bad heads, buffers outside RAM or wrapping, and readable after writable', () => {
    const cases: [(r: DriverRing) => void, RegExp][] = [
      [(r) => { r.setDesc(0, { addr: 0x8000n, len: 1, flags: NEXT, next: 1 }); r.setDesc(1, { addr: 0x8000n, len: 1, flags: NEXT, next: 0 }); r.offer(0); }, /longer than 8/],
      [(r) => { r.setDesc(3, { addr: 0x8000n, len: 1, flags: NEXT, next: 3 }); r.offer(3); }, /longer than 8/],
      [(r) => { r.setDesc(0, { addr: 0x8000n, len: 1, flags: NEXT, next: 9 }); r.offer(0); }, /index 9 is not below 8/],
      [(r) => r.offer(8), /head 8/],
      [(r) => { r.setDesc(0, { addr: 0x1ffffn, len: 2, flags: 0, next: 0 }); r.offer(0); }, /outside guest RAM/],
      [(r) => { r.setDesc(0, { addr: 0xffff_ffff_ffff_ff00n, len: 0x1000, flags: WRITE, next: 0 }); r.offer(0); }, /wraps/],
      [(r) => { r.setDesc(0, { addr: 0x8000n, len: 0xffffffff, flags: 0, next: 0 }); r.offer(0); }, /outside guest RAM/],
      [(r) => { r.chain(0, [{ addr: 0x8000n, len: 1, write: true }, { addr: 0x8000n, len: 1 }]); }, /follows a writable/],
      [(r) => { r.chain(0, [{ addr: 0x8000n, len: 0, write: true }, { addr: 0x8000n, len: 1 }]); }, /follows a writable/],
      [(r) => r.setAvailIdx(9), /9 entries ahead/],
    ];
    for (const [build, pattern] of cases) {
      const { ring, q } = setup(8);
      build(ring);
      expectQueueError(() => q.pop(), pattern);
    }
  });

  it('validates the queue size, alignments and that the rings lie in RAM', () => {
    const ram = new FakeRam(0x10000);
    const ok = { ram, index: 3, desc: 0x1000n, driver: 0x2000n, device: 0x3000n };
    for (const size of [0, 3, 6, 100, 65536, 1.5, -4]) expectQueueError(() => new Virtqueue({ ...ok, size }), /not a power of two/);
    expectQueueError(() => new Virtqueue({ ...ok, size: 256, maxSize: 128 }), /\[1, 128\]/);
    expectQueueError(() => new Virtqueue({ ...ok, size: 8, desc: 0x1008n }), /16-aligned/);
    expectQueueError(() => new Virtqueue({ ...ok, size: 8, driver: 0x2001n }), /2-aligned/);
    expectQueueError(() => new Virtqueue({ ...ok, size: 8, device: 0x3002n }), /4-aligned/);
    expectQueueError(() => new Virtqueue({ ...ok, size: 8, device: 0xfff0n }), /device area .* outside guest RAM/);
    expectQueueError(() => new Virtqueue({ ...ok, size: 32768, desc: 0n }), /descriptor table .* outside guest RAM/);
    expectQueueError(() => new Virtqueue({ ...ok, size: 8, driver: (1n << 64n) - 2n }), /wraps/);
    expect(new Virtqueue({ ...ok, size: 8 }).size).toBe(8);
  });
});

describe('Virtqueue: interrupt suppression', () => {
  it('without EVENT_IDX: once per batch of pushes, unless the driver sets NO_INTERRUPT', () => {
    const { ring, q } = setup();
    expect(q.needsInterrupt()).toBe(false);
    ring.chain(0, [{ addr: 0x8000n, len: 1, write: true }]);
    q.push(q.pop()!.head, 1);
    expect(q.needsInterrupt()).toBe(true);
    expect(q.needsInterrupt()).toBe(false);
    ring.setAvailFlags(VIRTQ_AVAIL_F.NO_INTERRUPT);
    ring.chain(1, [{ addr: 0x8000n, len: 1, write: true }]);
    q.push(q.pop()!.head, 1);
    expect(q.needsInterrupt()).toBe(false);
  });

  it('with EVENT_IDX: interrupts only when used.idx crosses used_event, and publishes avail_event when empty', () => {
    const { ring, q } = setup(8, { eventIdx: true });
    ring.setUsedEvent(2); // wake me when the 3rd used entry (index 2) is written
    for (let k = 0; k < 4; k++) ring.chain(k, [{ addr: 0x8000n, len: 1, write: true }]);
    const want: boolean[] = [];
    for (let k = 0; k < 4; k++) {
      q.push(q.pop()!.head, 1);
      want.push(q.needsInterrupt());
    }
    expect(want).toEqual([false, false, true, false]);
    expect(ring.availEvent()).toBe(0);
    expect(q.pop()).toBeUndefined();
    expect(ring.availEvent()).toBe(4);
    // Two pushes in one batch that step over used_event: one interrupt.
    ring.setUsedEvent(4);
    ring.chain(4, [{ addr: 0x8000n, len: 1, write: true }]);
    ring.chain(5, [{ addr: 0x8000n, len: 1, write: true }]);
    q.push(q.pop()!.head, 1);
    q.push(q.pop()!.head, 1);
    expect(q.needsInterrupt()).toBe(true);
  });

  it('uses atomics on a SharedArrayBuffer-backed RAM and unaligned host views alike', () => {
    for (const shared of [false, true]) {
      const ram = new FakeRam(0x20000, 0n, shared);
      const ring = DriverRing.at(ram, 4);
      const q = new Virtqueue({ ram, index: 0, size: 4, desc: ring.desc, driver: ring.driver, device: ring.device });
      ring.chain(0, [{ addr: 0x8000n, len: 8, write: true }]);
      q.push(q.pop()!.head, 8);
      expect(ring.usedIdx()).toBe(1);
    }
    // A RAM whose host view starts at an odd byte offset: 16-bit words cannot use Atomics.
    const backing = new Uint8Array(0x20001);
    const odd: FakeRam = Object.assign(Object.create(FakeRam.prototype) as FakeRam, { bytes: backing.subarray(1), base: 0n, views: [] });
    const ring = DriverRing.at(odd, 4);
    const q = new Virtqueue({ ram: odd, index: 0, size: 4, desc: ring.desc, driver: ring.driver, device: ring.device });
    ring.chain(0, [{ addr: 0x8000n, len: 8, write: true }]);
    q.push(q.pop()!.head, 8);
    expect(ring.usedIdx()).toBe(1);
  });
});

describe('Virtqueue: hostile rings (property)', () => {
  const RAM = 0x10000;
  const descArb = fc.record({
    addr: fc.oneof(
      { weight: 6, arbitrary: fc.bigInt({ min: 0n, max: BigInt(RAM) - 0x400n }) },
      { weight: 1, arbitrary: fc.constant(0x4000n) },
      { weight: 1, arbitrary: fc.bigInt({ min: BigInt(RAM) - 0x400n, max: BigInt(RAM) + 0x100n }) },
      { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
    ),
    len: fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: 0x400 }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
      { weight: 2, arbitrary: fc.constantFrom(16, 32, 48, 64, 192) },
    ),
    flags: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(0, NEXT, WRITE, NEXT | WRITE, INDIRECT) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
    next: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 15 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
  });

  it('throws nothing but QueueError, terminates, and returns only views inside RAM', () => {
    const seen = { chains: 0, errors: 0, empty: 0, indirect: 0 };
    fc.assert(
      fc.property(
        fc.oneof(fc.constantFrom(1, 2, 4, 8, 16), fc.integer({ min: 0, max: 40 })),
        fc.array(descArb, { minLength: 16, maxLength: 16 }),
        fc.array(descArb, { minLength: 0, maxLength: 12 }),
        fc.array(fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 15 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }), { minLength: 20, maxLength: 20 }),
        fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 20 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        (size, table, indirectTable, heads, ahead, start, eventIdx, indirect, tolerant) => {
          const availIdx = (start + ahead) & 0xffff;
          const ram = new FakeRam(RAM);
          const desc = 0x1000n;
          const driver = 0x2000n;
          const device = 0x3000n;
          const ring = new DriverRing(ram, Math.max(size, 1), desc, driver, device);
          table.forEach((d, i) => ring.setDesc(i, d));
          // An indirect table at 0x4000, which random descriptors may point at.
          indirectTable.forEach((d, i) => ring.setDesc(i, d, 0x4000n));
          const dv = ram.dv();
          heads.forEach((h, i) => dv.setUint16(Number(driver) + 4 + 2 * ((start + i) % Math.max(size, 1)), h, true));
          dv.setUint16(Number(driver) + 2, availIdx, true);
          let q: Virtqueue;
          try {
            q = new Virtqueue({ ram, index: 0, size, desc, driver, device, eventIdx, indirect, state: { lastAvailIdx: start, usedIdx: 0, signalledUsed: 0 } });
          } catch (e) {
            expect(e).toBeInstanceOf(QueueError);
            expect([1, 2, 4, 8, 16, 32].includes(size)).toBe(false);
            return;
          }
          const before = ram.views.length;
          for (let k = 0; k <= size + 1; k++) {
            let c;
            try {
              c = q.pop(tolerant);
            } catch (e) {
              expect(e).toBeInstanceOf(QueueError);
              seen.errors++;
              break;
            }
            if (c === undefined) {
              seen.empty++;
              break;
            }
            seen.chains++;
            if (c.readable.concat(c.writable).some((v) => v.byteOffset >= 0x4000 && v.byteOffset < 0x4000 + 16 * 12)) seen.indirect++;
            expect(c.head).toBeLessThan(size);
            expect(c.readable.length + c.writable.length).toBeLessThanOrEqual(32768);
            for (const v of [...c.readable, ...c.writable]) expect(ram.contains(v)).toBe(true);
            expect(c.readableLength).toBe(c.readable.reduce((s, v) => s + v.length, 0));
            expect(c.writableLength).toBe(c.writable.reduce((s, v) => s + v.length, 0));
            q.push(c.head, c.writableLength);
            q.needsInterrupt();
          }
          for (const v of ram.views.slice(before)) expect(ram.contains(v)).toBe(true);
        },
      ),
      { numRuns: 3000 },
    );
    // The generators reach every outcome (a property that only ever saw errors would prove little).
    expect(seen.chains).toBeGreaterThan(50);
    expect(seen.errors).toBeGreaterThan(100);
    expect(seen.empty).toBeGreaterThan(10);
    expect(seen.indirect).toBeGreaterThan(3);
  });

  it('bounds a maximal chain: 32768 descriptors linked in one loop-free chain, and the same with a loop', () => {
    const size = 32768;
    const ram = new FakeRam(0x100000);
    const ring = DriverRing.at(ram, size, 0x10000n);
    for (let i = 0; i < size; i++) ring.setDesc(i, { addr: 0x1000n, len: 1, flags: i === size - 1 ? WRITE : NEXT, next: i + 1 });
    ring.offer(0);
    const q = new Virtqueue({ ram, index: 0, size, desc: ring.desc, driver: ring.driver, device: ring.device });
    const c = q.pop()!;
    expect(c.readable.length + c.writable.length).toBe(size);
    ring.setDesc(size - 1, { addr: 0x1000n, len: 1, flags: NEXT, next: 0 });
    ring.offer(0);
    expectQueueError(() => q.pop(), /longer than 32768/);
  });
});
