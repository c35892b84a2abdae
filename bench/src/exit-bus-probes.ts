/**
 * `exit-bus --profile`: probes of where an exit's time goes, each alternated with the others
 * over several rounds and reported as medians:
 * - a trivial ioctl (KVM_CHECK_EXTENSION) from C and through kvmpool (koffi + JS per call);
 * - decodeExit on a kvm_run mapping (JS per exit);
 * - K OUT exits: C; Vcpu.run() on the main thread; Vcpu.run() in a worker thread; and in the
 *   worker with one Atomics.notify per exit to a main thread asleep in Atomics.waitAsync (what
 *   the exit ring's doorbell costs the vCPU thread when the dispatcher sleeps);
 * - the wake-up latency of Atomics.waitAsync on the main thread after a worker's notify;
 * - K OUT exits each followed by a read round trip with the main thread (what bus-in does),
 *   as the exit ring does it (both sides sleep: futex wakes both ways), with the worker
 *   spinning for the reply, and with the worker spinning and the main thread kept awake.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { Kvm, decodeExit } from '@kvmpool/core/internal';
import type { CProcess } from './c-process.js';
import { formatNs, summarize, table } from './harness.js';
import { directVcpu } from './exit-bus-machines.js';
import { RT, type ProbeAnswer, type ProbeRequest } from './exit-bus-probe-protocol.js';

const now = (): bigint => process.hrtime.bigint();

class ProbeWorker {
  readonly worker = new Worker(new URL('./exit-bus-probe-worker.js', import.meta.url));
  #queue: { resolve: (a: ProbeAnswer) => void; reject: (e: Error) => void }[] = [];

  constructor() {
    this.worker.on('message', (m: { ok: boolean; answer?: ProbeAnswer; error?: string }) => {
      const w = this.#queue.shift();
      if (!w) return;
      if (m.ok && m.answer) w.resolve(m.answer);
      else w.reject(new Error(`probe worker: ${m.error ?? 'no answer'}`));
    });
    this.worker.on('error', (e) => {
      for (const w of this.#queue.splice(0)) w.reject(e);
    });
  }

  request(req: ProbeRequest): Promise<ProbeAnswer> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ resolve, reject });
      this.worker.postMessage(req);
    });
  }

  async close(): Promise<void> {
    await this.request({ op: 'close' }).catch(() => undefined);
    await this.worker.terminate();
  }
}

/** Sleeps in Atomics.waitAsync on word 0 of `bell` until `done()`, counting wake-ups; with `stamp`, records each wake-up's delay. */
async function sleeper(bell: Int32Array, done: () => boolean, stamp?: BigInt64Array, delays?: number[]): Promise<number> {
  let wakeups = 0;
  while (!done()) {
    const w = Atomics.waitAsync(bell, 0, Atomics.load(bell, 0), 20);
    if (!w.async) continue;
    if ((await w.value) !== 'ok') continue;
    const t = now();
    wakeups++;
    if (stamp && delays) delays.push(Number(t - Atomics.load(stamp, 0)));
  }
  return wakeups;
}

function reply(w: Int32Array, seq: number): void {
  Atomics.store(w, RT.REP, seq);
  if (Atomics.load(w, RT.WORKER_SPINNING) === 0) Atomics.notify(w, RT.REP);
}

/** Answers round-trip requests like the dispatcher: sleeps in Atomics.waitAsync between them. */
async function sleepyResponder(w: Int32Array): Promise<void> {
  let handled = 0;
  for (;;) {
    const req = Atomics.load(w, RT.REQ);
    if (req !== handled) {
      handled = req;
      reply(w, handled);
      continue;
    }
    if (Atomics.load(w, RT.DONE) !== 0) return;
    Atomics.store(w, RT.MAIN_SLEEPING, 1);
    if (Atomics.load(w, RT.REQ) === handled && Atomics.load(w, RT.DONE) === 0) {
      const r = Atomics.waitAsync(w, RT.REQ, handled, 100);
      if (r.async) await r.value;
    }
    Atomics.store(w, RT.MAIN_SLEEPING, 0);
  }
}

/** Answers round-trip requests from an event loop kept turning (setImmediate): never asleep. */
async function hotResponder(w: Int32Array): Promise<void> {
  let handled = 0;
  while (Atomics.load(w, RT.DONE) === 0) {
    const req = Atomics.load(w, RT.REQ);
    if (req !== handled) {
      handled = req;
      reply(w, handled);
    } else {
      await yieldToEventLoop();
    }
  }
}

async function roundTrip(worker: ProbeWorker, k: number, spin: boolean, hot: boolean): Promise<number> {
  const words = new SharedArrayBuffer(RT.WORDS * 4);
  const w = new Int32Array(words);
  const responding = hot ? hotResponder(w) : sleepyResponder(w);
  const answer = await worker.request({ op: 'roundtrip', k, words, spin });
  await responding;
  return answer.ns / k;
}

