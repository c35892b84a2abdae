/**
 * The exit ring, deterministically: a real second thread is the producer wherever a wait
 * needs one; every wait of the test is bounded; nothing is asserted about time.
 */
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Bus, DOORBELL, Dispatcher, RECORD_KIND, RING, RingConsumer, RingProducer, createDoorbell, createRingBuffer, type Device,
  type RingRecord,
} from '@kvmpool/devices';
import { until, within } from '../support/bounded.js';

const FIXTURE = new URL('../fixtures/ring-producer.mjs', import.meta.url);
const BOUND = 10_000;
const REPLY_OFFSET = RING.HEADER_WORDS * 4;

interface Rig {
  ring: SharedArrayBuffer;
  doorbell: SharedArrayBuffer;
  ctl: Int32Array;
  header: Int32Array;
  bell: Int32Array;
  consumer: RingConsumer;
}

function rig(): Rig {
  const ring = createRingBuffer();
  const doorbell = createDoorbell();
  return {
    ring, doorbell, ctl: new Int32Array(new SharedArrayBuffer(16)), header: new Int32Array(ring, 0, RING.HEADER_WORDS),
    bell: new Int32Array(doorbell), consumer: new RingConsumer(ring, doorbell),
  };
}

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

/**
 * Starts the producer thread with `op`; `report()` is its next message. With `replySpinUs` its
 * waits for answers spin first, whatever the host's load (KVMPOOL_SPIN=force).
 */
