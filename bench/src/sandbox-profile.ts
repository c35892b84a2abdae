/**
 * The `sandbox` benchmark's --profile breakdown: where a pool call's time goes.
 *
 * 1. Each step of one call + reset (SANDBOX_STEPS), timed in three places, alternating:
 *    - C: bench/c/sandbox.c ("S N" requests);
 *    - lib: a step-by-step replica of SandboxVm.call (packages/core/src/sandbox/sandbox-vm.ts) in
 *      this thread, with the library's own calls: vcpu.setRegs (encodes KVM_REGS), vcpu.run
 *      (decodes the exit into an object), vm.dirtyPages (a fresh bitmap and struct, a page list),
 *      vcpu.setFpu (encodes KVM_FPU), gettid through the FFI for the control word;
 *    - lean: the same steps with buffers encoded once, through the library's byte-level calls (KVM_REGS patched in place, the pristine
 *      KVM_FPU bytes, the KVM_DIRTY_LOG struct and bitmap), the exit read straight from kvm_run,
 *      the tid cached — what SandboxVm could do per call.
 * 2. The layers of a pool call, alternating: C; C with the page tables' Accessed/Dirty bits
 *    preset (bench/c/sandbox.c `preset-ad`: what writeModeTables could do); SandboxVm.call in
 *    this thread; the lean call;
 *    a piscina round trip with a no-op worker; a SharedArrayBuffer + Atomics channel round trip
 *    with a no-op worker; a piscina round trip to a worker that runs SandboxVm.call as the pool
 *    worker does, and the time that call took inside the worker; SandboxPool.call on 1 thread.
 * 3. One SandboxPool.call on 1 thread, split by its own time stamps (pool-seat.ts LAST_CALL and
 *    the worker's stamps in the call channel): main thread before the post, the request hop,
 *    the VM's call in the worker (KVM_RUN + exits + reset, split further by table 1), the
 *    worker's reply, the reply hop, the main thread after; main-thread time per call; the exits
 *    per call (counted in the lean replica).
 */
import { readFileSync } from 'node:fs';
import { Piscina } from 'piscina';
import {
  CALL_CONTROL, Kvm, KICK_SIGNAL, LAST_CALL, SandboxVm, abi, blockSignal, consumePending, currentTid, describeExit,
  guestCpuid, loadElf, parseElf, runMaskWithout, setVcpuMode, writeModeTables, type KvmFpu, type KvmRegs, type MemorySlot,
  type SandboxPool, type Vcpu, type Vm,
} from '@kvmpool/core/internal';
import type { CProcess } from './c-process.js';
import { OBSERVABLE_MSRS, settlePendingExit } from '@kvmpool/core/internal';
import { formatNs, summarize, table } from './harness.js';
import { SabChannel } from './sandbox-channel.js';

/** Keep in step with STEP_NAMES in bench/c/sandbox.c. */
export const SANDBOX_STEPS = ['input', 'set-regs', 'run', 'output', 'dirty-log', 'copy-pages', 'zero-input', 'set-fpu'] as const;

export interface ProfileSetup {
  proc: CProcess;
  /** The C program started with `preset-ad`. */
  procAd: CProcess;
  pool1: SandboxPool;
  guest: string;
  memory: number;
  inputSize: number;
  outputSize: number;
  input: Uint8Array;
  checkSum: (id: string, out: Uint8Array) => void;
}

const PAGE = 4096;
const SYSTEM_AREA = 0x1000n;
const CALL_VALUE = 0xc000 + 64;
const PORT_RETURN = 0x701;

/** The VM of SandboxVm.create, built here so its steps can be timed one by one. */
class ReplicaVm {
  readonly #kvm: Kvm;
  readonly #vm: Vm;
  readonly #vcpu: Vcpu;
  readonly #slot: MemorySlot;
  readonly #mem: Uint8Array;
  readonly #view: DataView;
  readonly #pristine: Uint8Array;
  readonly #pristineFpu: KvmFpu;
  readonly #regs: KvmRegs;
  readonly #entry: bigint;
  readonly #fn: bigint;
  readonly #inputBase: number;
  readonly #outputBase: number;
  readonly #outputSize: number;
  readonly #ctl = new Int32Array(new SharedArrayBuffer(CALL_CONTROL.WORDS * 4));
  readonly #check: ProfileSetup['checkSum'];
  // The lean path's buffers, encoded once.
  readonly #regsBytes: Uint8Array;
  readonly #regsView: DataView;
  readonly #fpuBytes: Uint8Array;
  readonly #tid: number;
  /** Pages the last reset of each path copied back. */
  libPages = 0;
  leanPages = 0;
  /** KVM_RUN exits of the last lean call. */
  leanExits = 0;

