import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { VIRTIO_STATUS, VirtioConsole, VirtioMmioTransport, type VirtioConsoleOptions } from '@kvmpool/devices';
import { FakeRam, MmioDriver, irqRecorder } from '../support/virtio.js';

const RX = 0;
const TX = 1;

function rig(options: VirtioConsoleOptions = {}, init = true) {
  const ram = new FakeRam(4 << 20);
  const con = new VirtioConsole(options);
  const t = new VirtioMmioTransport(con, { ram, irq: irqRecorder() });
  const drv = new MmioDriver(t, ram);
  const up = () => expect(drv.init([16, 16]) & VIRTIO_STATUS.DRIVER_OK).toBe(VIRTIO_STATUS.DRIVER_OK);
  if (init) up();
  const slot = [0, 0];
  /** Posts one single-buffer chain on `queue`; returns its head. */
  const post = (queue: number, addr: bigint, bytes: Uint8Array | number) => {
    const ring = drv.rings[queue]!;
    const head = slot[queue]!;
    slot[queue] = (head + 1) % 16;
    if (typeof bytes === 'number') ring.chain(head, [{ addr, len: bytes, write: true }]);
    else {
      ram.bytes.set(bytes, Number(addr));
      ring.chain(head, [{ addr, len: bytes.length }]);
    }
    return head;
  };
  return { ram, con, t, drv, post, up };
}

const text = (s: string) => new TextEncoder().encode(s);

describe('VirtioConsole guest output', () => {
  it('pushes transmit buffers to the stream in order and completes them', async () => {
    const { con, drv, post } = rig();
    const got: Buffer[] = [];
    con.stream.on('data', (b: Buffer) => got.push(b));
    post(TX, 0x80000n, text('hello, '));
    post(TX, 0x81000n, text('world'));
    drv.notify(TX);
    await tick();
    expect(Buffer.concat(got).toString()).toBe('hello, world');
    expect(drv.rings[TX]!.takeUsed()).toEqual([{ id: 0, len: 0 }, { id: 1, len: 0 }]);
    expect(con.stats().txBytes).toBe(12);
  });

  it('stops taking transmit chains while the reader is behind, and resumes (mid-chain) when it reads', async () => {
    const { con, drv, post } = rig({ txHighWater: 16 });
    const data = Array.from({ length: 6 }, (_, k) => text(`chunk-${k}-abcdefghij`)); // 18 bytes each
    data.forEach((d, k) => post(TX, 0x80000n + BigInt(k) * 0x1000n, d));
    drv.notify(TX);
    // One chain went out and filled the readable buffer past its 16-byte mark; the rest wait in the ring.
    expect(drv.rings[TX]!.takeUsed().length).toBe(1);
    expect(con.stream.readableLength).toBeLessThanOrEqual(16 + 18);
    const out: Buffer[] = [];
    for (let spins = 0; spins < 100 && Buffer.concat(out).length < 6 * 18; spins++) {
      let b: Buffer | null;
      while ((b = con.stream.read() as Buffer | null) !== null) out.push(b);
      expect(con.stream.readableLength).toBeLessThanOrEqual(16 + 18);
      await tick();
    }
    expect(Buffer.concat(out).toString()).toBe(data.map((d) => Buffer.from(d).toString()).join(''));
    expect(drv.rings[TX]!.takeUsed().length).toBe(5);
  });

  it('slices one huge transmit chain and keeps its place across back-pressure', async () => {
    const { con, drv, ram } = rig({ txHighWater: 1024 });
    const big = new Uint8Array(200_000).map((_, i) => i & 0xff);
    ram.bytes.set(big, 0x100000);
    drv.rings[TX]!.chain(0, [{ addr: 0x100000n, len: 150_000 }, { addr: 0x100000n + 150_000n, len: 50_000 }]);
    drv.notify(TX);
    expect(drv.rings[TX]!.takeUsed()).toEqual([]); // paused inside the chain
    expect(con.stream.readableLength).toBe(64 << 10);
    const out: Buffer[] = [];
    for (let spins = 0; spins < 100 && Buffer.concat(out).length < big.length; spins++) {
      let b: Buffer | null;
      while ((b = con.stream.read() as Buffer | null) !== null) out.push(b);
      await tick();
    }
    expect(Buffer.compare(Buffer.concat(out), Buffer.from(big))).toBe(0);
    expect(drv.rings[TX]!.takeUsed()).toEqual([{ id: 0, len: 0 }]);
  });

  it('discards output once the stream is destroyed, so the guest never blocks', async () => {
    const { con, drv, post } = rig({ txHighWater: 4 });
    post(TX, 0x80000n, text('0123456789'));
    post(TX, 0x81000n, text('abcdef'));
    drv.notify(TX);
    expect(drv.rings[TX]!.takeUsed().length).toBe(1);
    con.stream.destroy();
    await tick();
    expect(drv.rings[TX]!.takeUsed().length).toBe(1);
    expect(con.stats().txDropped).toBe(6);
  });
});

