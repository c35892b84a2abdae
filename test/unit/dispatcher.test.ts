/**
 * The dispatcher without KVM: producers post into real exit rings (on this thread, or from a
 * worker thread standing in for a vCPU where a read must wait for its answer), and the
 * dispatcher hands the records to devices on its buses.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Worker } from 'node:worker_threads';
import {
  Bus, DOORBELL, DeviceAccessError, Dispatcher, RECORD_KIND, RingProducer, createDoorbell, createRingBuffer, type Device,
} from '@kvmpool/devices';

const goOn = (): 'go-on' => 'go-on';
const PORT = 0x100;

interface Write {
  source: number | undefined;
  offset: number;
  data: number[];
}

/** Logs writes; reads answer with `answer(offset, data)`. */
class Probe implements Device {
  readonly writes: Write[] = [];
  constructor(
    readonly name: string,
    readonly answer: (offset: number, data: Uint8Array) => void | Promise<void> = (o, d) => void d.fill(o),
  ) {}
  read(offset: number, data: Uint8Array): void | Promise<void> {
    return this.answer(offset, data);
  }
  write(offset: number, data: Uint8Array, source?: number): void {
    this.writes.push({ source, offset, data: [...data] });
  }
}

function setup(rings: number): { dispatcher: Dispatcher; doorbell: SharedArrayBuffer; buffers: SharedArrayBuffer[]; producers: RingProducer[]; pio: Bus; errors: DeviceAccessError[] } {
  const doorbell = createDoorbell();
  const pio = new Bus('pio');
  const dispatcher = new Dispatcher(pio, new Bus('mmio'), doorbell);
  const errors: DeviceAccessError[] = [];
  dispatcher.onDeviceError = (e) => void errors.push(e);
  const buffers: SharedArrayBuffer[] = [];
  const producers: RingProducer[] = [];
  for (let i = 0; i < rings; i++) {
    const ring = createRingBuffer();
    dispatcher.addRing(i, ring, doorbell);
    buffers.push(ring);
    producers.push(new RingProducer(ring, doorbell));
  }
  return { dispatcher, doorbell, buffers, producers, pio, errors };
}

const workers: Worker[] = [];
const dispatchers: Dispatcher[] = [];
afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

/** A worker thread posting into `ring` as a vCPU would. */
function vcpuThread(ring: SharedArrayBuffer, doorbell: SharedArrayBuffer): {
  read: (address: number, size: number, length: number) => Promise<number[]>;
  post: (address: number, size: number, data: number[]) => Promise<void>;
} {
  const w = new Worker(new URL('../fixtures/ring-producer-worker.mjs', import.meta.url), { workerData: { ring, doorbell } });
  workers.push(w);
  const next = (): Promise<{ op: string; data?: number[] }> =>
    new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  return {
    read: async (address, size, length) => {
      const answer = next();
      w.postMessage({ op: 'read', kind: RECORD_KIND.IO_IN, address, size, length });
      return (await answer).data!;
    },
    post: async (address, size, data) => {
      const done = next();
      w.postMessage({ op: 'post', kind: RECORD_KIND.IO_OUT, address, size, data });
      await done;
    },
  };
}

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const settle = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Dispatcher order', () => {
  it('handles records from several rings in the VM-wide order they were posted, across the 2^31 and 2^32 wraps of the sequence', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 200 }),
        fc.oneof(fc.constantFrom(-100, 0x7fff_ffff - 100, -1, 0x7fff_ffff), fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff })),
        (order, start) => {
          const { dispatcher, doorbell, producers, pio } = setup(3);
          const dev = new Probe('dev');
          pio.register(PORT, 4, dev);
          new Int32Array(doorbell)[DOORBELL.SEQ] = start;
          order.forEach((ring, i) => producers[ring]!.post(RECORD_KIND.IO_OUT, BigInt(PORT), 2, Uint8Array.of(i & 0xff, i >> 8), goOn));
          expect(dispatcher.drainAll()).toBe(order.length);
          expect(dev.writes.map((w) => w.data[0]! | (w.data[1]! << 8))).toEqual(order.map((_, i) => i));
          expect(dev.writes.map((w) => w.source)).toEqual(order);
        },
      ),
    );
  });

  it('splits string I/O into items of the access size, in order, and counts unmapped ones', () => {
    const { dispatcher, producers, pio } = setup(1);
    const dev = new Probe('dev');
    pio.register(PORT, 2, dev);
    producers[0]!.post(RECORD_KIND.IO_OUT, BigInt(PORT), 2, Uint8Array.of(1, 2, 3, 4, 5, 6), goOn);
    producers[0]!.post(RECORD_KIND.IO_OUT, BigInt(PORT + 1), 2, Uint8Array.of(7, 8), goOn); // straddles the end
    expect(dispatcher.drainAll()).toBe(2);
    expect(dev.writes.map((w) => w.data)).toEqual([[1, 2], [3, 4], [5, 6]]);
    expect(dispatcher.stats).toMatchObject({ records: 2, writes: 2, unmapped: 1 });
  });
});

