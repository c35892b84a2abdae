/**
 * Worker-thread entry for one vCPU: the thread's half of the state machine in
 * @kvmpool/core's machine/vcpu-lifecycle.ts. The vCPU is created here, in the thread that runs
 * it. Requests arrive as typed messages and are served in this thread's event loop, which the
 * thread is in whenever the vCPU is not inside the run loop: created, paused (also with a
 * device read pending), stopped. A request the state does not allow is refused with a
 * VcpuStateError; every answer or error goes back with `encodeError`, keeping its class.
 */
import { parentPort } from 'node:worker_threads';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import {
  CONTROL, KICK_SIGNAL, Kvm, OWNED, RFLAGS, closeOwned, REQUEST, VCPU_STATE, VCPU_STATE_NAME, VcpuStateError, blockSignal, captureVcpuState,
  consumePending, currentTid, encodeError, guestCpuid, guestDebugRegisters, refusal, restoreVcpuState, runMaskWithout,
  setEntryPoint, setVcpuMode, type RunEnd, type Vcpu, type VcpuReply, type VcpuRequest, type VcpuRequests, type VcpuState,
  type VcpuThreadInit, type Vm,
} from '@kvmpool/core/internal';
import { RingProducer } from '@kvmpool/devices';
import { RunLoop, type FastRegisterView } from './run-loop.js';

const port = parentPort;
if (!port) throw new Error('@kvmpool/worker/vcpu-thread must run as a worker thread');

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

function stateOf(control: Int32Array): VcpuState {
  return VCPU_STATE_NAME[Atomics.load(control, CONTROL.STATE)] ?? 'crashed';
}

function setState(l: Live, state: VcpuState): void {
  // Entering a state that is not running is a safe point too: kicks so far are acknowledged.
  if (state !== 'running') l.loop.acknowledge();
  Atomics.store(l.control, CONTROL.STATE, VCPU_STATE[state]);
  Atomics.notify(l.control, CONTROL.STATE);
}

function init(init: VcpuThreadInit): VcpuRequests['init'][1] {
  if (live) throw new Error(`vCPU thread: still serving vCPU ${live.vcpu.id}; close() it first`);
  // Block the kick signal first: from here on it can only interrupt KVM_RUN. A pooled thread
  // may hold kicks meant for its previous VM: drop them.
  blockSignal(KICK_SIGNAL);
  consumePending(KICK_SIGNAL);
  const control = new Int32Array(init.control);
  const kvm = Kvm.open();
  let vcpu: Vcpu | undefined;
  try {
    const vm = kvm.attachVm(init.vmFd);
    vcpu = vm.createVcpu(init.vcpuId);
    vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
    const views = (bus: 'pio' | 'mmio'): [bigint, FastRegisterView][] =>
      init.fastPath.filter((f) => f.bus === bus).map((f) => [f.address, { size: f.size, state: new Int32Array(f.state), index: f.index }]);
    const loop = new RunLoop(vcpu, new RingProducer(init.ring, init.doorbell, { replySpinUs: init.replySpinUs }), control, {
      fastPio: new Map(views('pio').map(([a, v]) => [Number(a), v])),
      fastMmio: new Map(views('mmio')),
      stopPorts: new Set(init.stopPorts),
      coalesced: init.coalesced,
      ...(init.softIrq ? { softIrq: new Int32Array(init.softIrq) } : {}),
    });
    const tid = currentTid();
    Atomics.store(control, CONTROL.TID, tid);
    Atomics.store(control, CONTROL.OWNED, OWNED.vcpu | OWNED.kvm);
    live = { kvm, vm, vcpu, control, loop };
    setState(live, 'created');
    const run = vcpu.runArea;
    return { tid, owned: { vcpuFd: vcpu.fd, kvmFd: kvm.fd, runAddress: run.address, runSize: run.size } };
  } catch (e) {
    vcpu?.close();
    kvm.close();
    throw e;
  }
}

