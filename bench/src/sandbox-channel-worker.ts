/**
 * Worker for the `sandbox` benchmark's --profile breakdown: a request/reply channel over one
 * SharedArrayBuffer (no MessagePort, no structured clone). The worker blocks in Atomics.wait
 * for a request, sums the input bytes, writes 8 bytes of output and bumps the reply word; the
 * main thread waits for it with Atomics.waitAsync. What a leaner pool transport would cost.
 */
import { workerData } from 'node:worker_threads';
import { CHANNEL } from './sandbox-channel.js';

const sab = (workerData as { sab: SharedArrayBuffer }).sab;
const ctl = new Int32Array(sab, 0, CHANNEL.WORDS);
const bytes = new Uint8Array(sab);
const out = new DataView(sab, CHANNEL.OUTPUT, 8);

let seen = 0;
for (;;) {
  Atomics.wait(ctl, CHANNEL.REQUEST, seen);
  if (Atomics.load(ctl, CHANNEL.STOP) !== 0) break;
  const req = Atomics.load(ctl, CHANNEL.REQUEST);
  if (req === seen) continue;
  seen = req;
  const len = Atomics.load(ctl, CHANNEL.LENGTH);
  let s = 0;
  for (let i = 0; i < len; i++) s += bytes[CHANNEL.INPUT + i]!;
  out.setBigUint64(0, BigInt(s), true);
  Atomics.store(ctl, CHANNEL.REPLY, seen);
  Atomics.notify(ctl, CHANNEL.REPLY);
}
