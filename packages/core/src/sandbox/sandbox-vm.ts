/**
 * One sandbox micro-VM, run in the calling thread: a single vCPU in 64-bit user mode, a guest
 * ELF loaded and initialised once, and a pristine copy of its state. Every call starts from
 * that state: afterwards only the pages the call dirtied (KVM dirty log, plus the pages the
 * host wrote) are copied back, and the registers and FPU are restored.
 *
 * Guest memory:  [system area 0x1000–0xafff][call area 0xc000][image from 1 MiB]…[stack]
 *                [input region][output region] (the last two at the top).
 */
import { AbortError, GuestCrashError, GuestError, HostFunctionError, SandboxTimeoutError } from '../errors.js';
import { describeExit } from '../exits.js';
import { Kvm } from '../kvm.js';
import { guestCpuid } from '../cpu/cpuid.js';
import { RFLAGS } from '../cpu/descriptors.js';
import { setVcpuMode, writeModeTables } from '../cpu/modes.js';
import { KVM_REGS } from '../ffi/index.js';
import { loadElf, type ElfImage } from '../loader/elf.js';
import type { MemorySlot } from '../memory.js';
import { KICK_SIGNAL } from '../machine/protocol.js';
import { ThreadTimer, blockSignal, consumePending, currentTid, runMaskWithout } from '../signals.js';
import { PAGE_SIZE } from '../util/size.js';
import type { Vcpu } from '../vcpu.js';
import type { Vm } from '../vm.js';
import { CALL, CALL_AREA, IMAGE_MIN, OP, PORT_HOSTCALL, PORT_RETURN } from './abi.js';

const SYSTEM_AREA = 0x1000n;
const MIN_STACK = 64 * 1024;

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
}

export interface CallOptions {
  timeoutMs?: number;
  /** Word 0 non-zero: cancel. The thread's tid goes to word 1 while it runs (for kicks). */
  control?: Int32Array;
}

export interface CallResult {
  output: Uint8Array;
  prints: string[];
  /** Pages restored by the reset after the call. */
  resetPages: number;
}

export const CALL_CONTROL = { CANCEL: 0, TID: 1, WORDS: 2 } as const;


