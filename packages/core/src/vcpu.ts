/**
 * `Vcpu`: one virtual CPU, made by `Vm.createVcpu()`. Owns its fd and its kvm_run mapping.
 * KVM expects vCPU ioctls from the thread that created the vCPU.
 */
import { ClosedError } from './errors.js';
import { CoalescedRing, KVM_COALESCED_MMIO_PAGE_OFFSET } from './coalesced-ring.js';
import { decodeExit, type VcpuExit } from './exits.js';
import {
  KVM_DEBUGREGS, KVM_FPU, KVM_GUEST_DEBUG, KVM_INTERRUPT_STRUCT, KVM_LAPIC_STATE, KVM_MP_STATE, KVM_REGS, KVM_RUN_STRUCT, KVM_SIGNAL_MASK,
  KVM_SYNC_REGS, KVM_SYNC_X86,
  KVM_SREGS, KVM_TRANSLATION, KVM_VCPU_EVENTS, KVM_XCRS, KVM_XSAVE, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, decode,
  decodeCpuid, decodeMsrs, encode, encodeCpuid, zeroed, encodeMsrs, errorFor, ioctlPtr, kvmRun, lastErrno, sysClose, sysMmap,
  sysMunmap, viewOf, type KvmCpuidEntry, type KvmDebugregs, type KvmFpu, type KvmGuestDebug, type KvmLapicState,
  type KvmMsrEntry, type KvmRegs, type KvmSregs, type KvmVcpuEvents, type KvmXcrs,
} from './ffi/index.js';

/**
 * The `KVM_MP_STATE_*` values by name: a vCPU's multiprocessing state.
 * @enum
 */
export const MP_STATE = {
  runnable: 0, uninitialized: 1, init_received: 2, halted: 3, sipi_received: 4, stopped: 5, check_stop: 6,
  operating: 7, load: 8, ap_reset_hold: 9, suspended: 10,
} as const;
/** A `KVM_MP_STATE_*` name in lower case, e.g. `runnable` or `halted`. */
export type MpState = keyof typeof MP_STATE;

/** What `KVM_TRANSLATE` says about a guest virtual address (`vcpu.translate()`). */
export interface Translation {
  /** The address asked about. */
  linearAddress: bigint;
  /** The guest-physical address it maps to (when `valid`). */
  physicalAddress: bigint;
  /** Whether the page tables map it. */
  valid: boolean;
  /** Whether the mapping is writable. */
  writeable: boolean;
  /** Whether CPL 3 code may use it. */
  usermode: boolean;
}

export const GUEST_DEBUG = {
  ENABLE: 0x1, SINGLESTEP: 0x2, USE_SW_BP: 0x10000, USE_HW_BP: 0x20000, INJECT_DB: 0x40000, INJECT_BP: 0x80000,
  BLOCKIRQ: 0x100000,
} as const;

/** A part of the sync-regs area of kvm_run (`vcpu.queueSync()`). */
export type SyncPart = 'regs' | 'sregs' | 'events';
const SYNC_BIT = { regs: 'REGS', sregs: 'SREGS', events: 'EVENTS' } as const;
const SYNC_AT = {
  regs: KVM_RUN_STRUCT.offsets.s + KVM_SYNC_REGS.offsets.regs,
  sregs: KVM_RUN_STRUCT.offsets.s + KVM_SYNC_REGS.offsets.sregs,
  events: KVM_RUN_STRUCT.offsets.s + KVM_SYNC_REGS.offsets.events,
} as const;
const SYNC_SIZE = { regs: KVM_REGS.size, sregs: KVM_SREGS.size, events: KVM_VCPU_EVENTS.size } as const;

/**
 * A vCPU handle (`KVM_CREATE_VCPU`), made by `vm.createVcpu()`. `run()` enters the guest on the calling thread
 * and returns the exit; the register accessors are the KVM_GET_* / KVM_SET_* ioctls. It owns its fd and kvm_run
 * mapping; `close()` is idempotent and `using` works.
 */