describe('Dispatcher reads', () => {
  it('publishes the answer to a read a device answers with a promise only after it settles', async () => {
    const { dispatcher, buffers, doorbell, pio, errors } = setup(1);
    dispatchers.push(dispatcher);
    const settleRead: (() => void)[] = [];
    pio.register(PORT, 4, new Probe('slow', (_o, data) => new Promise<void>((resolve) => settleRead.push(() => {
      data.set([0xde, 0xad, 0xbe, 0xef]);
      resolve();
    }))));
    dispatcher.start();
    const cpu = vcpuThread(buffers[0]!, doorbell);
    let answer: number[] | undefined;
    const reading = cpu.read(PORT, 4, 4).then((a) => (answer = a));
    await until(() => dispatcher.pendingReplies === 1, 'the read to reach the device');
    await settle();
    expect(answer).toBeUndefined(); // the vCPU is still waiting
    expect(dispatcher.pendingReplies).toBe(1);
    settleRead[0]!();
    await reading;
    expect(answer).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(dispatcher.pendingReplies).toBe(0);
    expect(errors).toEqual([]);
  });

  it('answers a string read only after every item the device answers later has settled, whatever their order', async () => {
    const { dispatcher, buffers, doorbell, pio } = setup(1);
    dispatchers.push(dispatcher);
    const pending: { data: Uint8Array; resolve: () => void }[] = [];
    let n = 0;
    pio.register(PORT, 1, new Probe('slow', (_o, data) => new Promise<void>((resolve) => pending.push({ data, resolve: () => {
      data[0] = 0x41 + pending.findIndex((p) => p.data === data);
      n++;
      resolve();
    } }))));
    dispatcher.start();
    const cpu = vcpuThread(buffers[0]!, doorbell);
    let answer: number[] | undefined;
    const reading = cpu.read(PORT, 1, 3).then((a) => (answer = a)); // rep insb, 3 items
    await until(() => pending.length === 3, 'three item reads');
    pending[2]!.resolve(); // the last item first
    await settle();
    expect(answer).toBeUndefined();
    pending[1]!.resolve();
    await settle();
    expect(answer).toBeUndefined();
    pending[0]!.resolve();
    await reading;
    expect(n).toBe(3);
    expect(answer).toEqual([0x41, 0x42, 0x43]);
    expect(dispatcher.pendingReplies).toBe(0);
  });

  it('holds a string read whose first item rejects until the others settle, then answers it all-ones', async () => {
    const { dispatcher, buffers, doorbell, pio, errors } = setup(1);
    dispatchers.push(dispatcher);
    const items: { resolve: () => void; reject: (e: Error) => void }[] = [];
    pio.register(PORT, 1, new Probe('slow', () => new Promise<void>((resolve, reject) => void items.push({ resolve, reject }))));
    dispatcher.start();
    const cpu = vcpuThread(buffers[0]!, doorbell);
    let answer: number[] | undefined;
    const reading = cpu.read(PORT, 1, 2).then((a) => (answer = a));
    await until(() => items.length === 2, 'two item reads');
    items[0]!.reject(new Error('first item failed'));
    await settle();
    expect(answer).toBeUndefined(); // the second item may still write into the reply
    items[1]!.resolve();
    await reading;
    expect(answer).toEqual([0xff, 0xff]);
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/first item failed/)]);
  });

  it('answers all-ones and reports the device when a read promise rejects', async () => {
    const { dispatcher, buffers, doorbell, pio, errors } = setup(1);
    dispatchers.push(dispatcher);
    pio.register(PORT, 4, new Probe('flaky', () => Promise.reject(new Error('backend gone'))));
    dispatcher.start();
    const cpu = vcpuThread(buffers[0]!, doorbell);
    expect(await cpu.read(PORT, 4, 4)).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(DeviceAccessError);
    expect(errors[0]).toMatchObject({ device: 'flaky', vcpu: 0, code: 'ERR_KVMPOOL_DEVICE' });
    expect(errors[0]!.message).toMatch(/backend gone/);
    expect(dispatcher.pendingReplies).toBe(0);
  });

  it('answers all-ones when a device throws, reports it, and goes on with the records behind it', async () => {
    const { dispatcher, buffers, doorbell, pio, errors } = setup(2);
    dispatchers.push(dispatcher);
    const good = new Probe('good');
    const bad: Device = {
      name: 'bad',
      read: () => {
        throw new Error('read broke');
      },
      write: () => {
        throw new Error('write broke');
      },
    };
    pio.register(PORT, 4, bad);
    pio.register(PORT + 4, 4, good);
    dispatcher.start();
    const cpu = vcpuThread(buffers[1]!, doorbell);
    expect(await cpu.read(PORT, 2, 2)).toEqual([0xff, 0xff]);
    expect(errors.map((e) => [e.device, e.vcpu])).toEqual([['bad', 1]]);
    await cpu.post(PORT, 1, [1]);
    await cpu.post(PORT + 4, 1, [2]);
    expect(await cpu.read(PORT + 4, 1, 1)).toEqual([0]); // the good device answers its offset
    expect(good.writes).toEqual([{ source: 1, offset: 0, data: [2] }]);
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/read broke/), expect.stringMatching(/bad failed on write of 1 at pio 0x100 from vCPU 1: write broke/)]);
  });
});

