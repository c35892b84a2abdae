/**
 * Worker for the `sandbox` benchmark's --profile breakdown: a request/reply channel over one
 * SharedArrayBuffer (no MessagePort, no structured clone). The worker blocks in Atomics.wait
 * for a request, runs it, writes up to 8 bytes of output (and the time the work took, as a
 * float64 of µs) and bumps the reply word; the main thread waits with Atomics.waitAsync. What
 * a leaner pool transport would cost. The work: summing the input in JS, or — with `vm` in
 * workerData — SandboxVm.call('sum') on a VM made in this thread, as the pool worker does.
 */
import { workerData } from 'node:worker_threads';
import { SandboxVm, parseElf } from '@kvmpool/core/internal';
import { CHANNEL, type ChannelWorkerData } from './sandbox-channel.js';

const data = workerData as ChannelWorkerData;
const ctl = new Int32Array(data.sab, 0, CHANNEL.WORDS);
const bytes = new Uint8Array(data.sab);
const out = new DataView(data.sab, CHANNEL.OUTPUT, 16);
const vm = data.vm ? SandboxVm.create({ image: parseElf(data.vm.elf, 'bench-guest.elf'), memory: data.vm.memory, inputSize: data.vm.inputSize, outputSize: data.vm.outputSize }) : undefined;
const control = new Int32Array(new SharedArrayBuffer(8));

let seen = 0;
for (;;) {
  Atomics.wait(ctl, CHANNEL.REQUEST, seen);
  if (Atomics.load(ctl, CHANNEL.STOP) !== 0) break;
  const req = Atomics.load(ctl, CHANNEL.REQUEST);
  if (req === seen) continue;
  seen = req;
  const len = Atomics.load(ctl, CHANNEL.LENGTH);
  const t0 = performance.now();
  if (vm) {
    const r = vm.call('sum', bytes.slice(CHANNEL.INPUT, CHANNEL.INPUT + len), { timeoutMs: 0, control });
    bytes.set(r.output.subarray(0, 8), CHANNEL.OUTPUT);
  } else {
    let s = 0;
    for (let i = 0; i < len; i++) s += bytes[CHANNEL.INPUT + i]!;
    out.setBigUint64(0, BigInt(s), true);
  }
  out.setFloat64(8, (performance.now() - t0) * 1000, true);
  Atomics.store(ctl, CHANNEL.REPLY, seen);
  Atomics.notify(ctl, CHANNEL.REPLY);
}
vm?.close();