  constructor(elf: Uint8Array, s: ProfileSetup) {
    const image = parseElf(elf, 'bench-guest.elf');
    const fn = image.functions.get('sum');
    if (fn === undefined) throw new Error('bench-guest.elf exports no sum');
    this.#entry = image.entry;
    this.#fn = fn;
    this.#check = s.checkSum;
    this.#outputBase = s.memory - s.outputSize;
    this.#inputBase = this.#outputBase - s.inputSize;
    this.#outputSize = s.outputSize;
    blockSignal(KICK_SIGNAL);
    consumePending(KICK_SIGNAL);
    this.#kvm = Kvm.open();
    this.#vm = this.#kvm.createVm();
    this.#slot = this.#vm.addMemory({ guestAddress: 0, size: s.memory, dirtyLog: true });
    writeModeTables(this.#vm.memory, 'user', { systemArea: SYSTEM_AREA, mapSize: Math.ceil(s.memory / 0x20_0000) * 0x20_0000 });
    loadElf(image, this.#vm.memory);
    this.#vcpu = this.#vm.createVcpu(0);
    this.#vcpu.setCpuid(guestCpuid(this.#kvm));
    setVcpuMode(this.#vcpu, 'user', { systemArea: SYSTEM_AREA });
    this.#vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
    this.#mem = this.#slot.bytes;
    this.#view = new DataView(this.#slot.buffer);
    this.#regs = this.#vcpu.getRegs();
    this.#vm.dirtyPages(this.#slot);
    this.#pristine = this.#mem.slice();
    this.#pristineFpu = this.#vcpu.getFpu();

    this.#regsBytes = abi.encode(abi.KVM_REGS, this.#regs);
    this.#regsView = new DataView(this.#regsBytes.buffer);
    this.#fpuBytes = abi.encode(abi.KVM_FPU, this.#pristineFpu);
    this.#tid = currentTid();
  }

  /** SandboxVm.call's work with the library's calls; SANDBOX_STEPS durations go to out[at…], the control-word cost to tid[i]. */
  libCall(input: Uint8Array, out: number[], at: number, tid: number[], i: number): void {
    const mem = this.#mem;
    const t0 = process.hrtime.bigint();
    mem.set(input, this.#inputBase);
    const t1 = process.hrtime.bigint();
    const r = this.#regs;
    r.rip = this.#entry;
    r.rsp = BigInt(this.#inputBase);
    r.rflags = 0x3002n;
    r.r15 = this.#fn;
    r.rdi = BigInt(this.#inputBase);
    r.rsi = BigInt(input.length);
    r.rdx = BigInt(this.#outputBase);
    r.rcx = BigInt(this.#outputSize);
    this.#vcpu.setRegs(r);
    const t2 = process.hrtime.bigint();
    Atomics.store(this.#ctl, CALL_CONTROL.TID, currentTid());
    const t3 = process.hrtime.bigint();
    for (;;) {
      if (Atomics.load(this.#ctl, CALL_CONTROL.CANCEL) !== 0) throw new Error('cancelled');
      const exit = this.#vcpu.run();
      if (exit.kind === 'io' && exit.direction === 'out' && exit.port === PORT_RETURN) break;
      throw new Error(`replica: unexpected exit ${describeExit(exit)}`);
    }
    const t4 = process.hrtime.bigint();
    Atomics.store(this.#ctl, CALL_CONTROL.TID, 0);
    const t5 = process.hrtime.bigint();
    const value = this.#view.getBigInt64(CALL_VALUE, true);
    if (value < 0n || value > BigInt(this.#outputSize)) throw new Error(`replica: sum returned ${value}`);
    const output = mem.slice(this.#outputBase, this.#outputBase + Number(value));
    const t6 = process.hrtime.bigint();
    const dirty = this.#vm.dirtyPages(this.#slot);
    const t7 = process.hrtime.bigint();
    this.libPages = dirty.length;
    for (const p of dirty) {
      const a = p * PAGE;
      mem.set(this.#pristine.subarray(a, a + PAGE), a);
    }
    const t8 = process.hrtime.bigint();
    mem.fill(0, this.#inputBase, this.#inputBase + input.length);
    const t9 = process.hrtime.bigint();
    this.#vcpu.setFpu(this.#pristineFpu);
    const t10 = process.hrtime.bigint();
    this.#check('replica', output);
    const steps = [t1 - t0, t2 - t1, t4 - t3, t6 - t5, t7 - t6, t8 - t7, t9 - t8, t10 - t9];
    for (let s = 0; s < steps.length; s++) out[at + s] = Number(steps[s]!);
    tid[i] = Number(t3 - t2 + (t5 - t4));
  }

  /** The same call with buffers encoded once, the exit read from kvm_run, the tid cached. */
  leanCall(input: Uint8Array, out: number[] | null, at: number): void {
    const mem = this.#mem;
    const t0 = process.hrtime.bigint();
    mem.set(input, this.#inputBase);
    const t1 = process.hrtime.bigint();
    const rv = this.#regsView;
    const o = abi.KVM_REGS.offsets;
    rv.setBigUint64(o.rip, this.#entry, true);
    rv.setBigUint64(o.rsp, BigInt(this.#inputBase), true);
    rv.setBigUint64(o.rflags, 0x3002n, true);
    rv.setBigUint64(o.r15, this.#fn, true);
    rv.setBigUint64(o.rdi, BigInt(this.#inputBase), true);
    rv.setBigUint64(o.rsi, BigInt(input.length), true);
    rv.setBigUint64(o.rdx, BigInt(this.#outputBase), true);
    rv.setBigUint64(o.rcx, BigInt(this.#outputSize), true);
    this.#vcpu.setRegsBytes(this.#regsBytes);
    const t2 = process.hrtime.bigint();
    Atomics.store(this.#ctl, CALL_CONTROL.TID, this.#tid);
    let exits = 0;
    for (;;) {
      if (Atomics.load(this.#ctl, CALL_CONTROL.CANCEL) !== 0) throw new Error('cancelled');
      const exit = this.#vcpu.run();
      this.leanExits = ++exits;
      if (exit.kind === 'io' && exit.direction === 'out' && exit.port === PORT_RETURN) break;
      throw new Error(`lean replica: unexpected exit ${describeExit(exit)}`);
    }
    Atomics.store(this.#ctl, CALL_CONTROL.TID, 0);
    const t3 = process.hrtime.bigint();
    const value = this.#view.getBigInt64(CALL_VALUE, true);
    if (value < 0n || value > BigInt(this.#outputSize)) throw new Error(`lean replica: sum returned ${value}`);
    const output = mem.slice(this.#outputBase, this.#outputBase + Number(value));
    const t4 = process.hrtime.bigint();
    const dirty = this.#vm.dirtyPages(this.#slot);
    const t5 = process.hrtime.bigint();
    for (const p of dirty) mem.set(this.#pristine.subarray(p * PAGE, (p + 1) * PAGE), p * PAGE);
    const pages = dirty.length;
    const t6 = process.hrtime.bigint();
    this.leanPages = pages;
    mem.fill(0, this.#inputBase, this.#inputBase + input.length);
    const t7 = process.hrtime.bigint();
    this.#vcpu.setFpuBytes(this.#fpuBytes);
    const t8 = process.hrtime.bigint();
    this.#check('lean replica', output);
    if (out) {
      const steps = [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7];
      for (let s = 0; s < steps.length; s++) out[at + s] = Number(steps[s]!);
    }
  }

  #restoreState: { sregs: Uint8Array; xsave: Uint8Array | null; debug: Uint8Array; events: Uint8Array; msrs: { index: number; data: bigint }[] } | undefined;

  /**
   * The rest of SandboxVm's reset (reset.ts, PristineCpu), ioctl by ioctl, after a call: settle
   * the pending exit (a KVM_RUN with immediate_exit), sregs, XSAVE (or FPU), debug registers,
   * vCPU events, MSRs. Durations go to out[at…] in FULL_RESET_STEPS order.
   */
  fullRestore(out: number[], at: number): void {
    const v = this.#vcpu;
    if (!this.#restoreState) {
      const xsave = this.#vm.checkExtension('KVM_CAP_XSAVE') ? v.getXsaveBytes(Math.max(this.#vm.checkExtension('KVM_CAP_XSAVE2'), abi.KVM_XSAVE.size)) : null;
      const msrs = v.getMsrs(Object.values(OBSERVABLE_MSRS)).filter((m) => {
        try {
          v.setMsrs([m]);
          return true;
        } catch {
          return false;
        }
      });
      this.#restoreState = { sregs: v.getSregsBytes(), xsave, debug: v.getDebugRegsBytes(), events: v.getVcpuEventsBytes(), msrs };
    }
    const st = this.#restoreState;
    const t0 = process.hrtime.bigint();
    settlePendingExit(v);
    const t1 = process.hrtime.bigint();
    v.setSregsBytes(st.sregs);
    const t2 = process.hrtime.bigint();
    if (st.xsave) v.setXsaveBytes(st.xsave);
    else v.setFpuBytes(this.#fpuBytes);
    const t3 = process.hrtime.bigint();
    v.setDebugRegsBytes(st.debug);
    const t4 = process.hrtime.bigint();
    v.setVcpuEventsBytes(st.events);
    const t5 = process.hrtime.bigint();
    if (st.msrs.length > 0) v.setMsrs(st.msrs);
    const t6 = process.hrtime.bigint();
    const d = [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5];
    for (let i = 0; i < d.length; i++) out[at + i] = Number(d[i]!);
  }

  close(): void {
    this.#vm.close();
    this.#kvm.close();
  }
}

/** SandboxVm's reset beyond the C loop's (reset.ts), in ReplicaVm.fullRestore's order. */
const FULL_RESET_STEPS = ['settle (KVM_RUN, immediate_exit)', 'KVM_SET_SREGS', 'KVM_SET_XSAVE (or FPU)', 'KVM_SET_DEBUGREGS', 'KVM_SET_VCPU_EVENTS', 'KVM_SET_MSRS'] as const;

/** A difference in ns, signed, in formatNs's units. */
function formatDelta(ns: number): string {
  return `${ns < 0 ? '−' : '+'}${formatNs(Math.abs(ns))}`;
}

async function timeEach(n: number, call: () => unknown): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await call();
    out[i] = Number(process.hrtime.bigint() - t0);
  }
  return out;
}

export async function profileSandbox(s: ProfileSetup, iterations: number, batch: number): Promise<void> {
  const { proc, input } = s;
  const steps = SANDBOX_STEPS.length;
  if (proc.readyWords.slice(1).join(' ') !== SANDBOX_STEPS.join(' ')) {
    throw new Error(`sandbox: the C program's steps (${proc.readyWords.slice(1).join(' ')}) differ from SANDBOX_STEPS`);
  }
  const elf = new Uint8Array(readFileSync(s.guest));
  const replica = new ReplicaVm(elf, s);
  const inThread = SandboxVm.create({ image: parseElf(elf, 'bench-guest.elf'), memory: s.memory, inputSize: s.inputSize, outputSize: s.outputSize });
  const probeFile = new URL('./sandbox-probe-worker.js', import.meta.url).href;
  const piscina = new Piscina({ filename: probeFile, minThreads: 1, maxThreads: 1, idleTimeout: Infinity });
  const vmPiscina = new Piscina({
    filename: probeFile, minThreads: 1, maxThreads: 1, idleTimeout: Infinity,
    workerData: { elf, memory: s.memory, inputSize: s.inputSize, outputSize: s.outputSize },
  });
  const channel = new SabChannel();
  const vmChannel = new SabChannel({ elf, memory: s.memory, inputSize: s.inputSize, outputSize: s.outputSize });
  try {
    const stepC: number[][] = SANDBOX_STEPS.map(() => []);
    const stepLib: number[][] = SANDBOX_STEPS.map(() => []);
    const stepLean: number[][] = SANDBOX_STEPS.map(() => []);
    const tid: number[] = [];
    const full: number[][] = FULL_RESET_STEPS.map(() => []);
    const layerNames = [
      'C reset + call', 'C, page-table A/D bits preset', 'SandboxVm.call, in this thread', 'lean call, in this thread', 'piscina round trip, no-op worker',
      'SAB + Atomics round trip, no-op worker', 'piscina round trip, SandboxVm.call worker', '  of which SandboxVm.call in the worker',
      'SAB channel round trip, SandboxVm.call worker', '  of which SandboxVm.call in the worker', 'SandboxPool.call, 1 thread',
    ] as const;
    const NOT_VS_C = new Set<number>([0, 4, 5]);
    const layers: number[][] = layerNames.map(() => []);
    const splitNames = [
      'main thread: call() → request posted', 'request hop (post → worker sees it)', 'worker: SandboxVm.call (run + exits + reset)',
      'worker: output + reply written', 'reply hop (DONE → main thread resumes)', 'main thread: reply → result awaited',
    ] as const;
    const split: number[][] = splitNames.map(() => []);
    const mainTotal: number[] = [];
    const ctl = new Int32Array(new SharedArrayBuffer(CALL_CONTROL.WORDS * 4));
    const rounds = Math.ceil(iterations / batch) + 1; // the first round warms up
    for (let r = 0; r < rounds; r++) {
      const cRaw = await proc.requestNumbers(`S ${batch}`);
      if (cRaw.length !== batch * steps) throw new Error(`sandbox: asked for ${batch}×${steps} step times, got ${cRaw.length}`);
      const libRaw = new Array<number>(batch * steps);
      const leanRaw = new Array<number>(batch * steps);
      const tidRaw = new Array<number>(batch);
      for (let i = 0; i < batch; i++) replica.libCall(input, libRaw, i * steps, tidRaw, i);
      for (let i = 0; i < batch; i++) replica.leanCall(input, leanRaw, i * steps);
      const fullRaw = new Array<number>(batch * FULL_RESET_STEPS.length);
      for (let i = 0; i < batch; i++) {
        replica.leanCall(input, null, 0);
        replica.fullRestore(fullRaw, i * FULL_RESET_STEPS.length);
      }
      const got = [
        await proc.requestNumbers(String(batch)),
        await s.procAd.requestNumbers(String(batch)),
        await timeEach(batch, () => s.checkSum('SandboxVm.call', inThread.call('sum', input, { timeoutMs: 0, control: ctl }).output)),
        await timeEach(batch, () => replica.leanCall(input, null, 0)),
        await timeEach(batch, async () => {
          const res = (await piscina.run({ name: 'sum', input, timeoutMs: 0, control: new SharedArrayBuffer(CALL_CONTROL.WORDS * 4) })) as { output: Uint8Array };
          s.checkSum('piscina probe', res.output);
        }),
        await timeEach(batch, async () => s.checkSum('channel probe', await channel.call(input))),
      ];
      const inWorker: number[] = [];
      got.push(await timeEach(batch, async () => {
        const res = (await vmPiscina.run({ name: 'sum', input, timeoutMs: 0, control: new SharedArrayBuffer(CALL_CONTROL.WORDS * 4) })) as { output: Uint8Array; micros: number };
        s.checkSum('piscina + SandboxVm probe', res.output);
        inWorker.push(res.micros * 1000);
      }));
      got.push(inWorker);
      const inChannelWorker: number[] = [];
      got.push(await timeEach(batch, async () => {
        s.checkSum('SAB channel + SandboxVm probe', await vmChannel.call(input));
        inChannelWorker.push(vmChannel.lastWorkNs);
      }));
      got.push(inChannelWorker);
      got.push(await timeEach(batch, async () => s.checkSum('pool', await s.pool1.call('sum', input))));
      const splitRaw: number[][] = splitNames.map(() => []);
      const mainRaw: number[] = [];
      for (let i = 0; i < batch; i++) {
        const t0 = performance.timeOrigin + performance.now();
        const out = await s.pool1.call('sum', input);
        const t1 = performance.timeOrigin + performance.now();
        s.checkSum('pool (split)', out);
        const c = LAST_CALL;
        const parts = [c.posted - t0, c.seen - c.posted, c.called - c.seen, c.done - c.called, c.resumed - c.done, t1 - c.resumed];
        parts.forEach((ms, k) => splitRaw[k]!.push(ms * 1e6));
        mainRaw.push((c.posted - t0 + (t1 - c.resumed)) * 1e6);
      }
      if (r === 0) continue;
      splitRaw.forEach((xs, k) => split[k]!.push(...xs));
      mainTotal.push(...mainRaw);
      for (let i = 0; i < batch * steps; i++) {
        stepC[i % steps]!.push(cRaw[i]!);
        stepLib[i % steps]!.push(libRaw[i]!);
        stepLean[i % steps]!.push(leanRaw[i]!);
      }
      tid.push(...tidRaw);
      for (let i = 0; i < fullRaw.length; i++) full[i % FULL_RESET_STEPS.length]!.push(fullRaw[i]!);
      got.forEach((g, i) => layers[i]!.push(...g));
    }
    const n = (rounds - 1) * batch;
    const med = (xs: number[]): number => summarize(xs).median;
    const rows = SANDBOX_STEPS.map((name, k) => {
      const c = med(stepC[k]!);
      const lib = med(stepLib[k]!);
      const lean = med(stepLean[k]!);
      return [name, formatNs(c), formatNs(lib), formatNs(lean), formatDelta(lib - c), formatDelta(lean - c), formatNs(summarize(stepLib[k]!).p99)];
    });
    const tidMed = med(tid);
    rows.push(['control-tid', '–', formatNs(tidMed), '(cached)', formatDelta(tidMed), '', formatNs(summarize(tid).p99)]);
    const total = (xs: number[][]): number => xs.reduce((a, x) => a + med(x), 0);
    const tc = total(stepC);
    const tl = total(stepLib) + tidMed;
    const tn = total(stepLean);
    rows.push(['(sum of medians)', formatNs(tc), formatNs(tl), formatNs(tn), formatDelta(tl - tc), formatDelta(tn - tc), '']);
    if (replica.libPages !== replica.leanPages || replica.leanPages === 0) throw new Error(`sandbox: the replicas' resets copied ${replica.libPages} and ${replica.leanPages} pages`);
    console.log(`\nper step of one call + reset (${n} calls each, alternating; lib = SandboxVm.call's calls, lean = buffers encoded once; ${replica.leanPages} pages per reset; medians unless noted):`);
    console.log(table(['step', 'C', 'lib', 'lean', 'lib − C', 'lean − C', 'lib p99'], rows, new Set([1, 2, 3, 4, 5, 6])));

    const fullSt = full.map((l) => summarize(l));
    const fullSum = fullSt.reduce((a, x) => a + x.median, 0);
    console.log(`\nSandboxVm's reset beyond the C loop's (reset.ts: the register restore and the settle; C does KVM_SET_REGS + KVM_SET_FPU only), ${n} resets:`);
    console.log(table(
      ['ioctl', 'median', 'p99'],
      [...FULL_RESET_STEPS.map((name, i) => [name, formatNs(fullSt[i]!.median), formatNs(fullSt[i]!.p99)]), ['(sum of medians)', formatNs(fullSum), '']],
      new Set([1, 2]),
    ));

    const st = layers.map((l) => summarize(l));
    const c = st[0]!.median;
    console.log(`\nlayers of a pool call (${n} calls each, alternating):`);
    console.log(table(
      ['layer', 'median', 'p99', 'median − C'],
      layerNames.map((name, i) => [name, formatNs(st[i]!.median), formatNs(st[i]!.p99), NOT_VS_C.has(i) ? '' : formatDelta(st[i]!.median - c)]),
      new Set([1, 2, 3]),
    ));
    const sp = split.map((l) => summarize(l));
    const mt = summarize(mainTotal);
    console.log(`\none SandboxPool.call on 1 thread, by its time stamps (${n} calls, medians; the hops include waking the other thread):`);
    console.log(table(
      ['part', 'median', 'p99'],
      [...splitNames.map((name, i) => [name, formatNs(sp[i]!.median), formatNs(sp[i]!.p99)]),
        ['main-thread time per call (before + after)', formatNs(mt.median), formatNs(mt.p99)],
        ['channel hops per call', '2', ''],
        ['KVM_RUN exits per call (lean replica)', String(replica.leanExits), '']],
      new Set([1, 2]),
    ));
    const m = st.map((x) => x.median);
    console.log(
      `pages per reset: C ${s.proc.readyWords[0]}, C with A/D preset ${s.procAd.readyWords[0]}\n` +
        `SandboxPool.call − SandboxVm.call in this thread = ${formatDelta(m[10]! - m[2]!)}; ` +
        `piscina round trip − SandboxVm.call in its worker = ${formatDelta(m[6]! - m[7]!)}; ` +
        `SAB channel round trip − SandboxVm.call in its worker = ${formatDelta(m[8]! - m[9]!)} ` +
        `(no-op round trips: piscina ${formatNs(m[4]!)}, SAB channel ${formatNs(m[5]!)})`,
    );
  } finally {
    await channel.close();
    await vmChannel.close();
    await piscina.close();
    await vmPiscina.close();
    inThread.close();
    replica.close();
  }
}
