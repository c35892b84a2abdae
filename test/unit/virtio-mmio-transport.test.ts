import { describe, expect, it } from 'vitest';
import {
  QueueError, VIRTIO_F, VIRTIO_INT, VIRTIO_MMIO, VIRTIO_STATUS, VirtioMmioTransport, featureBit,
  type VirtioActivation, type VirtioDevice,
} from '@kvmpool/devices';
import { FakeRam, MmioDriver, irqRecorder } from '../support/virtio.js';

const S = VIRTIO_STATUS;
const V1 = featureBit(VIRTIO_F.VERSION_1);

/** A test device: queue 0 echoes each chain's readable bytes into its writable ones; 8 bytes of config. */
class EchoDevice implements VirtioDevice {
  readonly deviceId = 42;
  readonly name = 'echo';
  readonly features = (1n << 3n) | (1n << 40n);
  readonly queueCount = 2;
  readonly queueMaxSize = 64;
  config = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
  ctx: VirtioActivation | undefined;
  resets = 0;
  processed: number[] = [];
  throwOnProcess: Error | undefined;
  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.config.subarray(offset, offset + data.length));
  }
  writeConfig(offset: number, data: Uint8Array): void {
    this.config.set(data.subarray(0, Math.max(0, this.config.length - offset)), offset);
  }
  activate(ctx: VirtioActivation): void {
    this.ctx = ctx;
  }
  process(index: number): void {
    this.processed.push(index);
    if (this.throwOnProcess) throw this.throwOnProcess;
    const q = this.ctx!.queues[index]!;
    for (let c = q.pop(); c; c = q.pop()) {
      const src = Buffer.concat(c.readable);
      let n = 0;
      for (const w of c.writable) {
        const k = Math.min(w.length, src.length - n);
        w.set(src.subarray(n, n + k));
        n += k;
      }
      q.push(c.head, n);
    }
  }
  reset(): void {
    this.resets++;
    this.ctx = undefined;
  }
  exportState(): unknown {
    return { config: [...this.config] };
  }
  importState(s: unknown): void {
    this.config = Uint8Array.from((s as { config: number[] }).config);
  }
}

function setup() {
  const ram = new FakeRam(1 << 20);
  const irq = irqRecorder();
  const dev = new EchoDevice();
  const t = new VirtioMmioTransport(dev, { ram, irq });
  const drv = new MmioDriver(t, ram);
  return { ram, irq, dev, t, drv };
}

describe('VirtioMmioTransport registers', () => {
  it('identifies itself as a modern virtio-mmio device', () => {
    const { drv, t } = setup();
    expect(VirtioMmioTransport.SIZE).toBe(0x1000);
    expect(VirtioMmioTransport.QUEUE_NOTIFY).toBe(0x50);
    expect(drv.r32(VIRTIO_MMIO.MAGIC_VALUE)).toBe(0x74726976);
    expect(drv.r32(VIRTIO_MMIO.VERSION)).toBe(2);
    expect(drv.r32(VIRTIO_MMIO.DEVICE_ID)).toBe(42);
    expect(drv.r32(VIRTIO_MMIO.VENDOR_ID)).not.toBe(0);
    expect(drv.deviceFeatures()).toBe((1n << 3n) | (1n << 40n) | V1 | featureBit(VIRTIO_F.EVENT_IDX) | featureBit(VIRTIO_F.INDIRECT_DESC));
    drv.w32(VIRTIO_MMIO.DEVICE_FEATURES_SEL, 2);
    expect(drv.r32(VIRTIO_MMIO.DEVICE_FEATURES)).toBe(0);
    drv.w32(VIRTIO_MMIO.QUEUE_SEL, 1);
    expect(drv.r32(VIRTIO_MMIO.QUEUE_NUM_MAX)).toBe(64);
    drv.w32(VIRTIO_MMIO.QUEUE_SEL, 2);
    expect(drv.r32(VIRTIO_MMIO.QUEUE_NUM_MAX)).toBe(0);
    expect(drv.r32(VIRTIO_MMIO.SHM_LEN_LOW)).toBe(0xffffffff);
    expect(t.name).toBe('virtio-echo');
  });

  it('reads 0 and ignores writes of the wrong width or alignment on the 32-bit registers, without throwing', () => {
    const { t, drv } = setup();
    for (const [offset, len] of [[0, 1], [0, 2], [1, 4], [0, 8], [0x70, 1], [0x72, 2]] as const) {
      const d = new Uint8Array(len).fill(0xaa);
      t.read(offset, d);
      expect([...d].every((b) => b === 0)).toBe(true);
    }
    t.write(0x70, Uint8Array.of(1));
    t.write(0x70, Uint8Array.of(1, 0));
    t.write(0x71, Uint8Array.of(1, 0, 0, 0));
    expect(drv.r32(0x70)).toBe(0);
    // Writes to read-only or reserved registers change nothing.
    drv.w32(VIRTIO_MMIO.MAGIC_VALUE, 0);
    drv.w32(0xf0, 123);
    expect(drv.r32(VIRTIO_MMIO.MAGIC_VALUE)).toBe(0x74726976);
    // Config space: any width; past the device's config reads 0; past the window is ignored.
    expect([...drv.config(2, 2)]).toEqual([3, 4]);
    expect([...drv.config(6, 4)]).toEqual([7, 8, 0, 0]);
    t.write(0x101, Uint8Array.of(9));
    expect([...drv.config(0, 2)]).toEqual([1, 9]);
    const far = new Uint8Array(4).fill(0xaa);
    t.read(0x1000, far);
    expect([...far]).toEqual([0, 0, 0, 0]);
  });
});