type Series = Record<string, number[]>;

function push(s: Series, key: string, v: number): void {
  (s[key] ??= []).push(v);
}

export async function runProbes(kvm: Kvm, proc: CProcess, k: number, rounds = 7): Promise<void> {
  // A VM for the direct probes: vCPU 0 on this thread, vCPU 1 in the probe worker.
  const { vm, vcpu } = directVcpu(kvm);
  const worker = new ProbeWorker();
  try {
    await worker.request({ op: 'init', vmFd: vm.fd });

    const s: Series = {};
    const delays: number[] = [];
    const IOCTLS = 20_000;
    for (let r = 0; r <= rounds; r++) {
      const keep = r > 0; // round 0 warms up
      const [cIoctl] = await proc.requestNumbers(`IOCTL ${IOCTLS}`);
      let t0 = now();
      for (let i = 0; i < IOCTLS; i++) kvm.checkExtension('KVM_CAP_USER_MEMORY');
      const nodeIoctl = Number(now() - t0) / IOCTLS;

      const [cOut] = await proc.requestNumbers(`OUT ${k}`);
      t0 = now();
      for (let i = 0; i < k; i++) vcpu.run();
      const mainOut = Number(now() - t0) / k;
      const { view, bytes } = vcpu.runMapping;
      t0 = now();
      for (let i = 0; i < IOCTLS; i++) decodeExit(view, bytes);
      const decode = Number(now() - t0) / IOCTLS;

      const workerOut = (await worker.request({ op: 'direct', k })).ns / k;

      const bellBuf = new SharedArrayBuffer(16);
      const bell = new Int32Array(bellBuf, 0, 2);
      let finished = false;
      const sleeping = sleeper(bell, () => finished);
      const notified = await worker.request({ op: 'notify', k, bell: bellBuf });
      finished = true;
      const wakeups = await sleeping;

      const wakeBuf = new SharedArrayBuffer(16);
      let woke = false;
      const roundDelays: number[] = [];
      const waking = sleeper(new Int32Array(wakeBuf, 0, 2), () => woke, new BigInt64Array(wakeBuf, 8, 1), roundDelays);
      await worker.request({ op: 'wake', n: 50, bell: wakeBuf });
      woke = true;
      await waking;
      const rtSleep = await roundTrip(worker, k, false, false);
      const rtSpin = await roundTrip(worker, k, true, false);
      const rtHot = await roundTrip(worker, k, true, true);
      if (!keep) continue;
      push(s, 'rt-sleep', rtSleep);
      push(s, 'rt-spin', rtSpin);
      push(s, 'rt-hot', rtHot);
      delays.push(...roundDelays);
      push(s, 'ioctl-c', cIoctl! / IOCTLS);
      push(s, 'ioctl-node', nodeIoctl);
      push(s, 'decode', decode);
      push(s, 'out-c', cOut! / k);
      push(s, 'out-main', mainOut);
      push(s, 'out-worker', workerOut);
      push(s, 'out-worker-notify', notified.ns / k);
      push(s, 'notify-call', (notified.notifyNs ?? 0) / k);
      push(s, 'wakeups-per-exit', wakeups / k);
    }
    const med = (key: string): number => summarize(s[key] ?? []).median;
    const row = (what: string, key: string, vs?: string): string[] => [
      what, formatNs(med(key)), vs ? `${formatNs(med(key) - med(vs))} vs ${vs}` : '',
    ];
    console.log(`\nprobes (${rounds} rounds, medians; K = ${k} exits per timed loop):`);
    console.log(table(['probe', 'median', 'difference'], [
      row('trivial ioctl, C', 'ioctl-c'),
      row('trivial ioctl, kvm.checkExtension()', 'ioctl-node', 'ioctl-c'),
      row('decodeExit() of an io exit', 'decode'),
      row('OUT exit, C inline', 'out-c'),
      row('OUT exit, Vcpu.run() main thread', 'out-main', 'out-c'),
      row('OUT exit, Vcpu.run() worker thread', 'out-worker', 'out-c'),
      row('OUT exit, worker + notify per exit', 'out-worker-notify', 'out-worker'),
      row('  of which Atomics.notify call', 'notify-call'),
      row('OUT + read round trip, both sleep (≈ bus-in)', 'rt-sleep', 'out-worker'),
      row('  … worker spins for the reply', 'rt-spin', 'out-worker'),
      row('  … worker spins, main thread kept awake', 'rt-hot', 'out-worker'),
    ], new Set([1])));
    console.log(`main-thread wake-ups per exit in the notify probe: ${med('wakeups-per-exit').toFixed(3)}`);
    const d = summarize(delays);
    console.log(`Atomics.waitAsync wake-up latency (worker notify → main thread resumes), ${delays.length} samples: median ${formatNs(d.median)}, p99 ${formatNs(d.p99)}`);
  } finally {
    await worker.close();
    vm.close();
  }
}