describe('VirtioConsole guest input', () => {
  it('queues host input written before the driver is up and delivers it into posted receive buffers', async () => {
    const { con, drv, post, ram, up } = rig({}, false);
    con.stream.write('early ');
    con.stream.write('bird');
    await tick();
    up();
    post(RX, 0x90000n, 4);
    post(RX, 0x91000n, 64);
    drv.notify(RX);
    const used = drv.rings[RX]!.takeUsed();
    expect(used).toEqual([{ id: 0, len: 4 }, { id: 1, len: 6 }]);
    expect(Buffer.from(ram.bytes.subarray(0x90000, 0x90004)).toString()).toBe('earl');
    expect(Buffer.from(ram.bytes.subarray(0x91000, 0x91006)).toString()).toBe('y bird');
    // Buffers posted with no input wait for it.
    post(RX, 0x92000n, 64);
    drv.notify(RX);
    expect(drv.rings[RX]!.takeUsed()).toEqual([]);
    con.stream.write('later');
    await tick();
    expect(drv.rings[RX]!.takeUsed()).toEqual([{ id: 2, len: 5 }]);
    expect(con.stats()).toMatchObject({ rxBytes: 15, rxPending: 0 });
  });

  it('holds the write callback while more than rxLimit bytes wait for the guest', async () => {
    const { con, drv, post } = rig({ rxLimit: 8 });
    let done = false;
    con.stream.write(Buffer.alloc(20, 0x41), () => { done = true; });
    await tick();
    expect(done).toBe(false);
    expect(con.stats().rxPending).toBe(20);
    post(RX, 0x90000n, 10);
    drv.notify(RX);
    await tick();
    expect(done).toBe(false); // 10 still pending > 8
    post(RX, 0x91000n, 4);
    drv.notify(RX);
    await tick();
    expect(done).toBe(true);
    expect(con.stats().rxPending).toBe(6);
  });

  it('copies what it holds once the write callback ran, so a writer may reuse its buffer', async () => {
    const { con, drv, post, ram } = rig({ rxLimit: 4 });
    const buf = Buffer.from('abcdefgh');
    let done = false;
    con.stream.write(buf, () => { done = true; });
    post(RX, 0x90000n, 5);
    drv.notify(RX); // takes 5, leaves 3 ≤ rxLimit: the callback runs
    await tick();
    expect(done).toBe(true);
    buf.fill(0x7a); // the writer reuses its buffer
    post(RX, 0x91000n, 16);
    drv.notify(RX);
    expect(Buffer.from(ram.bytes.subarray(0x90000, 0x90005)).toString()).toBe('abcde');
    expect(Buffer.from(ram.bytes.subarray(0x91000, 0x91003)).toString()).toBe('fgh');
    const small = Buffer.from('xy');
    con.stream.write(small);
    await tick();
    small.fill(0);
    post(RX, 0x92000n, 16);
    drv.notify(RX);
    expect(Buffer.from(ram.bytes.subarray(0x92000, 0x92002)).toString()).toBe('xy');
  });

  it('delivers many tiny writes in order', async () => {
    const { con, drv, ram } = rig({ rxLimit: 1 << 16 });
    const n = 20_000;
    for (let i = 0; i < n; i++) con.stream.write(Buffer.of(i & 0xff));
    await tick();
    const ring = drv.rings[RX]!;
    const got: number[] = [];
    for (let round = 0; got.length < n && round < 400; round++) {
      for (let k = 0; k < 16; k++) ring.chain(k, [{ addr: 0x100000n + BigInt(k) * 0x1000n, len: 100, write: true }]);
      drv.notify(RX);
      for (const u of ring.takeUsed()) got.push(...ram.bytes.subarray(0x100000 + u.id * 0x1000, 0x100000 + u.id * 0x1000 + u.len));
      await tick();
    }
    expect(got.length).toBe(n);
    expect(got.every((b, i) => b === (i & 0xff))).toBe(true);
  });

  it('keeps pending input across a driver reset and a snapshot of the device', async () => {
    const { con, drv, post, t, ram } = rig();
    con.stream.write('keep me');
    await tick();
    drv.w32(0x70, 0);
    const state = t.exportState();
    expect((state.device as { input: string }).input).toBe(Buffer.from('keep me').toString('base64'));
    drv.init([16, 16]);
    post(RX, 0x90000n, 16);
    drv.notify(RX);
    expect(Buffer.from(ram.bytes.subarray(0x90000, 0x90007)).toString()).toBe('keep me');
    expect(() => con.importState({ input: 3, tx: null })).toThrow(TypeError);
  });
});
