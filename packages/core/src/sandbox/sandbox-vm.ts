/**
 * One sandbox micro-VM, run in the calling thread: a single vCPU in 64-bit user mode, a guest
 * ELF loaded and initialised once, and a pristine copy of its state. Every call starts from
 * that state: afterwards any pending exit is completed, the pages the call dirtied (KVM dirty
 * log, plus the pages the host wrote) are copied back, and the whole vCPU state is restored
 * (reset.ts says what that is and why it is complete). The page tables and system tables are
 * read-only to the guest (cpu/modes.ts `protectSystemArea`), so no call can change the
 * translation or the descriptors the next one runs with. What the guest sends the host is
 * bounded in host-call.ts.
 *
 * Guest memory:  [system area 0x1000–0xafff][call area 0xc000][image from 1 MiB]…[stack]
 *                [input region][output region] (the last two at the top).
 *
 * A guest built with musl (libc-process.ts says where its heap, stack and syscall stub go) is
 * started once through musl's own _start, which sets up TLS, environ and stdio and calls the
 * SDK's main; main hands control back (PORT_RETURN) and kvmpool_init and the capture follow as
 * for any guest. Its syscalls (port 0xf5) are served here by the syscall layer, whose process
 * state (break, mmap allocator) is part of the pristine state and put back by every reset.
 */
import { AbortError, GuestCrashError, GuestError, HostFunctionError, SandboxTimeoutError, SandboxWorkerError } from '../errors.js';
import { signalName } from '../linux/errno.js';
import type { ProcessState } from '../linux/process-state.js';
import { STUB_ADDRESS, SYSCALL_PORT, enableSyscalls, syscallStubCode } from '../linux/syscall-stub.js';
import type { RunEnd } from '../linux/syscall-layer.js';
import { describeExit } from '../exits.js';
import { Kvm } from '../kvm.js';
import { guestCpuid } from '../cpu/cpuid.js';
import { EFER, RFLAGS } from '../cpu/descriptors.js';
import { setVcpuMode, writeModeTables } from '../cpu/modes.js';
import { KVM_REGS } from '../ffi/index.js';
import { loadElf, symbolize, type ElfImage } from '../loader/elf.js';
import type { MemorySlot } from '../memory.js';
import { KICK_SIGNAL } from '../machine/vcpu-lifecycle.js';
import { ThreadTimer, blockSignal, consumePending, currentTid, runMaskWithout } from '../signals.js';
import { OWNED, releaseMade, releaseVia, type OwnedBlock, type OwnedResources } from '../thread-resources.js';
import { toBytesOrEmpty } from '../util/bytes.js';
import { PAGE_SIZE } from '../util/size.js';
import type { Vcpu } from '../vcpu.js';
import type { Vm } from '../vm.js';
import { CALL, CALL_AREA, IMAGE_MIN, PORT_HOSTCALL, PORT_RETURN } from './abi.js';
import { PrintLog, hostResultBytes, serveHostCall, type HostCallContext } from './host-call.js';
import { LIBC_PROTECTED_END, LIBC_SCRATCH, LibcSyscalls, isLibcGuest, libcLayout, libcProcessStack } from './libc-process.js';
import { OBSERVABLE_MSRS, PristineCpu, SYNC_ALL, hasSyncRegs } from './reset.js';
import { DirtyTracker } from './dirty-tracker.js';
import { PristinePages } from './pristine-pages.js';

const SYSTEM_AREA = 0x1000n;
const MIN_STACK = 64 * 1024;
/** Bytes left between main's frame and the first call's stack (musl guests). */
const MAIN_FRAME_GAP = 256n;

/**
 * A synchronous host function, exported by the `hostFunctions` module: it runs in the sandbox's
 * worker thread with the bytes the guest passed (`kvmpool_host_call(name, arg, len, result, cap)`) and
 * returns bytes (any `ArrayBufferView`), a string (UTF-8) or nothing; any other result, or a throw,
 * fails the call with `HostFunctionError`. A result longer than the guest's `cap` is refused.
 */
