/**
 * One micro-VM running an unmodified static x86-64 Linux executable, in the calling thread, with
 * no guest kernel: the program runs at CPL 3 on an identity map, and its syscalls come to the
 * syscall layer (syscall-layer.ts) through the LSTAR stub (syscall-stub.ts) and one port exit.
 *
 * Guest memory:
 *   [0x1000 system tables | 0xb000 stub (read-only) | 0xc000 scratch][1 MiB … image … brk →]
 *   [← mmap][guard page][stack, top of memory]           (page 0 unmapped: NULL faults)
 *
 * Pristine state and warm start: the state right at the entry point is captured first; then,
 * by default, the program runs to its first read of stdin (or to kvmpool_checkpoint()) and the
 * state there is captured instead, so every call resumes a program that has already started
 * up, with fresh input. A program that exits before reading stdin keeps the entry snapshot.
 * The captured state is: the pages that differ from zero (kept sparsely: untouched memory costs
 * nothing), the vCPU state (sandbox/reset.ts) and the general registers, and the syscall layer's
 * process state (break, mmap allocator, files, signal mask, output so far). After every call
 * the pages the call dirtied (the dirty log and the host's own writes) are put back or zeroed,
 * and the rest is restored.
 */
import { randomBytes } from 'node:crypto';
import { AbortError, GuestCrashError, SandboxTimeoutError, SandboxWorkerError } from '../errors.js';
import { describeExit } from '../exits.js';
import { Kvm } from '../kvm.js';
import { guestCpuid } from '../cpu/cpuid.js';
import { EFER, RFLAGS } from '../cpu/descriptors.js';
import { setVcpuMode, writeModeTables } from '../cpu/modes.js';
import { KVM_REGS, KVM_SYNC_X86, encode, type KvmRegs } from '../ffi/index.js';
import { loadElf, symbolize, type ElfImage } from '../loader/elf.js';
import type { MemorySlot } from '../memory.js';
import { KICK_SIGNAL } from '../machine/vcpu-lifecycle.js';
import { ThreadTimer, blockSignal, consumePending, currentTid, runMaskWithout } from '../signals.js';
import { OWNED, releaseMade, releaseVia, type OwnedBlock, type OwnedResources } from '../thread-resources.js';
import { PAGE_SIZE } from '../util/size.js';
import type { Vcpu } from '../vcpu.js';
import type { Vm } from '../vm.js';
import { CALL_CONTROL, type CallOptions } from '../sandbox/sandbox-vm.js';
import { OBSERVABLE_MSRS, PristineCpu, hasSyncRegs } from '../sandbox/reset.js';
import { DirtyTracker } from '../sandbox/dirty-tracker.js';
import { PristinePages } from '../sandbox/pristine-pages.js';
import { buildProcessStack, standardAuxv } from './process-stack.js';
import type { ProcessLayout, ProcessState } from './process-state.js';
import {
  ERROR_CODE_VECTORS, FAULT_HANDLERS, FAULT_PORT, FAULT_SIGNALS, FAULT_STACK, IDT_ADDRESS, IDT_VECTORS, SCRATCH_ADDRESS, STUB_ADDRESS, STUB_RESUME_OFFSET,
  STUB_CODE, SYSCALL_PORT, VECTOR_NAMES, enableSyscalls, faultTables,
} from './syscall-stub.js';
import type { LinuxHostCall } from './host-call.js';
import { SyscallLayer, type LinuxProgramConfig, type RunEnd, type SyscallStats } from './syscall-layer.js';

/** The stub's `out %al, $SYSCALL_PORT` (2 bytes, just before where a served syscall resumes). */
const STUB_OUT = STUB_ADDRESS + BigInt(STUB_RESUME_OFFSET - 2);
/** Where the TSS's I/O permission bitmap starts (cpu/modes.ts). */
const TSS_IOMAP_OFFSET = 0x68;
/** The lowest address of the program's part of memory (the image is linked above it). */
export const USER_MIN = 0x10_0000;
const SYSTEM_AREA = 0x1000n;
/** Where a position-independent (static-PIE) executable is loaded. */
export const PIE_BASE = 0x40_0000n;
/** Room the program needs beside its image and stack, at the least. */
const MIN_HEAP = 1 << 20;