describe('VirtioMmioTransport feature negotiation and status', () => {
  it('accepts the offered features with VERSION_1 and reaches DRIVER_OK, activating the device', () => {
    const { drv, dev, t } = setup();
    const status = drv.init([8, 8], (o) => o & ~(1n << 40n));
    expect(status).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(dev.ctx?.features).toBe(t.negotiatedFeatures);
    expect(t.negotiatedFeatures & (1n << 40n)).toBe(0n);
    expect(dev.ctx?.queues.length).toBe(2);
  });

  it('refuses FEATURES_OK for bits not offered, or without VERSION_1, and then ignores DRIVER_OK', () => {
    for (const accept of [(o: bigint) => o | (1n << 5n), (o: bigint) => o & ~V1, () => 0n]) {
      const { drv, dev } = setup();
      const status = drv.init([8], accept);
      expect(status & S.FEATURES_OK).toBe(0);
      drv.w32(VIRTIO_MMIO.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.DRIVER_OK);
      expect(drv.r32(VIRTIO_MMIO.STATUS) & S.DRIVER_OK).toBe(0);
      expect(dev.ctx).toBeUndefined();
    }
  });

  it('takes DRIVER_OK in a later write that leaves out the FEATURES_OK bit already set', () => {
    const { drv, dev } = setup();
    drv.w32(VIRTIO_MMIO.STATUS, 0);
    drv.w32(VIRTIO_MMIO.STATUS, S.ACKNOWLEDGE | S.DRIVER);
    drv.setDriverFeatures(V1);
    drv.w32(VIRTIO_MMIO.STATUS, S.FEATURES_OK);
    drv.w32(VIRTIO_MMIO.STATUS, S.DRIVER_OK);
    expect(drv.r32(VIRTIO_MMIO.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(dev.ctx).toBeDefined();
  });

  it('freezes the driver features once FEATURES_OK is set', () => {
    const { drv, t } = setup();
    drv.init([8], () => V1);
    drv.setDriverFeatures(V1 | (1n << 3n));
    expect(t.negotiatedFeatures).toBe(V1);
  });

  it('resets everything on Status = 0', () => {
    const { drv, dev, irq, t } = setup();
    drv.init([8, 8]);
    drv.rings[0]!.chain(0, [{ addr: 0x80000n, len: 4 }, { addr: 0x81000n, len: 4, write: true }]);
    drv.notify(0);
    expect(irq.level()).toBe(true);
    drv.w32(VIRTIO_MMIO.STATUS, 0);
    expect(dev.resets).toBeGreaterThan(0);
    expect(drv.r32(VIRTIO_MMIO.STATUS)).toBe(0);
    expect(drv.r32(VIRTIO_MMIO.INTERRUPT_STATUS)).toBe(0);
    expect(irq.level()).toBe(false);
    drv.w32(VIRTIO_MMIO.QUEUE_SEL, 0);
    expect(drv.r32(VIRTIO_MMIO.QUEUE_READY)).toBe(0);
    expect(t.negotiatedFeatures).toBe(0n);
    // And it can be brought up again.
    expect(drv.init([8, 8]) & S.DRIVER_OK).toBe(S.DRIVER_OK);
  });
});

describe('VirtioMmioTransport queues and interrupts', () => {
  it('processes a notified queue, raises the used-buffer interrupt as a level, and lowers it on ACK', () => {
    const { drv, ram, irq, dev } = setup();
    drv.init([8, 8]);
    ram.bytes.set([5, 6, 7], 0x80000);
    drv.rings[0]!.chain(0, [{ addr: 0x80000n, len: 3 }, { addr: 0x81000n, len: 8, write: true }]);
    expect(irq.levels).toEqual([]);
    drv.notify(0);
    expect(dev.processed).toContain(0);
    expect(drv.rings[0]!.takeUsed()).toEqual([{ id: 0, len: 3 }]);
    expect([...ram.bytes.subarray(0x81000, 0x81003)]).toEqual([5, 6, 7]);
    expect(irq.levels).toEqual([true]);
    expect(drv.ack()).toBe(VIRTIO_INT.USED_BUFFER);
    expect(irq.levels).toEqual([true, false]);
    // A notify that finds nothing raises nothing.
    drv.notify(0);
    expect(irq.levels).toEqual([true, false]);
    // Notifies of unknown or unready queues are ignored.
    drv.notify(7);
    drv.notify(0xffff);
  });

  it('ignores queue programming while the queue is ready, and notifies before DRIVER_OK', () => {
    const { drv, dev, ram, t } = setup();
    drv.w32(VIRTIO_MMIO.STATUS, 1);
    drv.w32(VIRTIO_MMIO.QUEUE_NOTIFY, 0);
    expect(dev.processed).toEqual([]);
    drv.init([8, 8]);
    drv.w32(VIRTIO_MMIO.QUEUE_SEL, 0);
    drv.w32(VIRTIO_MMIO.QUEUE_DESC_LOW, 0x12340);
    drv.w32(VIRTIO_MMIO.QUEUE_NUM, 2);
    expect((t.exportState().queues[0]!).desc).toBe(String(drv.rings[0]!.desc));
    expect((t.exportState().queues[0]!).num).toBe(8);
    ram.bytes[0x80000] = 1;
    drv.rings[0]!.chain(0, [{ addr: 0x80000n, len: 1 }, { addr: 0x81000n, len: 1, write: true }]);
    drv.notify(0);
    expect(drv.rings[0]!.takeUsed()).toEqual([{ id: 0, len: 1 }]);
  });

  it('a QueueReady with a bad size or rings outside RAM sets DEVICE_NEEDS_RESET until the next reset', () => {
    const { drv, t } = setup();
    drv.w32(VIRTIO_MMIO.STATUS, 0);
    drv.w32(VIRTIO_MMIO.STATUS, 3);
    drv.setDriverFeatures(V1);
    drv.w32(VIRTIO_MMIO.STATUS, 3 | 8);
    drv.w32(VIRTIO_MMIO.QUEUE_SEL, 0);
    drv.w32(VIRTIO_MMIO.QUEUE_NUM, 6);
    drv.w32(VIRTIO_MMIO.QUEUE_READY, 1);
    expect(t.needsReset).toBe(true);
    expect(t.lastError).toBeInstanceOf(QueueError);
    expect(drv.r32(VIRTIO_MMIO.STATUS) & S.DEVICE_NEEDS_RESET).toBe(S.DEVICE_NEEDS_RESET);
    drv.w32(VIRTIO_MMIO.STATUS, 0);
    expect(t.needsReset).toBe(false);
    drv.w32(VIRTIO_MMIO.STATUS, 3);
    drv.setDriverFeatures(V1);
    drv.w32(VIRTIO_MMIO.STATUS, 3 | 8);
    drv.w32(VIRTIO_MMIO.QUEUE_NUM, 8);
    drv.w32(VIRTIO_MMIO.QUEUE_DESC_HIGH, 1); // 4 GiB: outside the 1 MiB RAM
    drv.w32(VIRTIO_MMIO.QUEUE_READY, 1);
    expect(t.lastError?.message).toMatch(/outside guest RAM/);
  });

  it('a malformed chain sets DEVICE_NEEDS_RESET, raises CONFIG_CHANGE, bumps ConfigGeneration and stops processing', () => {
    const { drv, dev, irq, t } = setup();
    drv.init([8, 8]);
    const gen = drv.r32(VIRTIO_MMIO.CONFIG_GENERATION);
    drv.rings[0]!.setDesc(0, { addr: 0x80000n, len: 1, flags: 1, next: 0 });
    drv.rings[0]!.offer(0);
    expect(() => drv.notify(0)).not.toThrow();
    expect(t.needsReset).toBe(true);
    expect(t.lastError?.message).toMatch(/loop/);
    expect(drv.r32(VIRTIO_MMIO.STATUS) & S.DEVICE_NEEDS_RESET).toBe(S.DEVICE_NEEDS_RESET);
    expect(drv.r32(VIRTIO_MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_INT.CONFIG_CHANGE);
    expect(drv.r32(VIRTIO_MMIO.CONFIG_GENERATION)).toBe(gen + 1);
    expect(irq.level()).toBe(true);
    const n = dev.processed.length;
    drv.notify(0);
    drv.notify(1);
    dev.ctx!.kick(1);
    expect(dev.processed.length).toBe(n);
    // The driver's status writes cannot clear the device's bit; a reset does.
    drv.w32(VIRTIO_MMIO.STATUS, 0xf);
    expect(drv.r32(VIRTIO_MMIO.STATUS) & S.DEVICE_NEEDS_RESET).toBe(S.DEVICE_NEEDS_RESET);
    drv.w32(VIRTIO_MMIO.STATUS, 0);
    expect(drv.r32(VIRTIO_MMIO.STATUS)).toBe(0);
  });

  it('rethrows a device-model bug from a notify (after marking the device), but never from a kick', () => {
    const { drv, dev, t } = setup();
    drv.init([8, 8]);
    dev.throwOnProcess = new TypeError('bug');
    expect(() => drv.notify(0)).toThrow('bug');
    expect(t.needsReset).toBe(true);
    drv.w32(VIRTIO_MMIO.STATUS, 0);
    drv.init([8, 8]);
    expect(() => dev.ctx!.kick(0)).not.toThrow();
    expect(t.lastError?.message).toBe('bug');
  });

  it('bumps ConfigGeneration and raises CONFIG_CHANGE when the device says its config changed', () => {
    const { drv, dev, irq } = setup();
    drv.init([8, 8]);
    const gen = drv.r32(VIRTIO_MMIO.CONFIG_GENERATION);
    dev.ctx!.configChanged();
    expect(drv.r32(VIRTIO_MMIO.CONFIG_GENERATION)).toBe(gen + 1);
    expect(drv.r32(VIRTIO_MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_INT.CONFIG_CHANGE);
    expect(irq.level()).toBe(true);
    drv.w32(VIRTIO_MMIO.INTERRUPT_ACK, VIRTIO_INT.CONFIG_CHANGE);
    expect(irq.level()).toBe(false);
  });

  it('takes a kick made from inside process() after it returns, not re-entrantly', () => {
    const { drv, dev } = setup();
    drv.init([8, 8]);
    expect(dev.processed).toEqual([0, 1]); // DRIVER_OK looks at every ready queue once
    dev.processed = [];
    let depth = 0;
    let maxDepth = 0;
    let kicks = 0;
    const orig = dev.process.bind(dev);
    dev.process = (i: number) => {
      depth++;
      maxDepth = Math.max(maxDepth, depth);
      if (kicks++ < 3) dev.ctx!.kick(1);
      orig(i);
      depth--;
    };
    drv.notify(0);
    expect(maxDepth).toBe(1);
    expect(dev.processed).toEqual([0, 1, 1, 1]);
  });

  it('defers a device that kicks itself forever to later event-loop turns instead of spinning', async () => {
    const { drv, dev, t } = setup();
    drv.init([8, 8]);
    let calls = 0;
    dev.process = () => {
      calls++;
      dev.ctx!.kick(1);
    };
    drv.notify(0);
    expect(calls).toBe(9); // the notify's own call and 8 rounds of kicks
    await new Promise((r) => setImmediate(r));
    expect(calls).toBe(18);
    t.reset(); // cancels the deferred turn
    const after = calls;
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(calls).toBe(after);
  });

  it('takes at most one ring of chains per turn from a guest that refills as fast as the device drains', async () => {
    const { drv, dev, t } = setup();
    drv.init([8, 8]);
    const ring = drv.rings[0]!;
    ring.chain(0, [{ addr: 0x80000n, len: 1 }, { addr: 0x81000n, len: 1, write: true }]);
    let served = 0;
    const orig = dev.process.bind(dev);
    // The "guest" offers the chain again as soon as the device takes it (a vCPU racing the host).
    const q0 = () => dev.ctx!.queues[0]!;
    dev.process = (i: number) => {
      const q = q0();
      const pop = q.pop.bind(q);
      q.pop = () => {
        const c = pop();
        if (c) {
          served++;
          ring.offer(0);
        }
        return c;
      };
      try {
        orig(i);
      } finally {
        q.pop = pop;
      }
    };
    drv.notify(0);
    expect(served).toBe(8);
    await new Promise((r) => setImmediate(r));
    expect(served).toBe(16);
    t.reset();
    await new Promise((r) => setImmediate(r));
    expect(served).toBe(16);
  });

  it('with EVENT_IDX negotiated, interrupts follow used_event', () => {
    const { drv, irq } = setup();
    drv.init([8, 8]);
    const ring = drv.rings[0]!;
    ring.setUsedEvent(1);
    ring.chain(0, [{ addr: 0x80000n, len: 1 }, { addr: 0x81000n, len: 1, write: true }]);
    drv.notify(0);
    expect(irq.levels).toEqual([]);
    ring.chain(2, [{ addr: 0x80000n, len: 1 }, { addr: 0x81000n, len: 1, write: true }]);
    drv.notify(0);
    expect(irq.levels).toEqual([true]);
    expect(ring.availEvent()).toBe(2);
  });
});