describe('Dispatcher loop', () => {
  it('sleeps on the doorbell when idle, without spinning, and wakes for a record posted from another thread', async () => {
    const { dispatcher, buffers, doorbell, pio } = setup(1);
    dispatchers.push(dispatcher);
    const dev = new Probe('dev');
    pio.register(PORT, 1, dev);
    const bell = new Int32Array(doorbell);
    dispatcher.start();
    await until(() => Atomics.load(bell, DOORBELL.SLEEPING) === 1, 'the dispatcher to sleep');
    const idle = { ...dispatcher.stats };
    await settle(50);
    expect(dispatcher.stats).toEqual(idle); // asleep: no passes, no wake-ups
    const cpu = vcpuThread(buffers[0]!, doorbell);
    await cpu.post(PORT, 1, [0x61]);
    await until(() => dev.writes.length === 1, 'the write');
    expect(dispatcher.stats.wakeups).toBe(idle.wakeups + 1);
    await until(() => Atomics.load(bell, DOORBELL.SLEEPING) === 1, 'the dispatcher to sleep again');
  });

  it('stop() handles every record posted before it, then dispatches no more', async () => {
    const { dispatcher, producers, pio, doorbell } = setup(2);
    const dev = new Probe('dev');
    pio.register(PORT, 1, dev);
    dispatcher.start();
    await until(() => Atomics.load(new Int32Array(doorbell), DOORBELL.SLEEPING) === 1, 'the dispatcher to sleep');
    for (let i = 0; i < 300; i++) producers[i % 2]!.post(RECORD_KIND.IO_OUT, BigInt(PORT), 1, Uint8Array.of(i & 0xff), goOn);
    const stopping = dispatcher.stop(); // called before the loop has had a turn
    await stopping;
    expect(dev.writes.map((w) => w.data[0])).toEqual(Array.from({ length: 300 }, (_, i) => i & 0xff));
    producers[0]!.post(RECORD_KIND.IO_OUT, BigInt(PORT), 1, Uint8Array.of(1), goOn);
    await settle();
    expect(dev.writes).toHaveLength(300);
    await dispatcher.stop(); // idempotent
  });
});