/** Where a Linux program's pristine state is captured: at its first read of stdin, at its entry point, or at `kvmpool_checkpoint()`. */
export type LinuxStart = 'first-read' | 'entry' | 'checkpoint';

export interface LinuxVmOptions {
  image: ElfImage;
  /** argv[0] and AT_EXECFN. */
  execPath: string;
  argv: readonly string[];
  env: readonly string[];
  config: LinuxProgramConfig;
  /** Guest memory in bytes (a multiple of 2 MiB). */
  memory: number;
  /** Stack bytes at the top of memory (a multiple of 4 KiB). */
  stackSize: number;
  start: LinuxStart;
  /** Time limit of the start-up run to the warm-start point (ms, 0: none). */
  initTimeoutMs?: number;
  kvmPath?: string;
  owned?: OwnedBlock;
  /** Serves KVMPOOL_SYSCALL.HOST_CALL (host-call.ts); without it the program's host calls get ENOSYS. */
  hostCall?: LinuxHostCall;
  /**
   * Stdin of one run made once the pristine state is captured. The pages it writes become the
   * pages every reset keeps writable and puts back (dirty-tracker.ts). Without it, the pages
   * start-up wrote are. Its result is dropped.
   */
  warmUp?: Uint8Array;
}

export interface LinuxCallInput {
  stdin: Uint8Array;
  /** Only where the pristine state is the entry point (start 'entry'). */
  argv?: readonly string[];
  env?: readonly string[];
}

export interface LinuxCallResult {
  stdout: Uint8Array;
  stderr: Uint8Array;
  /** The exit status (0–255), or null when a signal ended the program. */
  exitCode: number | null;
  /** The signal that ended the program (e.g. 6 for SIGABRT), or 0. */
  signal: number;
  /** What ended the program when a CPU exception did (e.g. "page fault (#PF) at 0x0, rip 0x401234 main+0x14"). */
  fault?: string;
  /** Bytes of stdout / stderr dropped past maxOutput (outputLimit 'truncate'). */
  stdoutDropped: number;
  stderrDropped: number;
  stats: SyscallStats & { resetPages: number };
}

/**
 * Where a call's time went, summed over the calls made while `LinuxVm.profile` is set (ns, from
 * process.hrtime; for the benchmarks' --profile). Off, a call pays one branch per exit.
 */
export interface LinuxVmProfile {
  /** Inside vcpu.run(): KVM_RUN (guest time, entry and exit) and reading the exit. */
  kvmRunNs: number;
  exits: number;
  /** The syscall layer serving the syscall exits. */
  serveNs: number;
  /** Reset: the pending exit settled (after an unclean end). */
  settleNs: number;
  /** Reset: KVM_GET_DIRTY_LOG and the page list. */
  dirtyLogNs: number;
  /** Reset: dirtied pages put back or zeroed (how many: the call's `stats.resetPages`). */
  copyNs: number;
  /** Reset: registers and the rest of the vCPU state restored. */
  cpuNs: number;
  /** Reset: the syscall layer's process state cloned from the pristine one. */
  stateNs: number;
}

/** A zeroed LinuxVmProfile, to set as `LinuxVm.profile`. */
export function linuxVmProfile(): LinuxVmProfile {
  return { kvmRunNs: 0, exits: 0, serveNs: 0, settleNs: 0, dirtyLogNs: 0, copyNs: 0, cpuNs: 0, stateNs: 0 };
}

const now = (): number => Number(process.hrtime.bigint());

interface Pristine {
  pages: PristinePages;
  cpu: PristineCpu;
  regs: KvmRegs;
  state: ProcessState;
  /** A syscall (stdin's first read) was stopped in and is served at the start of each call. */
  pending: boolean;
  at: LinuxStart;
}

