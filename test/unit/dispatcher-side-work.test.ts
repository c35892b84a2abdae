// Dispatcher.sideWork (the virtio notify watcher's flags): served in the loop after the rings, woken by a
// doorbell ring from another party, and a failure in it becomes a DeviceAccessError, not a dead loop.
import { describe, expect, it } from 'vitest';
import { Bus, DOORBELL, DeviceAccessError, Dispatcher, RECORD_KIND, RingProducer, createDoorbell, createRingBuffer, type Device } from '@kvmpool/devices';

const goOn = (): 'go-on' => 'go-on';

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('not reached');
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('Dispatcher side work', () => {
  it('runs after the records posted before the doorbell rang, and only while pending', async () => {
    const order: string[] = [];
    const dev: Device = { name: 'dev', read: (_o, d) => void d.fill(0), write: (o) => void order.push(`write ${o}`) };
    const pio = new Bus('pio');
    pio.register(0x100, 4, dev);
    const bell = createDoorbell();
    const ring = createRingBuffer();
    const d = new Dispatcher(pio, new Bus('mmio'), bell, { maxSpinUs: 0 });
    d.addRing(0, ring, bell);
    let flag = 0;
    let runs = 0;
    d.sideWork = {
      name: 'side',
      pending: () => flag !== 0,
      run: () => {
        runs++;
        order.push('side');
        flag = 0;
        return 1;
      },
    };
    d.start();
    try {
      await new Promise((r) => setTimeout(r, 20));
      expect(runs).toBe(0); // nothing pending: never run
      const producer = new RingProducer(ring, bell);
      expect(producer.post(RECORD_KIND.IO_OUT, 0x101n, 1, Uint8Array.of(1), goOn)).toBe('done');
      flag = 1;
      Atomics.add(new Int32Array(bell), DOORBELL.COUNT, 1);
      Atomics.notify(new Int32Array(bell), DOORBELL.COUNT);
      await until(() => runs === 1);
      expect(order).toEqual(['write 1', 'side']);
    } finally {
      await d.stop();
    }
  });

  it('a throwing side work is reported as a DeviceAccessError and the loop goes on', async () => {
    const bell = createDoorbell();
    const d = new Dispatcher(new Bus('pio'), new Bus('mmio'), bell, { maxSpinUs: 0 });
    const errors: DeviceAccessError[] = [];
    d.onDeviceError = (e) => errors.push(e);
    let flag = 1;
    d.sideWork = {
      name: 'side',
      pending: () => flag !== 0,
      run: () => {
        flag = 0;
        throw new Error('boom');
      },
    };
    d.start();
    try {
      await until(() => errors.length === 1);
      expect(errors[0]).toBeInstanceOf(DeviceAccessError);
      expect(errors[0]!.message).toContain('side');
      expect(errors[0]!.message).toContain('boom');
    } finally {
      await d.stop();
    }
  });
});