function producer(r: Rig, op: string, n = 0, replySpinUs = 0): { worker: Worker; report: () => Promise<Record<string, unknown>> } {
  const env = replySpinUs > 0 ? { ...process.env, KVMPOOL_SPIN: 'force' } : process.env;
  const worker = new Worker(FIXTURE, { env, workerData: { op, ring: r.ring, doorbell: r.doorbell, ctl: r.ctl.buffer, n, replySpinUs } });
  workers.push(worker);
  const queue: Record<string, unknown>[] = [];
  const waiters: ((m: Record<string, unknown>) => void)[] = [];
  worker.on('message', (m: Record<string, unknown>) => {
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  worker.on('error', (e) => {
    throw e;
  });
  const report = (): Promise<Record<string, unknown>> => {
    const m = queue.shift();
    return within(m ? Promise.resolve(m) : new Promise((res) => waiters.push(res)), BOUND, `producer ${op}`);
  };
  return { worker, report };
}

const value = (d: Uint8Array): number => new DataView(d.buffer, d.byteOffset, d.length).getUint32(0, true);

function drainValues(r: Rig): RingRecord[] {
  const got: RingRecord[] = [];
  r.consumer.drain((rec) => got.push({ ...rec, data: rec.data.slice() }));
  return got;
}

describe('exit ring', () => {
  it('a full ring makes the producer wait; it goes on, in order, once the consumer drains', async () => {
    const r = rig();
    const total = RING.SLOTS + 40;
    const p = producer(r, 'fill', total);
    await until(() => r.consumer.pending() === RING.SLOTS && Atomics.load(r.header, RING.PRODUCER_WAITING) === 1, BOUND, 'a full ring');
    // The producer waits: nothing beyond the ring's size was written.
    expect(r.consumer.pending()).toBe(RING.SLOTS);
    const got: number[] = [];
    while (got.length < total) {
      for (const rec of drainValues(r)) got.push(value(rec.data));
      if (got.length < total) await until(() => r.consumer.pending() > 0, BOUND, 'more records');
    }
    expect(got).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(await p.report()).toEqual({ outcome: 'done' });
  });

  it('TAIL and HEAD wrap at 2^32 and the sequence skips 0 when it wraps', () => {
    const r = rig();
    Atomics.store(r.header, RING.TAIL, -3);
    Atomics.store(r.header, RING.HEAD, -3);
    Atomics.store(r.bell, DOORBELL.SEQ, -3);
    const p = new RingProducer(r.ring, r.doorbell);
    for (let i = 0; i < 6; i++) expect(p.post(RECORD_KIND.IO_OUT, 0x3f0n, 1, Uint8Array.of(i), () => 'go-on')).toBe('done');
    expect(r.consumer.pending()).toBe(6);
    const got = drainValues(r);
    expect(got.map((g) => g.data[0])).toEqual([0, 1, 2, 3, 4, 5]);
    // -2, -1, (0 skipped), 1, 2, 3, 4 as u32
    expect(got.map((g) => g.seq)).toEqual([0xfffffffe, 0xffffffff, 1, 2, 3, 4]);
    expect(Atomics.load(r.header, RING.TAIL)).toBe(3);
    expect(r.consumer.pending()).toBe(0);
  });

  it('a read numbered after the sequence wraps to 0 waits for its own answer, not the ring\'s initial REPLY_SEQ', async () => {
    const r = rig();
    Atomics.store(r.bell, DOORBELL.SEQ, -1); // the next number would be 0
    new Uint8Array(r.ring, REPLY_OFFSET, 4).fill(0xaa); // what a stale reply would hand out
    const p = producer(r, 'request');
    await until(() => r.consumer.pending() === 1, BOUND, 'the read');
    let seq = 0;
    r.consumer.drain((rec) => {
      seq = rec.seq;
      rec.data.set([1, 2, 3, 4]);
    });
    expect(seq).not.toBe(0);
    r.consumer.reply(seq);
    expect(await p.report()).toEqual({ ok: true, data: [1, 2, 3, 4] });
  });

  it('string I/O longer than a record is split over records, in order, that reassemble to the access', () => {
    const r = rig();
    const p = new RingProducer(r.ring, r.doorbell);
    const data = Uint8Array.from({ length: 200 }, (_, i) => i);
    expect(p.post(RECORD_KIND.IO_OUT, 0x3f8n, 1, data, () => 'go-on')).toBe('done');
    const got = drainValues(r);
    expect(got.map((g) => g.data.length)).toEqual([48, 48, 48, 48, 8]);
    expect(got.every((g) => g.address === 0x3f8n && g.size === 1 && g.kind === RECORD_KIND.IO_OUT)).toBe(true);
    expect(got.map((g, i) => g.seq - got[0]!.seq - i)).toEqual([0, 0, 0, 0, 0]);
    expect(Uint8Array.from(got.flatMap((g) => [...g.data]))).toEqual(data);
    // A post that needs more records than the ring holds is refused, not half made.
    expect(() => p.post(RECORD_KIND.IO_OUT, 0x3f8n, 1, new Uint8Array(RING.RECORD_DATA * RING.SLOTS + 1), () => 'go-on')).toThrow(RangeError);
    expect(r.consumer.pending()).toBe(0);
  });

  it('the doorbell never loses a wake-up: a sleeping dispatcher gets every one of 3000 writes', async () => {
    const r = rig();
    const values: number[] = [];
    const dev: Device = { name: 'sink', read: (_o, d) => void d.fill(0), write: (_o, d) => void values.push(value(d)) };
    const pio = new Bus('pio');
    pio.register(0x3f0, 4, dev); // the producer's writes are 4 bytes wide: the range holds all of each
    const dispatcher = new Dispatcher(pio, new Bus('mmio'), r.doorbell);
    dispatcher.addRing(0, r.ring, r.doorbell);
    dispatcher.start();
    try {
      const p = producer(r, 'writes', 3000);
      expect(await p.report()).toEqual({ outcome: 'done' });
      await until(() => values.length === 3000, BOUND, 'every write delivered');
      expect(values).toEqual(Array.from({ length: 3000 }, (_, i) => i));
      expect(dispatcher.stats.wakeups).toBeGreaterThan(0); // it did go to sleep on the doorbell
    } finally {
      await dispatcher.stop();
    }
  });

  it.each([0, 100])('a pause seen while waiting for a reply leaves the read posted; waiting again gets the answer (replySpinUs %i)', async (spinUs) => {
    const r = rig();
    const p = producer(r, 'await-read', 0, spinUs);
    await until(() => r.consumer.pending() === 1, BOUND, 'the read');
    Atomics.store(r.ctl, 0, 1); // pause
    RingProducer.wake(r.ring);
    const paused = await p.report();
    expect(paused.outcome).toBe('pause');
    let seq = 0;
    r.consumer.drain((rec) => {
      seq = rec.seq;
      rec.data.set([9, 8, 7, 6]);
    });
    expect(seq).toBe(paused.seq);
    r.consumer.reply(seq); // answered while "paused"
    Atomics.store(r.ctl, 0, 0);
    p.worker.postMessage('again');
    expect(await p.report()).toMatchObject({ outcome: 'done', data: [9, 8, 7, 6] });
  });

  it('a producer that spins for its answers gets each read\'s own answer, whether it comes during the spin or after', async () => {
    const r = rig();
    const n = 200;
    const p = producer(r, 'reads', n, 100);
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let answered = 0; answered < n; answered++) {
      await until(() => r.consumer.pending() === 1, BOUND, `read ${answered}`);
      let seq = 0;
      r.consumer.drain((rec) => {
        seq = rec.seq;
        new DataView(rec.data.buffer, rec.data.byteOffset, 4).setUint32(0, rec.seq, true);
      });
      // Now and then answer only after the producer's spin (100 µs) has run out and it sleeps.
      if (answered % 5 === 0) Atomics.wait(nap, 0, 0, 1);
      r.consumer.reply(seq);
    }
    expect(await p.report()).toEqual({ outcome: 'done', wrong: 0 });
  });

  it('replySpinUs is checked: 0 to MAX_SPIN_US µs', () => {
    const r = rig();
    for (const bad of [-1, 101, Number.NaN, Infinity]) {
      expect(() => new RingProducer(r.ring, r.doorbell, { replySpinUs: bad })).toThrow(/replySpinUs must be a number of µs from 0 to 100/);
    }
    expect(() => new RingProducer(r.ring, r.doorbell, { replySpinUs: 100 })).not.toThrow();
  });

  it('a stop seen while waiting for ring room or for the coalesced lock gives up with nothing posted', async () => {
    const r = rig();
    const full = producer(r, 'fill', RING.SLOTS + 1);
    await until(() => Atomics.load(r.header, RING.PRODUCER_WAITING) === 1, BOUND, 'a full ring');
    const tail = Atomics.load(r.header, RING.TAIL);
    Atomics.store(r.ctl, 0, 2); // stop
    RingProducer.wake(r.ring);
    expect(await full.report()).toEqual({ outcome: 'stop' });
    expect(Atomics.load(r.header, RING.TAIL)).toBe(tail);
    expect(r.consumer.pending()).toBe(RING.SLOTS);

    const r2 = rig();
    Atomics.store(r2.bell, DOORBELL.COALESCED_LOCK, 1); // someone holds the lock for good
    const lock = producer(r2, 'lock');
    Atomics.store(r2.ctl, 0, 2);
    RingProducer.wake(r2.ring, r2.doorbell);
    expect(await lock.report()).toEqual({ outcome: 'stop' });
    expect(Atomics.load(r2.bell, DOORBELL.COALESCED_LOCK)).toBe(1);
  });
});