export class LinuxVm {
  readonly #kvm: Kvm;
  readonly #vm: Vm;
  readonly #vcpu: Vcpu;
  readonly #dirty: DirtyTracker;
  readonly #mem: Uint8Array;
  readonly #opts: LinuxVmOptions;
  readonly #timer: ThreadTimer;
  readonly #layer: SyscallLayer;
  readonly #hostDirty = new Set<number>();
  readonly #tid = currentTid();
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));
  #pristine!: Pristine;
  /** Where the pristine stack's AT_RANDOM bytes are (refreshed for every call that uses that stack). */
  #randomAt = 0n;
  /** AT_HWCAP: CPUID leaf 1 EDX as the guest sees it. */
  #hwcap = 0;
  #broken: Error | undefined;
  /** KVM_CAP_SYNC_REGS: registers in and out through kvm_run (sandbox-vm.ts). */
  #sync = false;
  /** The call ended by exit/exit_group at the stub's OUT: the short reset (`#atStubOut`). */
  #cleanEnd = false;
  /** Resets that took the short path (after a clean exit) and the full path, for stats and tests. */
  readonly resetPaths = { short: 0, full: 0 };
  /** The CPU exception that ended the current call, described. */
  #fault: string | undefined;
  /** The running call's deadline and control words (for sleeps). */
  #deadline = Infinity;
  #control: Int32Array | undefined;
  calls = 0;
  /** Set it (linuxVmProfile()) to have run() and reset() sum where their time goes. */
  profile: LinuxVmProfile | undefined;

  private constructor(kvm: Kvm, vm: Vm, vcpu: Vcpu, slot: MemorySlot, opts: LinuxVmOptions, layout: ProcessLayout) {
    this.#kvm = kvm;
    this.#vm = vm;
    this.#vcpu = vcpu;
    // Manual protection only where a hot set will be kept (start-up's or a warm-up's).
    this.#dirty = new DirtyTracker(vm, slot, opts.start !== 'entry' || opts.warmUp ? {} : { hotMax: 0 });
    this.#mem = slot.bytes;
    this.#opts = opts;
    this.#layer = new SyscallLayer(this.#mem, opts.config, layout, {
      markDirty: (at, len) => {
        for (let p = Math.floor(at / PAGE_SIZE); p * PAGE_SIZE < at + len; p++) this.#hostDirty.add(p);
      },
      setSegmentBase: (which, value) => {
        try {
          vcpu.setMsrs([{ index: which === 'fs' ? OBSERVABLE_MSRS.FS_BASE : OBSERVABLE_MSRS.GS_BASE, data: value }]);
          return true;
        } catch {
          return false;
        }
      },
      getSegmentBase: (which) => vcpu.getMsrs([which === 'fs' ? OBSERVABLE_MSRS.FS_BASE : OBSERVABLE_MSRS.GS_BASE])[0]?.data ?? 0n,
      sleep: (ms) => this.#sleep(ms),
      ...(opts.hostCall ? { hostCall: opts.hostCall } : {}),
    });
    this.#timer = new ThreadTimer(KICK_SIGNAL); // last: nothing after it can throw
    opts.owned?.own(OWNED.timer, { timerId: this.#timer.id });
  }

  /** The fds, the kvm_run mapping and the timer this VM holds. */
  get resources(): Required<OwnedResources> {
    const run = this.#vcpu.runArea;
    return { kvmFd: this.#kvm.fd, vmFd: this.#vm.fd, vcpuFd: this.#vcpu.fd, runAddress: run.address, runSize: run.size, timerId: this.#timer.id };
  }

  /** Where the pristine state was captured: 'entry' also when the program exits before reading stdin. */
  get start(): LinuxStart {
    return this.#pristine.at;
  }

  static create(opts: LinuxVmOptions): LinuxVm {
    const layout = linuxLayout(opts);
    blockSignal(KICK_SIGNAL);
    consumePending(KICK_SIGNAL);
    const owned = opts.owned;
    const kvm = Kvm.open(opts.kvmPath);
    owned?.own(OWNED.kvm, { kvmFd: kvm.fd });
    let vm: Vm | undefined;
    let vcpu: Vcpu | undefined;
    let s: LinuxVm | undefined;
    try {
      vm = kvm.createVm();
      owned?.own(OWNED.vm, { vmFd: vm.fd });
      const slot = vm.addMemory({ guestAddress: 0, size: opts.memory, dirtyLog: true });
      const mode = { systemArea: SYSTEM_AREA, mapSize: opts.memory, protectSystemArea: true, protectedEnd: BigInt(SCRATCH_ADDRESS), unmapNullPage: true };
      writeModeTables(vm.memory, 'user', mode);
      vm.memory.write(STUB_ADDRESS, STUB_CODE);
      const faults = faultTables();
      vm.memory.write(FAULT_HANDLERS, faults.handlers);
      vm.memory.write(IDT_ADDRESS, faults.idt);
      vm.memory.writeU64(SYSTEM_AREA + 0x1000n + 4n, BigInt(FAULT_STACK)); // TSS.RSP0
      // Port I/O as Linux gives a program: none. The program runs with IOPL 0, and the TSS I/O
      // bitmap grants only the stub's port (kvm_pvm runs the stub at CPL 3 and checks the bitmap;
      // on VT-x the stub runs at CPL 0). Any other in/out, and cli/sti, is #GP: SIGSEGV.
      const bitmap = SYSTEM_AREA + 0x1000n + BigInt(TSS_IOMAP_OFFSET);
      vm.memory.fill(bitmap, 0x2000, 0xff);
      vm.memory.writeU8(bitmap + BigInt(SYSCALL_PORT >> 3), 0xff & ~(1 << (SYSCALL_PORT & 7)));
      loadElf(opts.image, vm.memory, [
        { start: 0n, end: BigInt(USER_MIN), what: 'low area (system tables, syscall stub)' },
        { start: BigInt(layout.mmapTop), end: BigInt(opts.memory), what: 'stack' },
      ]);
      vcpu = vm.createVcpu(0);
      owned?.own(OWNED.vcpu, { vcpuFd: vcpu.fd, runAddress: vcpu.runArea.address, runSize: vcpu.runArea.size });
      const cpuid = guestCpuid(kvm);
      vcpu.setCpuid(cpuid);
      setVcpuMode(vcpu, 'user', mode);
      const sregs = vcpu.getSregs();
      sregs.efer |= EFER.SCE;
      sregs.idt = { base: IDT_ADDRESS, limit: 16 * IDT_VECTORS - 1, padding: sregs.idt.padding };
      vcpu.setSregs(sregs);
      enableSyscalls(vcpu);
      vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
      s = new LinuxVm(kvm, vm, vcpu, slot, opts, layout);
      s.#hwcap = cpuid.find((e) => e.function === 1)?.edx ?? 0;
      s.#startUp();
      if (opts.warmUp) s.#warmUp(opts.warmUp);
      return s;
    } catch (e) {
      if (s) s.close();
      else releaseMade(owned, { kvm, vm, vcpu });
      throw e;
    }
  }

  /** Writes the process stack for argv/env; returns the initial rsp and where its AT_RANDOM bytes are. */
  #writeStack(argv: readonly string[], env: readonly string[]): { sp: bigint; randomAt: bigint } {
    const { image, execPath, config } = this.#opts;
    const stack = buildProcessStack({
      top: BigInt(this.#opts.memory),
      argv,
      env,
      execfn: execPath,
      random: randomBytes(16),
      auxv: standardAuxv(image, config.ids, this.#hwcap),
    });
    if (stack.sp < BigInt(this.#layer.layout.stackBottom)) throw new RangeError(`argv and env (${stack.bytes.length} bytes) do not fit the ${this.#opts.stackSize}-byte stack`);
    this.#mem.set(stack.bytes, Number(stack.sp));
    this.#markHostDirty(Number(stack.sp), stack.bytes.length);
    return { sp: stack.sp, randomAt: stack.randomAt };
  }

  #markHostDirty(at: number, len: number): void {
    for (let p = Math.floor(at / PAGE_SIZE); p * PAGE_SIZE < at + len; p++) this.#hostDirty.add(p);
  }

  #entryRegs(sp: bigint): KvmRegs {
    const z = 0n;
    return { rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: sp, rbp: z, r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z, rip: this.#opts.image.entry, rflags: RFLAGS.FIXED };
  }

  /** Captures the entry state, then (unless start is 'entry') runs to the warm-start point and captures that. */
  #startUp(): void {
    this.#sync = hasSyncRegs(this.#vm);
    // Only the registers come out at every exit (cheap); sregs and events go in when reset writes them.
    if (this.#sync) this.#vcpu.syncValid = KVM_SYNC_X86.REGS;
    const { sp, randomAt } = this.#writeStack(this.#opts.argv, this.#opts.env);
    this.#randomAt = randomAt;
    const regs = this.#entryRegs(sp);
    this.#vcpu.setRegs(regs);
    this.#dirty.restart(); // the log from here on: the guest's own writes
    const pages = PristinePages.capture(this.#mem);
    this.#hostDirty.clear();
    this.#pristine = { pages, cpu: new PristineCpu(this.#vm, this.#vcpu), regs, state: this.#layer.state.clone(), pending: false, at: 'entry' };
    if (this.#opts.start === 'entry') return;
    const layer = this.#layer;
    layer.captureAtFirstRead = this.#opts.start === 'first-read';
    layer.captureAtCheckpoint = this.#opts.start === 'checkpoint';
    const initTimeoutMs = this.#opts.initTimeoutMs ?? 0;
    let end: RunEnd;
    try {
      end = this.#runCall('start-up', initTimeoutMs, undefined, 'its initTimeoutMs');
    } finally {
      layer.captureAtFirstRead = false;
      layer.captureAtCheckpoint = false;
    }
    if (end.kind === 'capture') {
      const cpu = new PristineCpu(this.#vm, this.#vcpu); // settles the stopped syscall's exit first
      // The pages start-up wrote: the new pristine copies, and the hot set (dirty-tracker.ts).
      const dirty = this.#dirty.capture();
      for (const p of this.#hostDirty) dirty.push(p);
      this.#hostDirty.clear();
      this.#pristine = { pages: pages.updated(this.#mem, dirty), cpu, regs: this.#vcpu.getRegs(), state: layer.state.clone(), pending: true, at: this.#opts.start };
      return;
    }
    if (end.kind === 'error') throw end.error;
    this.reset(); // it ended before reading stdin: every call runs from the entry point
  }

  /** Runs one call: the program gets `stdin`, runs to exit (or a fatal signal), and the VM is reset. */
  run(input: LinuxCallInput, options: CallOptions = {}): LinuxCallResult {
    if (this.#broken) throw new SandboxWorkerError('this sandbox VM could not be reset after an earlier call; replace it', this.#broken);
    const layer = this.#layer;
    let end: RunEnd;
    try {
      this.calls++;
      layer.resetStats();
      for (const f of layer.state.fds) {
        if (f?.kind === 'stdin') {
          f.data = input.stdin;
          f.pos = 0;
        }
      }
      const p = this.#pristine;
      let regs = p.regs;
      if (input.argv || input.env) {
        if (p.at !== 'entry') throw new RangeError(`argv and env per call need start: 'entry' (this program's pristine state is at its ${p.at === 'checkpoint' ? 'checkpoint' : 'first read of stdin'})`);
        // This call's own stack, with its own AT_RANDOM; the pristine one (and #randomAt) is back after the reset.
        regs = this.#entryRegs(this.#writeStack(input.argv ?? this.#opts.argv, input.env ?? this.#opts.env).sp);
      } else {
        // Fresh AT_RANDOM bytes: clones of one snapshot must not share them.
        const at = Number(this.#randomAt);
        this.#mem.set(randomBytes(16), at);
        this.#markHostDirty(at, 16);
      }
      if (this.#sync) this.#vcpu.queueSync('regs', encode(KVM_REGS, regs));
      else this.#vcpu.setRegs(regs);
      end = this.#runCall('program', options.timeoutMs ?? 0, options.control, 'its', p.pending);
    } catch (e) {
      this.reset();
      throw e;
    }
    const s = layer.state;
    const result: LinuxCallResult = {
      stdout: s.stdout.bytes(),
      stderr: s.stderr.bytes(),
      exitCode: end.kind === 'exit' ? end.code : null,
      signal: end.kind === 'signal' ? end.signal : 0,
      ...(this.#fault ? { fault: this.#fault } : {}),
      stdoutDropped: s.stdout.dropped,
      stderrDropped: s.stderr.dropped,
      stats: { ...layer.stats(), resetPages: 0 },
    };
    result.stats.resetPages = this.reset();
    if (end.kind === 'error') throw end.error;
    return result;
  }

  /** Runs the vCPU until the layer ends the run (exit, signal, capture, error); throws on a crash, time-out or cancel. */
  #runCall(what: string, timeoutMs: number, ctl: Int32Array | undefined, limit: string, servePending = false): RunEnd {
    const layer = this.#layer;
    const vcpu = this.#vcpu;
    layer.end = undefined;
    this.#fault = undefined;
    this.#deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
    this.#control = ctl;
    if (ctl) Atomics.store(ctl, CALL_CONTROL.TID, this.#tid);
    if (timeoutMs > 0) this.#timer.arm(timeoutMs);
    try {
      const prof = this.profile;
      if (servePending) this.#serve(prof);
      for (;;) {
        if (layer.end) return layer.end;
        if (ctl && Atomics.load(ctl, CALL_CONTROL.CANCEL) !== 0) throw new AbortError(`sandbox call ${what} was aborted`);
        if (performance.now() >= this.#deadline) throw new SandboxTimeoutError(what, timeoutMs, limit);
        const t0 = prof ? now() : 0;
        const exit = vcpu.run();
        if (prof) {
          prof.kvmRunNs += now() - t0;
          prof.exits++;
        }
        if (exit.kind === 'io' && exit.port === SYSCALL_PORT && exit.direction === 'out') {
          this.#serve(prof);
          // serve() may have ended the call (TypeScript still has layer.end narrowed to undefined).
          if ((layer.end as RunEnd | undefined)?.kind === 'exit') this.#cleanEnd = this.#atStubOut();
          continue;
        }
        if (exit.kind === 'io' && exit.port === FAULT_PORT && exit.direction === 'out') {
          layer.end = this.#faulted(exit.data[0] ?? 0);
          continue;
        }
        if (exit.kind === 'intr') {
          consumePending(KICK_SIGNAL);
          vcpu.immediateExit = false;
          continue;
        }
        let rip = 0n;
        try {
          rip = vcpu.getRegs().rip;
        } catch {
          // unreadable after a failed entry
        }
        const where = symbolize(this.#opts.image, rip);
        throw new GuestCrashError(0, `${describeExit(exit)} (the program faulted: there is no guest kernel to deliver a signal)`, rip, where);
      }
    } finally {
      if (timeoutMs > 0) this.#timer.disarm();
      if (ctl) Atomics.store(ctl, CALL_CONTROL.TID, 0);
      this.#control = undefined;
    }
  }

  #serve(prof: LinuxVmProfile | undefined): void {
    if (!prof) return this.#layer.serve();
    const t0 = now();
    try {
      this.#layer.serve();
    } finally {
      prof.serveNs += now() - t0;
    }
  }

  /** A CPU exception at CPL 3: the signal Linux would send, and what happened where (from the exception frame). */
  #faulted(vector: number): RunEnd {
    const frame = FAULT_STACK - (ERROR_CODE_VECTORS.has(vector) ? 48 : 40);
    const view = new DataView(this.#mem.buffer, this.#mem.byteOffset);
    const rip = view.getBigUint64(frame + (ERROR_CODE_VECTORS.has(vector) ? 8 : 0), true);
    const what = VECTOR_NAMES[vector] ?? `exception ${vector}`;
    const at = vector === 14 ? ` at 0x${this.#vcpu.getSregs().cr2.toString(16)}` : '';
    const sym = symbolize(this.#opts.image, rip);
    this.#fault = `${what}${at}, rip 0x${rip.toString(16)}${sym ? ` (${sym})` : ''}`;
    return { kind: 'signal', signal: FAULT_SIGNALS[vector] ?? 11 };
  }

  #sleep(ms: number): void {
    const until = Math.min(performance.now() + ms, this.#deadline);
    for (;;) {
      const left = until - performance.now();
      if (left <= 0) return;
      if (this.#control && Atomics.load(this.#control, CALL_CONTROL.CANCEL) !== 0) return;
      Atomics.wait(this.#sleeper, 0, 0, Math.min(left, 50));
    }
  }

  /**
   * Whether the exit just served was the stub's own `out %al, $SYSCALL_PORT` (read-only code),
   * with rip at it (its completion pending: KVM skips it only while rip is still there, and no
   * call starts there) or past it (hosts that finish the OUT before exiting). Then the reset
   * needs no settle and no debug-register or MSR restore (sandbox-vm.ts, reset.ts).
   */
  #atStubOut(): boolean {
    if (!this.#sync) return false;
    const rip = this.#vcpu.syncedRip();
    return (rip === STUB_OUT || rip === STUB_OUT + 2n) && this.#pristine.regs.rip !== STUB_OUT;
  }

  /**
   * One run of the host's own input, from the pristine state; the pages it wrote become the hot
   * set (dirty-tracker.ts). Its result is dropped, and a failure only leaves the set empty: the
   * VM is reset as after any call.
   */
  #warmUp(stdin: Uint8Array): void {
    this.#dirty.restart(); // the start-up set goes: every page is logged again from here
    this.#asHot = true;
    try {
      // Bounded like the start-up: a warm-up that never ends times out (the set is what it wrote by then).
      this.run({ stdin }, { timeoutMs: this.#opts.initTimeoutMs ?? 0 });
      this.calls--; // not a caller's
    } catch {
      // the reset in run() has run; the set is what the run wrote before it failed
    } finally {
      this.#asHot = false;
    }
  }
  /** The next reset makes the pages it puts back the hot set (`#warmUp`). */
  #asHot = false;

  /** Back to the pristine state: pending exit settled, dirty pages restored or zeroed, vCPU and process state. */
  reset(): number {
    const p = this.#pristine;
    const clean = this.#cleanEnd;
    this.#cleanEnd = false;
    if (clean) this.resetPaths.short++;
    else this.resetPaths.full++;
    // Profiling only: each lap adds the time since the last to one of the reset's counters.
    const prof = this.profile;
    let t = prof ? now() : 0;
    const lap = prof && ((key: 'settleNs' | 'dirtyLogNs' | 'copyNs' | 'cpuNs' | 'stateNs'): void => {
      const t1 = now();
      prof[key] += t1 - t;
      t = t1;
    });
    // A step that fails leaves the VM half reset: it is marked broken and serves no more calls.
    let dirty: number[];
    try {
      if (!clean) p.cpu.settle(this.#vcpu);
      lap?.('settleNs');
      dirty = this.#asHot ? this.#dirty.capture() : this.#dirty.take();
      for (const page of this.#hostDirty) dirty.push(page);
      this.#hostDirty.clear();
      lap?.('dirtyLogNs');
      p.pages.restore(this.#mem, dirty);
      lap?.('copyNs');
      p.cpu.restore(this.#vcpu, { short: clean, sync: this.#sync, compare: false });
      lap?.('cpuNs');
      this.#layer.state = p.state.clone();
      lap?.('stateNs');
    } catch (e) {
      this.#broken = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
    return dirty.length;
  }

  close(): void {
    const owned = this.#opts.owned;
    releaseVia(owned, OWNED.timer, () => this.#timer.close());
    releaseVia(owned, OWNED.vcpu, () => this.#vcpu.close());
    releaseVia(owned, OWNED.vm, () => this.#vm.close());
    releaseVia(owned, OWNED.kvm, () => this.#kvm.close());
  }
}

/** The memory areas for these options; throws RangeError naming the numbers when they do not fit. */
export function linuxLayout(o: Pick<LinuxVmOptions, 'image' | 'memory' | 'stackSize'>): ProcessLayout {
  const { image, memory, stackSize } = o;
  if (memory % 0x20_0000 !== 0) throw new RangeError(`memory (${memory}) must be a multiple of 2 MiB`);
  if (stackSize % PAGE_SIZE !== 0 || stackSize < 64 * 1024) throw new RangeError(`stackSize (${stackSize}) must be a multiple of 4 KiB and at least 64 KiB`);
  let end = 0n;
  for (const s of image.segments) {
    if (s.vaddr < BigInt(USER_MIN)) throw new RangeError(`${image.source}: segment at 0x${s.vaddr.toString(16)} is below 0x${USER_MIN.toString(16)}, where the system tables live`);
    const e = s.vaddr + BigInt(s.memsz);
    if (e > end) end = e;
  }
  const brkStart = Math.ceil(Number(end) / PAGE_SIZE) * PAGE_SIZE;
  const stackBottom = memory - stackSize;
  const mmapTop = stackBottom - PAGE_SIZE;
  const least = brkStart + MIN_HEAP + stackSize + PAGE_SIZE;
  if (least > memory) {
    throw new RangeError(`${image.source}: memory of ${memory} bytes is too small: the image ends at 0x${brkStart.toString(16)}, and with a ${stackSize}-byte stack and 1 MiB of heap the program needs at least ${Math.ceil(least / 0x20_0000) * 2} MiB`);
  }
  return { userMin: USER_MIN, memory, brkStart, mmapTop, stackBottom };
}