/** A host function's result as bytes: nothing, a string (UTF-8), or any view. */
export function asBytes(v: Uint8Array | ArrayBufferView | string | void): Uint8Array {
  if (v === undefined) return new Uint8Array(0);
  if (typeof v === 'string') return new TextEncoder().encode(v);
  if (v instanceof Uint8Array) return v;
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export class SandboxVm {
  readonly #kvm: Kvm;
  readonly #vm: Vm;
  readonly #vcpu: Vcpu;
  readonly #slot: MemorySlot;
  readonly #mem: Uint8Array;
  readonly #view: DataView;
  readonly #opts: SandboxVmOptions;
  readonly #timer: ThreadTimer;
  readonly #pristine: Uint8Array;
  /** The captured FPU state, encoded once (KVM_SET_FPU takes it as is after every call). */
  #pristineFpu!: Uint8Array;
  /** struct kvm_regs for the next call, patched field by field. */
  readonly #regsBytes = new Uint8Array(KVM_REGS.size);
  readonly #regsView = new DataView(this.#regsBytes.buffer);
  readonly #tid = currentTid();
  readonly #entry: bigint;
  readonly #inputBase: number;
  readonly #outputBase: number;
  readonly #stackTop: bigint;
  /** Pages the host wrote during a call (the dirty log sees only guest writes). */
  readonly #hostDirty = new Set<number>();
  #inputUsed = 0;
  #prints: string[] = [];
  /** Calls and resets, for stats. */
  calls = 0;
  resets = 0;

  private constructor(kvm: Kvm, vm: Vm, vcpu: Vcpu, slot: MemorySlot, opts: SandboxVmOptions, layout: { inputBase: number; outputBase: number }) {
    this.#kvm = kvm;
    this.#vm = vm;
    this.#vcpu = vcpu;
    this.#slot = slot;
    this.#mem = slot.bytes;
    this.#view = new DataView(slot.buffer);
    this.#opts = opts;
    this.#entry = opts.image.entry;
    this.#inputBase = layout.inputBase;
    this.#outputBase = layout.outputBase;
    this.#stackTop = BigInt(layout.inputBase);
    this.#timer = new ThreadTimer(KICK_SIGNAL);
    this.#pristine = new Uint8Array(slot.size);
  }

  /** Builds the VM in this thread, loads the image, runs `kvmpool_init` if exported, captures the state. */
  static create(opts: SandboxVmOptions): SandboxVm {
    const { image, memory } = opts;
    const { inputBase, outputBase } = sandboxLayout(opts);
    blockSignal(KICK_SIGNAL);
    consumePending(KICK_SIGNAL);
    const kvm = Kvm.open(opts.kvmPath);
    let vm: Vm | undefined;
    try {
      vm = kvm.createVm();
      const slot = vm.addMemory({ guestAddress: 0, size: memory, dirtyLog: true });
      writeModeTables(vm.memory, 'user', { systemArea: SYSTEM_AREA, mapSize: Math.ceil(memory / 0x20_0000) * 0x20_0000 });
      loadElf(image, vm.memory, [
        { start: 0n, end: IMAGE_MIN, what: 'low area (system tables and call area)' },
        { start: BigInt(inputBase), end: BigInt(memory), what: 'input/output regions' },
      ]);
      const vcpu = vm.createVcpu(0);
      vcpu.setCpuid(guestCpuid(kvm));
      setVcpuMode(vcpu, 'user', { systemArea: SYSTEM_AREA });
      vcpu.setSignalMask(runMaskWithout(KICK_SIGNAL));
      const s = new SandboxVm(kvm, vm, vcpu, slot, opts, { inputBase, outputBase });
      if (image.functions.has('kvmpool_init')) s.#invoke('kvmpool_init', new Uint8Array(0), {});
      s.#capture();
      return s;
    } catch (e) {
      vm?.close();
      kvm.close();
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

  #capture(): void {
    this.#vm.dirtyPages(this.#slot); // clear the log: from here on it lists what calls write
    this.#pristine.set(this.#mem);
    this.#pristineFpu = this.#vcpu.getFpuBytes();
    this.#hostDirty.clear();
  }

  /** Calls exported function `name` with `input`; the VM is reset afterwards, whatever happened. */
  call(name: string, input: Uint8Array, options: CallOptions = {}): CallResult {
    try {
      const output = this.#invoke(name, input, options);
      return { output, prints: this.#prints, resetPages: this.reset() };
    } catch (e) {
      this.reset();
      throw e;
    }
  }

  #invoke(name: string, input: Uint8Array, options: CallOptions): Uint8Array {
    const fn = this.#opts.image.functions.get(name);
    if (fn === undefined) throw new GuestError(`the guest exports no function ${JSON.stringify(name)}`, -1);
    if (input.length > this.#opts.inputSize) {
      throw new RangeError(`sandbox call ${name}: input of ${input.length} bytes exceeds the ${this.#opts.inputSize}-byte input region`);
    }
    this.calls++;
    this.#prints = [];
    this.#mem.set(input, this.#inputBase);
    this.#inputUsed = input.length;
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
    this.#vcpu.setRegsBytes(this.#regsBytes);
    const ctl = options.control;
    if (ctl) Atomics.store(ctl, CALL_CONTROL.TID, this.#tid);
    const deadline = options.timeoutMs ? performance.now() + options.timeoutMs : Infinity;
    if (options.timeoutMs) this.#timer.arm(options.timeoutMs);
    try {
      this.#runToReturn(name, deadline, options.timeoutMs ?? 0, ctl);
    } finally {
      if (options.timeoutMs) this.#timer.disarm();
      if (ctl) Atomics.store(ctl, CALL_CONTROL.TID, 0);
    }
    const value = this.#view.getBigInt64(Number(CALL_AREA) + CALL.VALUE, true);
    if (value < 0n) throw new GuestError(`guest function ${name} returned error ${value}`, Number(value));
    if (value > BigInt(this.#opts.outputSize)) {
      throw new GuestError(`guest function ${name} returned ${value} bytes of output; the output region holds ${this.#opts.outputSize}`, -2);
    }
    return this.#mem.slice(this.#outputBase, this.#outputBase + Number(value));
  }

  #runToReturn(name: string, deadline: number, timeoutMs: number, ctl: Int32Array | undefined): void {
    const vcpu = this.#vcpu;
    for (;;) {
      if (ctl && Atomics.load(ctl, CALL_CONTROL.CANCEL) !== 0) throw new AbortError(`sandbox call ${name} was aborted`);
      const exit = vcpu.run();
      if (exit.kind === 'io' && exit.direction === 'out') {
        if (exit.port === PORT_RETURN) return;
        if (exit.port === PORT_HOSTCALL) {
          this.#hostCall();
          continue;
        }
      }
      if (exit.kind === 'intr') {
        consumePending(KICK_SIGNAL);
        vcpu.immediateExit = false;
        if (performance.now() >= deadline) throw new SandboxTimeoutError(name, timeoutMs);
        continue;
      }
      let rip = 0n;
      try {
        rip = vcpu.getRegs().rip;
      } catch {
        // unreadable after a failed entry
      }
      throw new GuestCrashError(0, describeExit(exit), rip);
    }
  }

  /** Checks that [ptr, ptr+len) is guest memory, and returns its offset. */
  #range(fn: string, what: string, ptr: bigint, len: bigint): number {
    if (ptr < 0n || len < 0n || ptr + len > BigInt(this.#slot.size)) {
      throw new HostFunctionError(fn, `${what} [0x${ptr.toString(16)}, +${len}) is outside guest memory (${this.#slot.size} bytes)`);
    }
    return Number(ptr);
  }

  #text(fn: string, ptr: bigint, len: bigint): string {
    const at = this.#range(fn, 'text', ptr, len);
    return new TextDecoder().decode(this.#mem.subarray(at, at + Number(len)));
  }

  #hostCall(): void {
    const base = Number(CALL_AREA);
    const v = this.#view;
    const op = Number(v.getBigUint64(base + CALL.OP, true));
    const a = (field: number): bigint => v.getBigUint64(base + field, true);
    switch (op) {
      case OP.PRINT:
        this.#prints.push(this.#text('print', a(CALL.A0), a(CALL.A1)));
        return;
      case OP.ABORT:
        throw new GuestError(`guest aborted: ${this.#text('abort', a(CALL.A0), a(CALL.A1))}`, -3);
      case OP.CALL: {
        const name = this.#text('call', a(CALL.A0), a(CALL.A1));
        const argAt = this.#range(name, 'argument', a(CALL.A2), a(CALL.A3));
        const arg = this.#mem.slice(argAt, argAt + Number(a(CALL.A3)));
        const resAt = this.#range(name, 'result buffer', a(CALL.A4), a(CALL.A5));
        const cap = Number(a(CALL.A5));
        const result = this.#runHostFunction(name, arg, cap);
        if (result.length > cap) {
          throw new HostFunctionError(name, `returned ${result.length} bytes; the guest's buffer holds ${cap}`);
        }
        this.#mem.set(result, resAt);
        this.#markHostDirty(resAt, result.length);
        v.setBigInt64(base + CALL.RET, BigInt(result.length), true);
        return;
      }
      default:
        throw new GuestError(`guest made an unknown host call (op ${op})`, -4);
    }
  }

  #runHostFunction(name: string, arg: Uint8Array, cap: number): Uint8Array {
    const local = this.#opts.hostFunctions?.[name];
    if (local) {
      try {
        return asBytes(local(arg));
      } catch (e) {
        throw new HostFunctionError(name, e instanceof Error ? e.message : String(e), e);
      }
    }
    if (this.#opts.remoteNames?.has(name) && this.#opts.remoteCall) return this.#opts.remoteCall(name, arg, cap);
    throw new HostFunctionError(name, 'no such host function');
  }

  #markHostDirty(at: number, len: number): void {
    for (let p = Math.floor(at / PAGE_SIZE); p * PAGE_SIZE < at + len; p++) this.#hostDirty.add(p);
  }

  /** Back to the captured state: dirty pages, input bytes, registers (at the next call) and FPU. */
  reset(): number {
    const dirty = this.#vm.dirtyPages(this.#slot);
    for (const p of this.#hostDirty) dirty.push(p);
    this.#hostDirty.clear();
    for (const p of dirty) {
      const at = p * PAGE_SIZE;
      this.#mem.set(this.#pristine.subarray(at, at + PAGE_SIZE), at);
    }
    if (this.#inputUsed > 0) {
      this.#mem.fill(0, this.#inputBase, this.#inputBase + this.#inputUsed);
      this.#inputUsed = 0;
    }
    this.#vcpu.setFpuBytes(this.#pristineFpu);
    this.resets++;
    return dirty.length;
  }

  close(): void {
    this.#timer.close();
    this.#vm.close();
    this.#kvm.close();
  }
}

/**
 * Where the input and output regions go for these sizes; throws (naming the numbers) when
 * the image does not fit below them with room for a stack.
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
      throw new RangeError(
        `${o.image.source}: segment [0x${s.vaddr.toString(16)}, 0x${end.toString(16)}) leaves less than ${MIN_STACK} bytes of stack below the input region at 0x${Math.max(inputBase, 0).toString(16)} (memory ${o.memory}, input ${o.inputSize}, output ${o.outputSize} bytes)`,
      );
    }
  }
  return { inputBase, outputBase };
}

/** SDK runtime symbols that are not guest exports. */
const RUNTIME = new Set(['memcpy', 'memmove', 'memset', 'memcmp', 'strlen']);