export class Vcpu implements Disposable {
  /** The vCPU id (its APIC id). */
  readonly id: number;
  #fd: number;
  readonly #runAddress: bigint;
  readonly #runSize: number;
  /** The kvm_run mapping (zero-copy). */
  readonly #run: Uint8Array;
  readonly #runView: DataView;
  readonly #onClose: (v: Vcpu) => void;

  /** @internal Use `vm.createVcpu()`. */
  constructor(id: number, fd: number, mmapSize: number, onClose: (v: Vcpu) => void) {
    const address = sysMmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
    if (address === MAP_FAILED) {
      const err = errorFor(`mmap(kvm_run of vCPU ${id})`, lastErrno());
      sysClose(fd);
      throw err;
    }
    this.id = id;
    this.#fd = fd;
    this.#runAddress = address;
    this.#runSize = mmapSize;
    const ab = viewOf(address, mmapSize);
    this.#run = new Uint8Array(ab);
    this.#runView = new DataView(ab);
    this.#onClose = onClose;
  }

  /** The vCPU fd (owned by this handle); throws `ClosedError` after `close()`. */
  get fd(): number {
    if (this.#fd < 0) throw new ClosedError(`vCPU ${this.id}`);
    return this.#fd;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * Runs the vCPU until the next exit that needs userspace. EINTR (a signal, or
   * `immediateExit`) is returned as `{ kind: 'intr' }`; any other failure throws KvmError.
   */
  run(): VcpuExit {
    const errno = kvmRun(this.fd);
    if (errno === 0) return decodeExit(this.#runView, this.#run);
    if (errno === 4 /* EINTR */) return { kind: 'intr' };
    throw errorFor('KVM_RUN', errno);
  }

  /** kvm_run.immediate_exit: when set, KVM_RUN returns EINTR at once. */
  get immediateExit(): boolean {
    return this.#run[KVM_RUN_STRUCT.offsets.immediate_exit] !== 0;
  }
  /** Sets kvm_run.immediate_exit. */
  set immediateExit(v: boolean) {
    this.#run[KVM_RUN_STRUCT.offsets.immediate_exit] = v ? 1 : 0;
  }

  /**
   * KVM_INTERRUPT (VMs without the in-kernel irqchip): queues external interrupt `vector` for injection at the
   * next KVM_RUN. Only when `readyForInterruptInjection` is true (the guest has IF=1 and no interrupt shadow);
   * otherwise set `requestInterruptWindow` and KVM exits (`irq_window_open`) as soon as it can take one.
   */
  interrupt(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new RangeError(`interrupt vector ${vector} is not in 0–255`);
    ioctlPtr(this.fd, 'KVM_INTERRUPT', encode(KVM_INTERRUPT_STRUCT, { irq: vector }));
  }

  /** kvm_run.ready_for_interrupt_injection after the last exit: `interrupt()` may inject now. */
  get readyForInterruptInjection(): boolean {
    return this.#run[KVM_RUN_STRUCT.offsets.ready_for_interrupt_injection] !== 0;
  }

  /** kvm_run.if_flag after the last exit: the guest's RFLAGS.IF. */
  get interruptFlag(): boolean {
    return this.#run[KVM_RUN_STRUCT.offsets.if_flag] !== 0;
  }

  /** kvm_run.request_interrupt_window: ask KVM_RUN to exit (`irq_window_open`) once the guest can take an interrupt. */
  get requestInterruptWindow(): boolean {
    return this.#run[KVM_RUN_STRUCT.offsets.request_interrupt_window] !== 0;
  }
  /** Sets kvm_run.request_interrupt_window. */
  set requestInterruptWindow(v: boolean) {
    this.#run[KVM_RUN_STRUCT.offsets.request_interrupt_window] = v ? 1 : 0;
  }

  /** KVM's coalesced ring through this vCPU's mapping (VM-wide; read it under the coalesced lock). */
  coalescedRing(): CoalescedRing | undefined {
    const start = KVM_COALESCED_MMIO_PAGE_OFFSET * 4096;
    if (this.#run.length < start + 4096) return undefined;
    this.#coalesced ??= new CoalescedRing(this.#run.subarray(start, start + 4096));
    return this.#coalesced;
  }
  #coalesced: CoalescedRing | undefined;

  /** @internal Where kvm_run is mapped (for an owner that must unmap it if this thread dies). */
  get runArea(): { address: bigint; size: number } {
    return { address: this.#runAddress, size: this.#runSize };
  }

  /** The raw kvm_run mapping, for run loops that decode it themselves. */
  get runMapping(): {
    /** The whole mapping as bytes (zero-copy). */
    bytes: Uint8Array;
    /** The same bytes as a DataView. */
    view: DataView;
  } {
    return { bytes: this.#run, view: this.#runView };
  }

  /**
   * KVM_CAP_SYNC_REGS: the parts (`KVM_SYNC_X86` bits) KVM copies into kvm_run after every
   * KVM_RUN, for `syncedRip()`/`synced()` to read without an ioctl. 0 (the default) turns it off. Only
   * on hosts where `vm.checkExtension('KVM_CAP_SYNC_REGS')` has those bits.
   */
  set syncValid(mask: number) {
    void this.fd; // ClosedError after close(): kvm_run is unmapped then
    this.#runView.setBigUint64(KVM_RUN_STRUCT.offsets.kvm_valid_regs, BigInt(mask), true);
  }

  /** The rip KVM copied out at the last exit (with `syncValid` & REGS), read from kvm_run without an ioctl. */
  syncedRip(): bigint {
    void this.fd;
    return this.#runView.getBigUint64(SYNC_AT.regs + KVM_REGS.offsets.rip, true);
  }

  /** The bytes of `part` KVM copied out at the last exit (with that `syncValid` bit): a view into kvm_run, good until the next `run()`. */
  synced(part: SyncPart): Uint8Array {
    void this.fd;
    return this.#run.subarray(SYNC_AT[part], SYNC_AT[part] + SYNC_SIZE[part]);
  }

  /**
   * Hands a struct kvm_regs, kvm_sregs or kvm_vcpu_events to KVM through kvm_run (KVM_CAP_SYNC_REGS):
   * KVM takes it at the start of the next KVM_RUN — before it completes a pending exit, as a
   * KVM_SET_* ioctl made now would be — through the same kernel function, without an ioctl of
   * its own. Until then `getRegs`/`getSregsBytes`/`getVcpuEventsBytes` answer from it, and a
   * KVM_SET_* ioctl of the same part replaces it. kvm_run is shared with the kernel only during
   * KVM_RUN on this thread; the syscall orders these stores before the kernel's reads.
   */
  queueSync(part: SyncPart, bytes: Uint8Array): void {
    void this.fd;
    if (bytes.length !== SYNC_SIZE[part]) throw new RangeError(`queueSync(${part}): ${bytes.length} bytes, a struct has ${SYNC_SIZE[part]}`);
    this.#run.set(bytes, SYNC_AT[part]);
    this.#setDirty(this.#dirty() | KVM_SYNC_X86[SYNC_BIT[part]]);
  }

  #dirty(): number {
    return Number(this.#runView.getBigUint64(KVM_RUN_STRUCT.offsets.kvm_dirty_regs, true));
  }
  #setDirty(mask: number): void {
    this.#runView.setBigUint64(KVM_RUN_STRUCT.offsets.kvm_dirty_regs, BigInt(mask), true);
  }
  /** The queued (not yet taken) `part`, or undefined; an ioctl setter of the part drops it (`drop`). */
  #queued(part: SyncPart, drop = false): Uint8Array | undefined {
    void this.fd; // ClosedError after close(), before kvm_run (unmapped then) is read
    const bit = KVM_SYNC_X86[SYNC_BIT[part]];
    const dirty = this.#dirty();
    if ((dirty & bit) === 0) return undefined;
    if (drop) {
      this.#setDirty(dirty & ~bit);
      return undefined;
    }
    return this.#run.slice(SYNC_AT[part], SYNC_AT[part] + SYNC_SIZE[part]);
  }

  /** KVM_GET_REGS: the general-purpose registers, rip and rflags. */
  getRegs(): KvmRegs {
    const queued = this.#queued('regs');
    if (queued) return decode(KVM_REGS, queued);
    const b = zeroed(KVM_REGS);
    ioctlPtr(this.fd, 'KVM_GET_REGS', b);
    return decode(KVM_REGS, b);
  }
  /** KVM_SET_REGS. */
  setRegs(regs: KvmRegs): void {
    this.#queued('regs', true);
    ioctlPtr(this.fd, 'KVM_SET_REGS', encode(KVM_REGS, regs));
  }
  /** Reads the registers, applies `patch`, writes them back; returns the result. */
  patchRegs(patch: Partial<KvmRegs>): KvmRegs {
    const regs = { ...this.getRegs(), ...patch };
    this.setRegs(regs);
    return regs;
  }

  /** KVM_GET_SREGS: segments, descriptor tables, control registers, EFER. */
  getSregs(): KvmSregs {
    const queued = this.#queued('sregs');
    if (queued) return decode(KVM_SREGS, queued);
    const b = zeroed(KVM_SREGS);
    ioctlPtr(this.fd, 'KVM_GET_SREGS', b);
    return decode(KVM_SREGS, b);
  }
  /** KVM_SET_SREGS. kvmpool's CPU modes read them back, because some hosts keep other values. */
  setSregs(sregs: KvmSregs): void {
    this.#queued('sregs', true);
    ioctlPtr(this.fd, 'KVM_SET_SREGS', encode(KVM_SREGS, sregs));
  }

  /** KVM_SET_REGS from an already encoded struct kvm_regs (hot paths keep one and patch it). */
  setRegsBytes(bytes: Uint8Array): void {
    this.#queued('regs', true);
    ioctlPtr(this.fd, 'KVM_SET_REGS', bytes);
  }

  /** KVM_GET_FPU as the raw struct kvm_fpu bytes. */
  getFpuBytes(): Uint8Array {
    const b = zeroed(KVM_FPU);
    ioctlPtr(this.fd, 'KVM_GET_FPU', b);
    return b;
  }
  /** KVM_SET_FPU from raw struct kvm_fpu bytes. */
  setFpuBytes(bytes: Uint8Array): void {
    ioctlPtr(this.fd, 'KVM_SET_FPU', bytes);
  }

  /**
   * KVM_GET_XSAVE (or KVM_GET_XSAVE2 when `size` > 4096, the size KVM_CAP_XSAVE2 reports) as
   * raw bytes: the whole FPU/SSE/AVX state including MXCSR, which KVM_GET_FPU may leave out.
   */
  getXsaveBytes(size: number = KVM_XSAVE.size): Uint8Array {
    const b = new Uint8Array(Math.max(size, KVM_XSAVE.size));
    ioctlPtr(this.fd, size > KVM_XSAVE.size ? 'KVM_GET_XSAVE2' : 'KVM_GET_XSAVE', b);
    return b;
  }
  /** KVM_SET_XSAVE from raw bytes taken by `getXsaveBytes`. */
  setXsaveBytes(bytes: Uint8Array): void {
    ioctlPtr(this.fd, 'KVM_SET_XSAVE', bytes);
  }

  /** KVM_GET_SREGS / KVM_SET_SREGS, KVM_GET/SET_DEBUGREGS and KVM_GET/SET_VCPU_EVENTS as raw bytes. */
  getSregsBytes(): Uint8Array {
    return this.#queued('sregs') ?? this.#getRaw('KVM_GET_SREGS', KVM_SREGS.size);
  }
  /** KVM_SET_SREGS from raw bytes taken by `getSregsBytes()`. */
  setSregsBytes(bytes: Uint8Array): void {
    this.#queued('sregs', true);
    ioctlPtr(this.fd, 'KVM_SET_SREGS', bytes);
  }
  /** KVM_GET_DEBUGREGS as raw bytes. */
  getDebugRegsBytes(): Uint8Array {
    return this.#getRaw('KVM_GET_DEBUGREGS', KVM_DEBUGREGS.size);
  }
  /** KVM_SET_DEBUGREGS from raw bytes. */
  setDebugRegsBytes(bytes: Uint8Array): void {
    ioctlPtr(this.fd, 'KVM_SET_DEBUGREGS', bytes);
  }
  /** KVM_GET_VCPU_EVENTS as raw bytes. */
  getVcpuEventsBytes(): Uint8Array {
    return this.#queued('events') ?? this.#getRaw('KVM_GET_VCPU_EVENTS', KVM_VCPU_EVENTS.size);
  }
  /** KVM_SET_VCPU_EVENTS from raw bytes. */
  setVcpuEventsBytes(bytes: Uint8Array): void {
    this.#queued('events', true);
    ioctlPtr(this.fd, 'KVM_SET_VCPU_EVENTS', bytes);
  }
  #getRaw(name: 'KVM_GET_SREGS' | 'KVM_GET_DEBUGREGS' | 'KVM_GET_VCPU_EVENTS', size: number): Uint8Array {
    const b = new Uint8Array(size);
    ioctlPtr(this.fd, name, b);
    return b;
  }

  /** KVM_GET_FPU: x87 and SSE state (on kvm_pvm without MXCSR). */
  getFpu(): KvmFpu {
    const b = zeroed(KVM_FPU);
    ioctlPtr(this.fd, 'KVM_GET_FPU', b);
    return decode(KVM_FPU, b);
  }
  /** KVM_SET_FPU. */
  setFpu(fpu: KvmFpu): void {
    ioctlPtr(this.fd, 'KVM_SET_FPU', encode(KVM_FPU, fpu));
  }

  /** KVM_GET_MSRS: the MSRs that could be read, in order, stopping at the first that could not. */
  getMsrs(indices: readonly number[]): KvmMsrEntry[] {
    const b = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = ioctlPtr(this.fd, 'KVM_GET_MSRS', b);
    return decodeMsrs(b, n);
  }
  /** KVM_SET_MSRS; throws if KVM accepted fewer entries than given, naming the first rejected MSR. */
  setMsrs(entries: readonly { index: number; data: bigint }[]): void {
    const n = ioctlPtr(this.fd, 'KVM_SET_MSRS', encodeMsrs(entries));
    if (n !== entries.length) {
      const bad = entries[n];
      throw new RangeError(`KVM_SET_MSRS: KVM refused MSR 0x${bad?.index.toString(16)} (set ${n} of ${entries.length})`);
    }
  }

  /** KVM_SET_CPUID2: the CPUID leaves the guest sees (`guestCpuid()` builds a set). */
  setCpuid(entries: readonly KvmCpuidEntry[]): void {
    ioctlPtr(this.fd, 'KVM_SET_CPUID2', encodeCpuid(entries));
  }
  /** KVM_GET_CPUID2: the leaves set with `setCpuid()`. */
  getCpuid(): KvmCpuidEntry[] {
    const b = encodeCpuid(new Array<Partial<KvmCpuidEntry>>(256).fill({}));
    ioctlPtr(this.fd, 'KVM_GET_CPUID2', b);
    return decodeCpuid(b);
  }

  /** KVM_GET_MP_STATE. */
  getMpState(): MpState {
    const b = zeroed(KVM_MP_STATE);
    ioctlPtr(this.fd, 'KVM_GET_MP_STATE', b);
    const v = decode(KVM_MP_STATE, b).mp_state;
    const name = (Object.keys(MP_STATE) as MpState[]).find((k) => MP_STATE[k] === v);
    if (!name) throw new RangeError(`KVM_GET_MP_STATE: unknown state ${v}`);
    return name;
  }
  /** KVM_SET_MP_STATE. */
  setMpState(state: MpState): void {
    ioctlPtr(this.fd, 'KVM_SET_MP_STATE', encode(KVM_MP_STATE, { mp_state: MP_STATE[state] }));
  }

  /** KVM_GET_LAPIC (needs the in-kernel irqchip). */
  getLapic(): KvmLapicState {
    const b = zeroed(KVM_LAPIC_STATE);
    ioctlPtr(this.fd, 'KVM_GET_LAPIC', b);
    return decode(KVM_LAPIC_STATE, b);
  }
  /** KVM_SET_LAPIC. */
  setLapic(lapic: KvmLapicState): void {
    ioctlPtr(this.fd, 'KVM_SET_LAPIC', encode(KVM_LAPIC_STATE, lapic));
  }

  /** KVM_GET_VCPU_EVENTS: pending exceptions, interrupts, NMIs. */
  getVcpuEvents(): KvmVcpuEvents {
    const b = zeroed(KVM_VCPU_EVENTS);
    ioctlPtr(this.fd, 'KVM_GET_VCPU_EVENTS', b);
    return decode(KVM_VCPU_EVENTS, b);
  }
  /** KVM_SET_VCPU_EVENTS. */
  setVcpuEvents(events: KvmVcpuEvents): void {
    ioctlPtr(this.fd, 'KVM_SET_VCPU_EVENTS', encode(KVM_VCPU_EVENTS, events));
  }

  /** KVM_GET_DEBUGREGS: DR0–DR3, DR6, DR7. */
  getDebugRegs(): KvmDebugregs {
    const b = zeroed(KVM_DEBUGREGS);
    ioctlPtr(this.fd, 'KVM_GET_DEBUGREGS', b);
    return decode(KVM_DEBUGREGS, b);
  }
  /** KVM_SET_DEBUGREGS. */
  setDebugRegs(regs: KvmDebugregs): void {
    ioctlPtr(this.fd, 'KVM_SET_DEBUGREGS', encode(KVM_DEBUGREGS, regs));
  }

  /** KVM_GET_XCRS: the extended control registers (XCR0). */
  getXcrs(): KvmXcrs {
    const b = zeroed(KVM_XCRS);
    ioctlPtr(this.fd, 'KVM_GET_XCRS', b);
    return decode(KVM_XCRS, b);
  }
  /** KVM_SET_XCRS. */
  setXcrs(xcrs: KvmXcrs): void {
    ioctlPtr(this.fd, 'KVM_SET_XCRS', encode(KVM_XCRS, xcrs));
  }

  /** KVM_SET_GUEST_DEBUG: `control` is a mask of GUEST_DEBUG flags; `debugreg` DR0–DR7. */
  setGuestDebug(debug: Partial<KvmGuestDebug>): void {
    ioctlPtr(this.fd, 'KVM_SET_GUEST_DEBUG', encode(KVM_GUEST_DEBUG, debug));
  }

  /** KVM_TRANSLATE: a guest virtual address through this vCPU's current page tables. */
  translate(gva: bigint): Translation {
    const b = encode(KVM_TRANSLATION, { linear_address: gva });
    ioctlPtr(this.fd, 'KVM_TRANSLATE', b);
    const t = decode(KVM_TRANSLATION, b);
    return {
      linearAddress: t.linear_address,
      physicalAddress: t.physical_address,
      valid: t.valid !== 0,
      writeable: t.writeable !== 0,
      usermode: t.usermode !== 0,
    };
  }

  /**
   * KVM_SET_SIGNAL_MASK: the signal mask in effect while the vCPU is inside KVM_RUN
   * (`sigset` is the kernel's 8-byte sigset_t), or null to run with the thread's own mask.
   */
  setSignalMask(sigset: Uint8Array | null): void {
    if (sigset === null) {
      ioctlPtr(this.fd, 'KVM_SET_SIGNAL_MASK', null);
      return;
    }
    const b = new Uint8Array(KVM_SIGNAL_MASK.size + sigset.length);
    new DataView(b.buffer).setUint32(0, sigset.length, true);
    b.set(sigset, KVM_SIGNAL_MASK.size);
    ioctlPtr(this.fd, 'KVM_SET_SIGNAL_MASK', b);
  }

  /** Unmaps kvm_run and closes the fd. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    sysMunmap(this.#runAddress, this.#runSize);
    sysClose(this.#fd);
    this.#fd = -1;
    this.#onClose(this);
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
