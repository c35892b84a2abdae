/**
 * Why the virtio notify watcher wakes the main thread with Atomics: a main → worker → main round trip
 * where the worker answers with `Atomics.notify` (the main thread waits in `Atomics.waitAsync`, as
 * NotifyWatcher does) or with `postMessage`. The worker blocks in `Atomics.wait` for each request.
 */
import { Worker } from 'node:worker_threads';
import type { BenchCase } from './harness.js';

/** Round trips per iteration (each one a sample). */
export const ROUND_TRIPS = 100;

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const w = new Int32Array(workerData);
let seen = 0;
for (;;) {
  Atomics.wait(w, 1, seen);
  seen = Atomics.load(w, 1);
  if (Atomics.load(w, 3) === 1) break;
  if (Atomics.load(w, 2) === 0) { Atomics.add(w, 0, 1); Atomics.notify(w, 0); } else parentPort.postMessage(0);
}`;

/** The two cases and the worker's end. Shared words: 0 answers, 1 requests, 2 answer by message, 3 stop. */
export interface WakeProbe {
  cases: BenchCase[];
  close(): Promise<void>;
}

export async function wakeProbe(): Promise<WakeProbe> {
  const sab = new SharedArrayBuffer(16);
  const w = new Int32Array(sab);
  const worker = new Worker(WORKER, { eval: true, workerData: sab });
  await new Promise((resolve) => worker.once('online', resolve));
  const ask = (): void => {
    Atomics.add(w, 1, 1);
    Atomics.notify(w, 1);
  };
  const atomics = async (): Promise<number> => {
    const seen = Atomics.load(w, 0);
    const t0 = process.hrtime.bigint();
    ask();
    const r = Atomics.waitAsync(w, 0, seen);
    if (r.async) await r.value;
    return Number(process.hrtime.bigint() - t0);
  };
  const message = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const got = new Promise((resolve) => worker.once('message', resolve));
    ask();
    await got;
    return Number(process.hrtime.bigint() - t0);
  };
  const batch = (mode: number, once: () => Promise<number>) => async (n: number): Promise<number[]> => {
    Atomics.store(w, 2, mode);
    const out: number[] = [];
    for (let i = 0; i < n * ROUND_TRIPS; i++) out.push(await once());
    return out;
  };
  return {
    cases: [
      { id: 'wake-atomics', label: 'main → worker → main, answered with Atomics.notify, taken with Atomics.waitAsync', ratioVs: 'wake-postmessage', samplesPerIteration: ROUND_TRIPS, runBatch: batch(0, atomics) },
      { id: 'wake-postmessage', label: 'main → worker → main, answered with postMessage', samplesPerIteration: ROUND_TRIPS, runBatch: batch(1, message) },
    ],
    async close() {
      Atomics.store(w, 3, 1);
      ask();
      await worker.terminate();
    },
  };
}