/** Runs until the run loop ends for good; pauses (serving requests meanwhile) when asked. */
async function run(l: Live): Promise<RunEnd> {
  const { control, loop } = l;
  setState(l, 'running');
  for (;;) {
    const end = loop.run();
    if (end.reason === 'debug') {
      // Stop here like a pause (unless a stop is already asked for), and tell the main
      // thread why; it resumes or steps us.
      Atomics.compareExchange(control, CONTROL.REQUEST, REQUEST.none, REQUEST.pause);
      const event: VcpuReply = { kvmpoolEvent: 'debug-stop', vcpu: l.vcpu.id, pc: end.pc, dr6: end.dr6, exception: end.exception };
      port!.postMessage(event);
    } else if (end.reason !== 'kicked') {
      setState(l, end.reason === 'crashed' ? 'crashed' : 'stopped');
      return end;
    }
    if (Atomics.load(control, CONTROL.REQUEST) === REQUEST.pause) {
      setState(l, 'paused');
      // Paused: the event loop is free, so requests (registers…) are served meanwhile. Kicks
      // that arrive now are acknowledged here: the vCPU is already at a safe point.
      for (;;) {
        const gen = Atomics.load(control, CONTROL.WAKE);
        if (Atomics.load(control, CONTROL.REQUEST) !== REQUEST.pause) break;
        loop.acknowledge();
        const w = Atomics.waitAsync(control, CONTROL.WAKE, gen);
        if (w.async) await w.value;
      }
      if (Atomics.load(control, CONTROL.REQUEST) === REQUEST.stop) {
        setState(l, 'stopped');
        return { reason: 'stopped' };
      }
      // Running again; the run loop's first safe point sees any request made meanwhile, and
      // takes up a pending access (a read goes on waiting for its answer).
      setState(l, 'running');
      Atomics.add(control, CONTROL.RESUMES, 1);
      Atomics.notify(control, CONTROL.RESUMES);
    } else {
      await yieldToEventLoop();
    }
  }
}

/** How long a state save waits for a pending write to find room in the exit ring. */
const SAVE_WAIT_MS = 1000;

/**
 * The vCPU's state for a snapshot. A write still waiting for ring room is posted first
 * (boundedly); a read still waiting for its device is refused, not waited for.
 */
function saveState(l: Live, irqchip: boolean): VcpuRequests['saveState'][1] {
  const state = stateOf(l.control);
  l.loop.finishPendingWrite(SAVE_WAIT_MS);
  const pending = l.loop.pendingAccess;
  if (pending) {
    const what = pending.read ? 'the device' : 'room in the exit ring';
    throw new VcpuStateError(
      l.vcpu.id, state,
      `its ${pending.description} is still waiting for ${what}, so its state cannot be saved; resume it and save again once the device has answered`,
    );
  }
  return captureVcpuState(l.kvm, l.vcpu, irqchip);
}

function close(): void {
  if (!live) return;
  const { vm, kvm, vcpu, control } = live;
  setState(live, 'stopped');
  live = undefined;
  // Each OWNED bit is cleared before its resource is closed: the main thread closes what is
  // still marked if this thread ends before it is done (core's thread-resources.ts says why
  // before, not after).
  closeOwned(control, CONTROL.OWNED, OWNED.vcpu, () => vcpu.close());
  vm.close();
  closeOwned(control, CONTROL.OWNED, OWNED.kvm, () => kvm.close());
}

async function serve(req: VcpuRequest): Promise<unknown> {
  if (req.type === 'init') return init(req.arg);
  if (req.type === 'close') return close();
  if (req.type === 'injectFault') {
    const { message, hang } = req.arg;
    setImmediate(() => {
      // A thread that stops answering: its event loop blocks for good (terminate ends it).
      if (hang) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      else throw new Error(message);
    });
    return undefined;
  }
  const l = need();
  const no = refusal(l.vcpu.id, stateOf(l.control), req.type);
  if (no) throw no;
  const { vcpu, kvm } = l;
  switch (req.type) {
    case 'configure': {
      const config = req.arg;
      vcpu.setCpuid(guestCpuid(kvm, vcpu.id));
      setVcpuMode(vcpu, config.mode, {
        ...(config.systemArea === undefined ? {} : { systemArea: config.systemArea }),
        ...(config.idt === undefined ? {} : { idt: config.idt }),
      });
      setEntryPoint(vcpu, config.mode, config.entry, config.stack);
      if (config.regs) vcpu.patchRegs(config.regs);
      if (config.interruptsEnabled) vcpu.patchRegs({ rflags: vcpu.getRegs().rflags | RFLAGS.IF });
      if (config.runnable) vcpu.setMpState('runnable');
      return undefined;
    }
    case 'run':
      try {
        return await run(l);
      } catch (e) {
        // A failed KVM_RUN (or any error in the loop) ends the vCPU: say so before answering.
        setState(l, 'crashed');
        throw e;
      }
    case 'getRegs':
      return vcpu.getRegs();
    case 'setRegs':
      return vcpu.setRegs(req.arg);
    case 'getSregs':
      return vcpu.getSregs();
    case 'setSregs':
      return vcpu.setSregs(req.arg);
    case 'saveState':
      return saveState(l, req.arg.irqchip);
    case 'loadState':
      return restoreVcpuState(vcpu, req.arg);
    case 'setGuestDebug':
      return vcpu.setGuestDebug(guestDebugRegisters(req.arg));
    case 'translate':
      return vcpu.translate(req.arg);
  }
}

port.on('message', (req: VcpuRequest) => {
  serve(req).then(
    (value) => port.postMessage({ kvmpoolReply: req.id, ok: true, value } satisfies VcpuReply),
    (e: unknown) => port.postMessage({ kvmpoolReply: req.id, ok: false, error: encodeError(e) } satisfies VcpuReply),
  );
});
