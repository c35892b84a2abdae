/**
 * Worker thread for the `exit-bus` probes (--profile): a vCPU of a VM the main thread made
 * (its memory already holds OUT_LOOP and the user-mode tables), run from this thread the way
 * kvmpool's vCPU worker runs it (as vCPU 1), with and without waking a main-thread waiter per exit.
 *
 * Messages in: ProbeRequest (exit-bus-probe-protocol.ts); each is answered with one message,
 * { ok: true, answer: ProbeAnswer } or { ok: false, error }.
 */
import { parentPort } from 'node:worker_threads';
import { Kvm, guestCpuid, setEntryPoint, setVcpuMode, type Vcpu, type Vm } from '@kvmpool/core/internal';
import { SINK_PORT } from './exit-bus-guests.js';
import { CODE, STACK } from './exit-bus-machines.js';
import { RT, type ProbeAnswer, type ProbeRequest } from './exit-bus-probe-protocol.js';

if (!parentPort) throw new Error('exit-bus-probe-worker must run as a worker thread');
const port = parentPort;

let live: { kvm: Kvm; vm: Vm; vcpu: Vcpu } | undefined;

const now = (): bigint => process.hrtime.bigint();

function vcpu(): Vcpu {
  if (!live) throw new Error('probe worker: no init');
  return live.vcpu;
}

function runOut(v: Vcpu): void {
  const exit = v.run();
  if (exit.kind !== 'io' || exit.port !== SINK_PORT) throw new Error(`probe worker: unexpected exit ${exit.kind}`);
}

function handle(req: ProbeRequest): ProbeAnswer {
  switch (req.op) {
    case 'init': {
      const kvm = Kvm.open();
      const vm = kvm.attachVm(req.vmFd);
      const v = vm.createVcpu(1); // vCPU 0 is the main thread's
      v.setCpuid(guestCpuid(kvm));
      setVcpuMode(v, 'user');
      setEntryPoint(v, 'user', CODE, STACK);
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
    case 'roundtrip': {
      const v = vcpu();
      const w = new Int32Array(req.words);
      const t0 = now();
      for (let seq = 1; seq <= req.k; seq++) {
        runOut(v);
        Atomics.store(w, RT.REQ, seq);
        if (Atomics.load(w, RT.MAIN_SLEEPING) !== 0) Atomics.notify(w, RT.REQ);
        if (req.spin) {
          Atomics.store(w, RT.WORKER_SPINNING, 1);
          let spins = 0;
          while (Atomics.load(w, RT.REP) !== seq) {
            if (++spins === 1 << 22) {
              if (now() - t0 > 10_000_000_000n) throw new Error('probe worker: no reply for 10 s');
              spins = 0;
            }
          }
          Atomics.store(w, RT.WORKER_SPINNING, 0);
        } else {
          for (;;) {
            const got = Atomics.load(w, RT.REP);
            if (got === seq) break;
            Atomics.wait(w, RT.REP, got, 50);
          }
        }
      }
      const ns = Number(now() - t0);
      Atomics.store(w, RT.DONE, 1);
      Atomics.notify(w, RT.REQ);
      return { ns };
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
