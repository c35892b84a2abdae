/**
 * Worker-thread entry for one vCPU. The vCPU is created here, in the thread that runs it.
 * States: created → running ⇄ paused → stopped | crashed. Control calls arrive through
 * comlink and are served only while the vCPU is outside KVM_RUN; pause and stop are
 * requested through the shared control words plus a kick, so they never wait behind a
 * guest that computes.
 */
import { parentPort } from 'node:worker_threads';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { expose } from 'comlink';
import {
  CONTROL, KICK_SIGNAL, Kvm, REQUEST, VCPU_STATE, blockSignal, consumePending, currentTid, guestCpuid, nodeEndpoint, runMaskWithout,
  setEntryPoint, setVcpuMode, type KvmRegs, type KvmSregs, type RunEnd, type Vcpu, type VcpuConfig, type VcpuState,
  type VcpuThreadApi, type VcpuThreadInit, type Vm, VCPU_STATE_NAME, captureVcpuState, restoreVcpuState,
  type VcpuSnapshot, type VcpuThreadEvent, type GuestDebugConfig, guestDebugRegisters,
} from '@kvmpool/core/internal';
import { RingProducer } from '@kvmpool/devices';
import { RunLoop, type FastRegisterView } from './run-loop.js';

if (!parentPort) throw new Error('@kvmpool/worker/vcpu-thread must run as a worker thread');

interface Live {
  kvm: Kvm;
  vm: Vm;
  vcpu: Vcpu;
  control: Int32Array;
  loop: RunLoop;
}
let live: Live | undefined;

function need(): Live {
  if (!live) throw new Error('vCPU thread: init() has not run');
  return live;
}

function setState(control: Int32Array, state: VcpuState): void {
  Atomics.store(control, CONTROL.STATE, VCPU_STATE[state]);
  Atomics.notify(control, CONTROL.STATE);
}

function ackKicks(control: Int32Array): void {
  Atomics.store(control, CONTROL.KICK_ACK, Atomics.load(control, CONTROL.KICK_REQ));
  Atomics.notify(control, CONTROL.KICK_ACK);
}

function stateOf(control: Int32Array): VcpuState {
  return VCPU_STATE_NAME[Atomics.load(control, CONTROL.STATE)] ?? 'crashed';
}

/** Outside KVM_RUN only: a vCPU that is running must be paused first. */
function requireStill(what: string): Live {
  const l = need();
  const s = stateOf(l.control);
  if (s === 'running') throw new Error(`vCPU ${l.vcpu.id}: ${what} needs the vCPU paused (it is running)`);
  return l;
}

