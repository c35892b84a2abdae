/**
 * Worker thread for the `exit-bus` probes (--profile): a vCPU of a VM the main thread made
 * (its memory already holds OUT_LOOP and the user-mode tables), run from this thread the way
 * kvmpool's vCPU worker runs it, with and without waking a main-thread waiter per exit.
 *
 * Messages in: { op: 'init', vmFd } | { op: 'direct', k } | { op: 'notify', k, bell }
 *   | { op: 'wake', n, bell } | { op: 'close' }. Each is answered with one message.
 */
import { parentPort } from 'node:worker_threads';
import { Kvm, guestCpuid, setEntryPoint, setVcpuMode, type Vcpu, type Vm } from '@kvmpool/core';

if (!parentPort) throw new Error('exit-bus-probe-worker must run as a worker thread');
const port = parentPort;

export const PROBE_CODE = 0x10000n;
export const PROBE_PORT = 0x3f0;

export type ProbeRequest =
  | { op: 'init'; vmFd: number }
  | { op: 'direct'; k: number }
  /** Runs k exits; after each, bumps word 0 of `bell` and notifies it (a doorbell). */
  | { op: 'notify'; k: number; bell: SharedArrayBuffer }
  /** n times, 1 ms apart: stamps hrtime into `bell` (BigInt64 at byte 8), bumps word 0, notifies. */
  | { op: 'wake'; n: number; bell: SharedArrayBuffer }
  | { op: 'close' };

export interface ProbeAnswer {
  /** Total ns of the timed part. */
  ns: number;
  /** ns spent inside Atomics.notify (notify op). */
  notifyNs?: number;
}

let live: { kvm: Kvm; vm: Vm; vcpu: Vcpu } | undefined;

const now = (): bigint => process.hrtime.bigint();

function vcpu(): Vcpu {
  if (!live) throw new Error('probe worker: no init');
  return live.vcpu;
}

function runOut(v: Vcpu): void {
  const exit = v.run();
  if (exit.kind !== 'io' || exit.port !== PROBE_PORT) throw new Error(`probe worker: unexpected exit ${exit.kind}`);
}

function handle(req: ProbeRequest): ProbeAnswer {
  switch (req.op) {
    case 'init': {
      const kvm = Kvm.open();
      const vm = kvm.attachVm(req.vmFd);
      const v = vm.createVcpu(0);
      v.setCpuid(guestCpuid(kvm));
      setVcpuMode(v, 'user');
      setEntryPoint(v, 'user', PROBE_CODE, 0x80000n);
      live = { kvm, vm, vcpu: v };
      return { ns: 0 };
    }
    case 'direct': {
      const v = vcpu();
      const t0 = now();
      for (let i = 0; i < req.k; i++) runOut(v);
      return { ns: Number(now() - t0) };
    }
    case 'notify': {
      const v = vcpu();
      const bell = new Int32Array(req.bell, 0, 2);
      let notifyNs = 0n;
      const t0 = now();
      for (let i = 0; i < req.k; i++) {
        runOut(v);
        Atomics.add(bell, 0, 1);
        const n0 = now();
        Atomics.notify(bell, 0);
        notifyNs += now() - n0;
      }
      return { ns: Number(now() - t0), notifyNs: Number(notifyNs) };
    }
    case 'wake': {
      const bell = new Int32Array(req.bell, 0, 2);
      const stamp = new BigInt64Array(req.bell, 8, 1);
      const pause = new Int32Array(new SharedArrayBuffer(4));
      for (let i = 0; i < req.n; i++) {
        Atomics.wait(pause, 0, 0, 1);
        Atomics.store(stamp, 0, now());
        Atomics.add(bell, 0, 1);
        Atomics.notify(bell, 0);
      }
      return { ns: 0 };
    }
    case 'close':
      live?.vm.close();
      live?.kvm.close();
      live = undefined;
      return { ns: 0 };
  }
}

port.on('message', (req: ProbeRequest) => {
  try {
    port.postMessage({ ok: true, answer: handle(req) });
  } catch (e) {
    port.postMessage({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
});