export type SyncHostFunction = (arg: Uint8Array) => Uint8Array | ArrayBufferView | string | void;
/** Runs a host function elsewhere (the main thread) and waits for it; returns its result bytes. */
export type RemoteHostCall = (name: string, arg: Uint8Array, resultCap: number) => Uint8Array;

export interface SandboxVmOptions {
  image: ElfImage;
  memory: number;
  inputSize: number;
  outputSize: number;
  hostFunctions?: Readonly<Record<string, SyncHostFunction>>;
  /** Names served by `remoteCall`. */
  remoteNames?: ReadonlySet<string>;
  remoteCall?: RemoteHostCall;
  kvmPath?: string;
  /** Time limit for kvmpool_init (ms, 0: none). */
  initTimeoutMs?: number;
  /**
   * Where to report each fd, the kvm_run mapping and the timer as soon as it exists (before
   * kvmpool_init runs), so that the owner of this thread can close them if it ends the thread
   * (thread-resources.ts); each is marked released before it is closed here.
   */
  owned?: OwnedBlock;
  /**
   * One call made once the pristine state is captured: the pages it writes become the pages
   * every reset keeps writable and puts back (dirty-tracker.ts). Without it, none are. Its
   * result is dropped.
   */
  warmUp?: { fn: string; input: Uint8Array };
}

export interface CallOptions {
  timeoutMs?: number;
  /** Word 0 non-zero: cancel. The thread's tid goes to word 1 while it runs (for kicks). */
  control?: Int32Array;
}

export interface CallResult {
  output: Uint8Array;
  /** What the guest printed: at most SANDBOX_LIMITS.PRINT_BYTES bytes in PRINT_RECORDS records. */
  prints: string[];
  /** Prints dropped whole past those limits. */
  printsDropped: number;
  /** Bytes of prints dropped past those limits (whole prints and cut ends). */
  printBytesDropped: number;
  /** Pages restored by the reset after the call. */
  resetPages: number;
}

export const CALL_CONTROL = { CANCEL: 0, TID: 1, WORDS: 2 } as const;

/** `out %al, (%dx)`: the SDK's return instruction. */
const OUT_AL_DX = 0xee;

/** @deprecated Use `toBytesOrEmpty` from util/bytes.ts (kept until pool.ts moves over). */
export function asBytes(v: Uint8Array | ArrayBufferView | string | void): Uint8Array {
  return toBytesOrEmpty(v, 'host function result');
}