const api: VcpuThreadApi = {
  init(init: VcpuThreadInit) {
    // Block the kick signal first: from here on it can only interrupt KVM_RUN. A pooled thread
    // may hold kicks meant for its previous VM: drop them.
    if (live) throw new Error(`vCPU thread: still serving vCPU ${live.vcpu.id}; close() it first`);
    blockSignal(KICK_SIGNAL);
    consumePending(KICK_SIGNAL);
    const kvm = Kvm.open();
    const vm = kvm.attachVm(init.vmFd);
    const vcpu = vm.createVcpu(init.vcpuId);
    vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
    const control = new Int32Array(init.control);
    const views = (bus: 'pio' | 'mmio'): [bigint, FastRegisterView][] =>
      init.fastPath.filter((f) => f.bus === bus).map((f) => [f.address, { size: f.size, state: new Int32Array(f.state), index: f.index }]);
    const loop = new RunLoop(vcpu, new RingProducer(init.ring, init.doorbell), control, {
      fastPio: new Map(views('pio').map(([a, v]) => [Number(a), v])),
      fastMmio: new Map(views('mmio')),
      stopPorts: new Set(init.stopPorts),
      coalesced: init.coalesced,
    });
    const tid = currentTid();
    Atomics.store(control, CONTROL.TID, tid);
    live = { kvm, vm, vcpu, control, loop };
    setState(control, 'created');
    return { tid, vcpuFd: vcpu.fd };
  },

  configure(config: VcpuConfig) {
    const { kvm, vcpu } = requireStill('configure');
    vcpu.setCpuid(guestCpuid(kvm, vcpu.id));
    setVcpuMode(vcpu, config.mode, config.systemArea === undefined ? {} : { systemArea: config.systemArea });
    setEntryPoint(vcpu, config.mode, config.entry, config.stack);
    if (config.regs) vcpu.patchRegs(config.regs);
    if (config.runnable) vcpu.setMpState('runnable');
  },

  async run(): Promise<RunEnd> {
    const { control, loop } = need();
    setState(control, 'running');
    for (;;) {
      const end = loop.run();
      if (end.reason === 'debug') {
        // Stop here like a pause (unless a stop is already asked for), and tell the main
        // thread why; it resumes or steps us.
        Atomics.compareExchange(control, CONTROL.REQUEST, REQUEST.none, REQUEST.pause);
        const event: VcpuThreadEvent = { kvmpoolEvent: 'debug-stop', vcpu: need().vcpu.id, pc: end.pc, dr6: end.dr6, exception: end.exception };
        parentPort?.postMessage(event);
      } else if (end.reason !== 'kicked') {
        setState(control, end.reason === 'crashed' ? 'crashed' : 'stopped');
        return end;
      }
      if (Atomics.load(control, CONTROL.REQUEST) === REQUEST.pause) {
        setState(control, 'paused');
        // Paused: the event loop is free, so comlink calls (registers…) are served meanwhile.
        // Kicks that arrive now are acknowledged here: the vCPU is already at a safe point.
        while (Atomics.load(control, CONTROL.REQUEST) === REQUEST.pause) {
          ackKicks(control);
          const w = Atomics.waitAsync(control, CONTROL.REQUEST, REQUEST.pause);
          if (w.async) await w.value;
        }
        if (Atomics.load(control, CONTROL.REQUEST) === REQUEST.stop) {
          ackKicks(control);
          setState(control, 'stopped');
          return { reason: 'stopped' };
        }
        // Running again; the run loop's first safe point sees any request made meanwhile.
        setState(control, 'running');
        Atomics.add(control, CONTROL.RESUMES, 1);
        Atomics.notify(control, CONTROL.RESUMES);
      } else {
        await yieldToEventLoop();
      }
    }
  },

  pause() {
    return stateOf(need().control);
  },
  resume() {
    return stateOf(need().control);
  },
  getRegs(): KvmRegs {
    return requireStill('getRegs').vcpu.getRegs();
  },
  setRegs(regs: KvmRegs) {
    requireStill('setRegs').vcpu.setRegs(regs);
  },
  getSregs(): KvmSregs {
    return requireStill('getSregs').vcpu.getSregs();
  },
  setSregs(sregs: KvmSregs) {
    requireStill('setSregs').vcpu.setSregs(sregs);
  },
  state() {
    return stateOf(need().control);
  },
  saveState(irqchip: boolean): VcpuSnapshot {
    const l = requireStill('saveState');
    return captureVcpuState(l.kvm, l.vcpu, irqchip);
  },
  loadState(state: VcpuSnapshot) {
    restoreVcpuState(requireStill('loadState').vcpu, state);
  },
  setGuestDebug(config: GuestDebugConfig) {
    requireStill('setGuestDebug').vcpu.setGuestDebug(guestDebugRegisters(config));
  },
  translate(gva: bigint) {
    return requireStill('translate').vcpu.translate(gva);
  },
  injectFault(message: string) {
    setImmediate(() => {
      throw new Error(message);
    });
  },
  close() {
    if (!live) return;
    live.vm.close();
    live.kvm.close();
    setState(live.control, 'stopped');
    live = undefined;
  },
};

expose(api, nodeEndpoint(parentPort));