export class SandboxVm {
  readonly #kvm: Kvm;
  readonly #vm: Vm;
  readonly #vcpu: Vcpu;
  readonly #slot: MemorySlot;
  readonly #dirty: DirtyTracker;
  readonly #mem: Uint8Array;
  readonly #view: DataView;
  readonly #opts: SandboxVmOptions;
  readonly #timer: ThreadTimer;
  #pristine!: PristinePages;
  /** The captured vCPU state (sregs, XSAVE, debug registers, events, MSRs). */
  #pristineCpu!: PristineCpu;
  /** Set when a reset could not complete: the VM must not run another call. */
  #broken: Error | undefined;
  /** struct kvm_regs for the next call, patched field by field. */
  readonly #regsBytes = new Uint8Array(KVM_REGS.size);
  readonly #regsView = new DataView(this.#regsBytes.buffer);
  readonly #tid = currentTid();
  readonly #entry: bigint;
  /** The SDK's return OUT (`_kvmpool_return`), if the guest has one. */
  readonly #returnAt: bigint | undefined;
  readonly #inputBase: number;
  readonly #outputBase: number;
  /** Where each call's stack starts (below main's frame for a musl guest). */
  #stackTop: bigint;
  /** A musl guest's syscall layer and its pristine process state; undefined for a freestanding guest. */
  readonly #libc: LibcSyscalls | undefined;
  #libcPristine: ProcessState | undefined;
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));
  /** The running call's deadline and control words (for a musl guest's sleeps). */
  #deadline = Infinity;
  #control: Int32Array | undefined;
  /** Pages the host wrote during a call (the dirty log sees only guest writes). */
  readonly #hostDirty = new Set<number>();
  #prints = new PrintLog();
  readonly #hostCalls: HostCallContext;
  /** KVM_CAP_SYNC_REGS with regs, sregs and events: the call's state goes in through kvm_run. */
  #sync = false;
  /** Set when the call ended by a plain OUT to the return port that reset may leave pending (see `reset`). */
  #cleanReturn = false;
  /** Resets that took the short path (after a clean return) and the full path, for stats and tests. */
  readonly resetPaths = { short: 0, full: 0 };
  /** Pages the reset keeps writable and always puts back (dirty-tracker.ts), and whether it can (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2). */
  get hotPages(): { now: number; enabled: boolean } {
    return { now: this.#dirty.hotPages, enabled: this.#dirty.manual };
  }
  /** Calls and resets, for stats. */
  calls = 0;
  resets = 0;

  private constructor(kvm: Kvm, vm: Vm, vcpu: Vcpu, slot: MemorySlot, opts: SandboxVmOptions, layout: { inputBase: number; outputBase: number }) {
    this.#kvm = kvm;
    this.#vm = vm;
    this.#vcpu = vcpu;
    this.#slot = slot;
    // Manual protection only where a hot set will be kept: without one it costs a second ioctl a reset.
    this.#dirty = new DirtyTracker(vm, slot, opts.warmUp ? {} : { hotMax: 0 });
    this.#mem = slot.bytes;
    this.#view = new DataView(slot.buffer);
    this.#opts = opts;
    // A musl guest starts at musl's _start (the ELF entry) once; calls enter at _kvmpool_entry.
    this.#entry = isLibcGuest(opts.image) ? opts.image.functions.get('_kvmpool_entry')! : opts.image.entry;
    this.#returnAt = opts.image.symbols.find((sym) => sym.name === '_kvmpool_return')?.value;
    this.#inputBase = layout.inputBase;
    this.#outputBase = layout.outputBase;
    this.#stackTop = BigInt(layout.inputBase);
    const prints = (): PrintLog => this.#prints;
    this.#hostCalls = {
      mem: this.#mem,
      view: this.#view,
      get prints() {
        return prints();
      },
      runHostFunction: (name, arg, cap) => this.#runHostFunction(name, arg, cap),
      markHostDirty: (at, len) => this.#markHostDirty(at, len),
    };
    if (isLibcGuest(opts.image)) {
      const msr = (which: 'fs' | 'gs'): number => (which === 'fs' ? OBSERVABLE_MSRS.FS_BASE : OBSERVABLE_MSRS.GS_BASE);
      this.#libc = new LibcSyscalls(this.#mem, libcLayout(opts.image, slot.size, layout.inputBase), {
        markDirty: (at, len) => this.#markHostDirty(at, len),
        setSegmentBase: (which, value) => {
          try {
            vcpu.setMsrs([{ index: msr(which), data: value }]);
            return true;
          } catch {
            return false;
          }
        },
        getSegmentBase: (which) => vcpu.getMsrs([msr(which)])[0]?.data ?? 0n,
        sleep: (ms) => this.#sleep(ms),
      }, prints);
    }
    this.#timer = new ThreadTimer(KICK_SIGNAL); // last: nothing after it can throw
    opts.owned?.own(OWNED.timer, { timerId: this.#timer.id });
  }

  /** The fds, the kvm_run mapping and the timer this VM holds (for an owner that must close them if this thread ends). */
  get resources(): Required<OwnedResources> {
    const run = this.#vcpu.runArea;
    return {
      kvmFd: this.#kvm.fd, vmFd: this.#vm.fd, vcpuFd: this.#vcpu.fd, runAddress: run.address, runSize: run.size, timerId: this.#timer.id,
    };
  }

  /** Builds the VM in this thread, loads the image, runs `kvmpool_init` if exported, captures the state. */
  static create(opts: SandboxVmOptions): SandboxVm {
    const { image, memory } = opts;
    const { inputBase, outputBase } = sandboxLayout(opts);
    const initTimeoutMs = opts.initTimeoutMs ?? 0;
    if (!Number.isFinite(initTimeoutMs) || initTimeoutMs < 0) throw new RangeError(`sandbox: initTimeoutMs must be a number ≥ 0 (got ${initTimeoutMs})`);
    blockSignal(KICK_SIGNAL);
    consumePending(KICK_SIGNAL);
    const owned = opts.owned;
    const kvm = Kvm.open(opts.kvmPath);
    owned?.own(OWNED.kvm, { kvmFd: kvm.fd });
    let vm: Vm | undefined;
    let vcpu: Vcpu | undefined;
    let s: SandboxVm | undefined;
    try {
      vm = kvm.createVm();
      owned?.own(OWNED.vm, { vmFd: vm.fd });
      const slot = vm.addMemory({ guestAddress: 0, size: memory, dirtyLog: true });
      const libc = isLibcGuest(image);
      const mode = {
        systemArea: SYSTEM_AREA, mapSize: Math.ceil(memory / 0x20_0000) * 0x20_0000, protectSystemArea: true,
        ...(libc ? { protectedEnd: LIBC_PROTECTED_END, unmapNullPage: true } : {}),
      };
      writeModeTables(vm.memory, 'user', mode);
      if (libc) vm.memory.write(STUB_ADDRESS, syscallStubCode(LIBC_SCRATCH));
      loadElf(image, vm.memory, [
        { start: 0n, end: IMAGE_MIN, what: 'low area (system tables and call area)' },
        { start: BigInt(inputBase), end: BigInt(memory), what: 'input/output regions' },
      ]);
      vcpu = vm.createVcpu(0);
      owned?.own(OWNED.vcpu, { vcpuFd: vcpu.fd, runAddress: vcpu.runArea.address, runSize: vcpu.runArea.size });
      const cpuid = guestCpuid(kvm);
      vcpu.setCpuid(cpuid);
      setVcpuMode(vcpu, 'user', mode);
      if (libc) {
        const sregs = vcpu.getSregs();
        sregs.efer |= EFER.SCE;
        vcpu.setSregs(sregs);
        enableSyscalls(vcpu);
      }
      vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
      s = new SandboxVm(kvm, vm, vcpu, slot, opts, { inputBase, outputBase });
      if (libc) s.#startLibc(cpuid.find((e) => e.function === 1)?.edx ?? 0, initTimeoutMs);
      if (image.functions.has('kvmpool_init')) s.#invoke('kvmpool_init', new Uint8Array(0), { timeoutMs: initTimeoutMs }, 'its initTimeoutMs');
      s.#capture();
      if (opts.warmUp) s.#warmUp(opts.warmUp.fn, opts.warmUp.input);
      return s;
    } catch (e) {
      // Every failure path releases what it made: the thread timer, the VM (vCPU, memory), the KVM fd.
      if (s) s.close();
      else releaseMade(owned, { kvm, vm, vcpu });
      throw e;
    }
  }

  get memorySize(): number {
    return this.#slot.size;
  }

  /** The exported functions of the guest. */
  get exports(): string[] {
    return [...this.#opts.image.functions.keys()].filter((n) => !n.startsWith('_') && !n.startsWith('kvmpool_') && !RUNTIME.has(n));
  }

  /**
   * Runs musl's start code (_start → __libc_start_main → the SDK's main) from a process stack
   * built here, to main's hand-over; each call's stack then starts below main's frame.
   */
  #startLibc(hwcap: number, timeoutMs: number): void {
    const libc = this.#libc!;
    const stack = libcProcessStack(this.#opts.image, libc.layout, this.#inputBase, hwcap);
    this.#mem.set(stack.bytes, Number(stack.sp));
    const o = KVM_REGS.offsets;
    const v = this.#regsView;
    this.#regsBytes.fill(0);
    v.setBigUint64(o.rip, this.#opts.image.entry, true);
    v.setBigUint64(o.rsp, stack.sp, true);
    v.setBigUint64(o.rflags, RFLAGS.FIXED | RFLAGS.IOPL3, true);
    this.#vcpu.setRegsBytes(this.#regsBytes);
    if (timeoutMs) this.#timer.arm(timeoutMs);
    try {
      this.#runToReturn('the C library start-up', timeoutMs ? performance.now() + timeoutMs : Infinity, timeoutMs, undefined, 'its initTimeoutMs');
    } finally {
      if (timeoutMs) this.#timer.disarm();
    }
    this.#stackTop = (this.#vcpu.getRegs().rsp - MAIN_FRAME_GAP) & ~15n;
    if (this.#stackTop - BigInt(libc.layout.stackBottom) < BigInt(MIN_STACK) / 2n) {
      throw new RangeError(`sandbox: the C library's start-up left ${this.#stackTop - BigInt(libc.layout.stackBottom)} bytes of stack`);
    }
  }

  #capture(): void {
    this.#pristineCpu = new PristineCpu(this.#vm, this.#vcpu); // settles init's return first
    this.#sync = hasSyncRegs(this.#vm);
    if (this.#sync) this.#vcpu.syncValid = SYNC_ALL;
    // Clear the log: from here on it lists what calls write. No page is hot unless a warmUp
    // call picks them (dirty-tracker.ts): a kvmpool_init that fills tables the calls only read
    // would otherwise have every reset copy them.
    this.#dirty.restart();
    this.#pristine = PristinePages.capture(this.#mem);
    this.#hostDirty.clear();
    if (this.#libc) {
      this.#libcPristine = this.#libc.state.clone();
      this.#libc.resetStats();
    }
  }

  /** Calls exported function `name` with `input`; the VM is reset afterwards, whatever happened. */
  call(name: string, input: Uint8Array, options: CallOptions = {}): CallResult {
    if (this.#broken) throw new SandboxWorkerError('this sandbox VM could not be reset after an earlier call; replace it', this.#broken);
    let output: Uint8Array;
    try {
      output = this.#invoke(name, input, options);
    } catch (e) {
      this.reset();
      throw e;
    }
    const prints = this.#prints;
    return { output, prints: prints.texts, printsDropped: prints.droppedRecords, printBytesDropped: prints.droppedBytes, resetPages: this.reset() };
  }

  /** Runs `name` to its return; `limit` names the time limit in a SandboxTimeoutError. */
  #invoke(name: string, input: Uint8Array, options: CallOptions, limit = 'its'): Uint8Array {
    const fn = this.#opts.image.functions.get(name);
    if (fn === undefined) throw new GuestError(`the guest exports no function ${JSON.stringify(name)}`, -1);
    if (input.length > this.#opts.inputSize) {
      throw new RangeError(`sandbox call ${name}: input of ${input.length} bytes exceeds the ${this.#opts.inputSize}-byte input region`);
    }
    this.calls++;
    this.#prints = new PrintLog();
    this.#mem.set(input, this.#inputBase);
    this.#markHostDirty(this.#inputBase, input.length); // reset puts the region back as it was
    // Every register is written: nothing of the previous call survives in them.
    const o = KVM_REGS.offsets;
    const v = this.#regsView;
    this.#regsBytes.fill(0);
    v.setBigUint64(o.rip, this.#entry, true);
    v.setBigUint64(o.rsp, this.#stackTop, true);
    v.setBigUint64(o.rflags, RFLAGS.FIXED | RFLAGS.IOPL3, true);
    v.setBigUint64(o.r15, fn, true);
    v.setBigUint64(o.rdi, BigInt(this.#inputBase), true);
    v.setBigUint64(o.rsi, BigInt(input.length), true);
    v.setBigUint64(o.rdx, BigInt(this.#outputBase), true);
    v.setBigUint64(o.rcx, BigInt(this.#opts.outputSize), true);
    if (this.#sync) this.#vcpu.queueSync('regs', this.#regsBytes);
    else this.#vcpu.setRegsBytes(this.#regsBytes);
    const ctl = options.control;
    const deadline = options.timeoutMs ? performance.now() + options.timeoutMs : Infinity;
    if (options.timeoutMs) this.#timer.arm(options.timeoutMs);
    try {
      this.#runToReturn(name, deadline, options.timeoutMs ?? 0, ctl, limit);
    } finally {
      if (options.timeoutMs) this.#timer.disarm();
    }
    const value = this.#view.getBigInt64(Number(CALL_AREA) + CALL.VALUE, true);
    if (value < 0n) throw new GuestError(`guest function ${name} returned error ${value}`, Number(value));
    if (value > BigInt(this.#opts.outputSize)) {
      throw new GuestError(`guest function ${name} returned ${value} bytes of output; the output region holds ${this.#opts.outputSize}`, -2);
    }
    return this.#mem.slice(this.#outputBase, this.#outputBase + Number(value));
  }

  #runToReturn(name: string, deadline: number, timeoutMs: number, ctl: Int32Array | undefined, limit: string): void {
    this.#deadline = deadline;
    this.#control = ctl;
    if (ctl) Atomics.store(ctl, CALL_CONTROL.TID, this.#tid);
    try {
      this.#run(name, deadline, timeoutMs, ctl, limit);
    } finally {
      if (ctl) Atomics.store(ctl, CALL_CONTROL.TID, 0);
      this.#control = undefined;
    }
  }

  #run(name: string, deadline: number, timeoutMs: number, ctl: Int32Array | undefined, limit: string): void {
    const vcpu = this.#vcpu;
    const libc = this.#libc;
    for (;;) {
      if (ctl && Atomics.load(ctl, CALL_CONTROL.CANCEL) !== 0) throw new AbortError(`sandbox call ${name} was aborted`);
      const exit = vcpu.run();
      if (exit.kind === 'io' && exit.direction === 'out') {
        if (exit.port === PORT_RETURN) {
          this.#cleanReturn = this.#sync && this.#leavesNothingToComplete();
          return;
        }
        if (exit.port === PORT_HOSTCALL) {
          serveHostCall(this.#hostCalls);
          // A slow host function must not let the call finish late.
          if (performance.now() >= deadline) throw new SandboxTimeoutError(name, timeoutMs, limit);
          continue;
        }
        if (exit.port === SYSCALL_PORT && libc) {
          libc.serve();
          if (libc.end) throw endError(name, libc.end);
          if (performance.now() >= deadline) throw new SandboxTimeoutError(name, timeoutMs, limit);
          continue;
        }
      }
      if (exit.kind === 'intr') {
        consumePending(KICK_SIGNAL);
        vcpu.immediateExit = false;
        if (performance.now() >= deadline) throw new SandboxTimeoutError(name, timeoutMs, limit);
        continue;
      }
      let rip = 0n;
      try {
        rip = vcpu.getRegs().rip;
      } catch {
        // unreadable after a failed entry
      }
      throw new GuestCrashError(0, describeExit(exit), rip, symbolize(this.#opts.image, rip));
    }
  }

  /** Runs a sync host function here or a remote one through `remoteCall`; errors become HostFunctionError. */
  #runHostFunction(name: string, arg: Uint8Array, cap: number): Uint8Array {
    // Own names only: `constructor`, `toString`… of Object.prototype are no host functions.
    const fns = this.#opts.hostFunctions;
    const local = fns && Object.hasOwn(fns, name) ? fns[name] : undefined;
    if (local) {
      let result: unknown;
      try {
        result = local(arg);
      } catch (e) {
        throw new HostFunctionError(name, e instanceof Error ? e.message : String(e), e);
      }
      return hostResultBytes(name, result);
    }
    if (this.#opts.remoteNames?.has(name) && this.#opts.remoteCall) return this.#opts.remoteCall(name, arg, cap);
    throw new HostFunctionError(name, 'no such host function');
  }

  /** Sleeps up to `ms` (nanosleep), waking early at the call's deadline or on cancel. */
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
   * Whether the return exit just taken leaves nothing for the next KVM_RUN to complete that could
   * touch the next call. That holds for the SDK's own return, `out %al, (%dx)` at
   * `_kvmpool_return` (start.S), checked as the byte there is now (one vCPU: what ran):
   *  - rip at the OUT (VT-x, AMD-V): KVM completes a plain OUT at the next KVM_RUN only while
   *    rip is still the OUT's (its fast-PIO completion checks the linear rip, then skips the
   *    instruction); the next call enters at `#entry` with every register written, so it
   *    completes to nothing;
   *  - rip past the OUT (hosts that finish the OUT before exiting, as kvm_pvm does): done.
   * Anything else — a string OUT (`outs`, which KVM's emulator finishes by writing rip, rsi and
   * rcx), an OUT elsewhere or at the entry, a guest without `_kvmpool_return` — takes the full
   * reset, which settles the exit first.
   */
  #leavesNothingToComplete(): boolean {
    const at = this.#returnAt;
    if (at === undefined || at === this.#entry || at + 1n === this.#entry || at >= BigInt(this.#mem.length)) return false;
    if (this.#mem[Number(at)] !== OUT_AL_DX) return false;
    const rip = this.#vcpu.syncedRip();
    return rip === at || rip === at + 1n;
  }

  #markHostDirty(at: number, len: number): void {
    for (let p = Math.floor(at / PAGE_SIZE); p * PAGE_SIZE < at + len; p++) this.#hostDirty.add(p);
  }

  /**
   * Back to the captured state: the pending exit settled, dirty pages and input bytes, then the
   * vCPU state (reset.ts); the registers are written at the next call. If the vCPU cannot be
   * settled the VM is marked broken and every later call fails with SandboxWorkerError.
   */
  /**
   * One call of the host's own choosing, from the pristine state; the pages it wrote become the
   * hot set (dirty-tracker.ts). Its result is dropped, and a failure only leaves a smaller set:
   * the VM is reset as after any call.
   */
  #warmUp(fn: string, input: Uint8Array): void {
    this.#dirty.restart(); // the start-up set goes: every page is logged again from here
    this.#asHot = true;
    try {
      // Bounded like kvmpool_init: a warm-up that never ends times out instead of hanging the worker.
      this.call(fn, input, { timeoutMs: this.#opts.initTimeoutMs ?? 0 });
    } catch {
      // reset after the failure too; the set is what the call wrote before it failed
    } finally {
      this.#asHot = false;
      this.calls = 0;
      this.resets = 0;
    }
  }
  /** The next reset makes the pages it puts back the hot set (`#warmUp`). */
  #asHot = false;

  reset(): number {
    // After a clean return there is nothing to settle, and a CPL 3 guest cannot have changed
    // the debug registers or MSRs (reset.ts): the short path. Anything else: the full one.
    const clean = this.#cleanReturn;
    this.#cleanReturn = false;
    if (clean) this.resetPaths.short++;
    else this.resetPaths.full++;
    // A step that fails leaves the VM half reset: it is marked broken and serves no more calls.
    let dirty: number[];
    try {
      if (!clean) this.#pristineCpu.settle(this.#vcpu);
      dirty = this.#asHot ? this.#dirty.capture() : this.#dirty.take();
      for (const p of this.#hostDirty) dirty.push(p);
      this.#hostDirty.clear();
      this.#pristine.restore(this.#mem, dirty);
      this.#pristineCpu.restore(this.#vcpu, { short: clean, sync: this.#sync, compare: true });
    } catch (e) {
      this.#broken = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
    const libc = this.#libc;
    if (libc) {
      libc.end = undefined;
      // No syscall, no change: the process state is the pristine one still.
      if (libc.syscalls > 0) libc.state = this.#libcPristine!.clone();
      libc.resetStats();
    }
    this.resets++;
    return dirty.length;
  }

  /** Closes the timer, the vCPU (and its mapping), the VM, the KVM fd; each is marked released first. Idempotent. */
  close(): void {
    const owned = this.#opts.owned;
    releaseVia(owned, OWNED.timer, () => this.#timer.close());
    releaseVia(owned, OWNED.vcpu, () => this.#vcpu.close());
    releaseVia(owned, OWNED.vm, () => this.#vm.close());
    releaseVia(owned, OWNED.kvm, () => this.#kvm.close());
  }
}

/**
 * Where the input and output regions go for these sizes; throws (naming the numbers) when
 * the image does not fit below them with room for a stack (and, with libc, a heap).
 */
export function sandboxLayout(o: Pick<SandboxVmOptions, 'image' | 'memory' | 'inputSize' | 'outputSize'>): { inputBase: number; outputBase: number } {
  const outputBase = o.memory - o.outputSize;
  const inputBase = outputBase - o.inputSize;
  if (o.memory % PAGE_SIZE !== 0 || o.inputSize % PAGE_SIZE !== 0 || o.outputSize % PAGE_SIZE !== 0) {
    throw new RangeError(`sandbox: memory (${o.memory}), inputSize (${o.inputSize}) and outputSize (${o.outputSize}) must be multiples of 4096`);
  }
  for (const s of o.image.segments) {
    const end = s.vaddr + BigInt(s.memsz);
    if (s.vaddr < IMAGE_MIN) {
      throw new RangeError(`${o.image.source}: segment at 0x${s.vaddr.toString(16)} is below 0x${IMAGE_MIN.toString(16)}, where the system tables live (link with the SDK's kvmpool.ld)`);
    }
    if (end + BigInt(MIN_STACK) > BigInt(inputBase)) {
      const least = Math.ceil((Number(end) + MIN_STACK + o.inputSize + o.outputSize) / PAGE_SIZE) * PAGE_SIZE;
      throw new RangeError(
        `${o.image.source}: memory of ${o.memory} bytes is too small: the image ends at 0x${end.toString(16)}, and with ${MIN_STACK} bytes of stack, ` +
          `inputSize ${o.inputSize} and outputSize ${o.outputSize} it needs at least ${least} bytes (${(least / 2 ** 20).toFixed(2)} MiB); ` +
          'raise memory or shrink the regions',
      );
    }
  }
  if (isLibcGuest(o.image)) libcLayout(o.image, o.memory, inputBase); // throws when heap and stack do not fit
  return { inputBase, outputBase };
}

/** A musl guest's call that ended in the syscall layer: exit(), a fatal signal (abort()), or the layer's error. */
function endError(name: string, end: RunEnd): Error {
  switch (end.kind) {
    case 'exit':
      return new GuestError(`guest function ${name} called exit(${end.code})`, -5);
    case 'signal':
      return new GuestError(`guest function ${name} was killed by ${signalName(end.signal)}`, -6);
    case 'error':
      return end.error;
    case 'capture':
      return new GuestError(`guest function ${name} made a checkpoint syscall, which SDK guests have no use for`, -7);
  }
}

/** SDK runtime symbols that are not guest exports. */
const RUNTIME = new Set(['memcpy', 'memmove', 'memset', 'memcmp', 'strlen']);

