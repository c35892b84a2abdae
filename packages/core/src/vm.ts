/**
 * `Vm`: one virtual machine, made by `Kvm.createVm()`. Owns its fd, its memory slots and
 * the vCPUs it creates; `close()` releases all of them.
 */
import type { Kvm } from './kvm.js';
import { KVM_CAPS, type KvmCapName } from './caps/capability-table.js';
import { ClosedError, KvmUnsupportedError, outOfRange } from './errors.js';
import type { EventFd } from './eventfd.js';
import {
  KVM_IOEVENTFD_FLAG, KVM_IOEVENTFD_STRUCT, KVM_IRQFD_FLAG, KVM_IRQFD_STRUCT, KVM_CLOCK_DATA, KVM_COALESCED_MMIO_ZONE, KVM_IRQCHIP, KVM_PIT_STATE2, type KvmPitState2, KVM_CLEAR_DIRTY_LOG, KVM_DIRTY_LOG, KVM_ENABLE_CAP, KVM_IRQ_LEVEL, KVM_PIT_CONFIG,
  KVM_USERSPACE_MEMORY_REGION, addressOf, decode, encode, ioctlInt, ioctlPtr, sysClose, type KvmClockData,
} from './ffi/index.js';
import { GuestMemory, MemorySlot, type MemorySlotInfo } from './memory.js';
import { parseSize, PAGE_SIZE, type Size } from './util/size.js';
import { Vcpu } from './vcpu.js';

/** Options of `kvm.createVm()`. All are optional; sandboxes and `createMachine()` set what they need. */
export interface VmOptions {
  /** KVM_CREATE_VM machine type (0 on x86). */
  type?: number;
  /** Create the in-kernel irqchip (PIC, IOAPIC, LAPICs): KVM_CREATE_IRQCHIP. */
  irqchip?: boolean;
  /** Create the in-kernel PIT (needs `irqchip`): KVM_CREATE_PIT2. */
  pit?: boolean;
  /** Guest physical address of the three-page TSS region Intel needs for real mode (KVM_SET_TSS_ADDR). */
  tssAddress?: bigint;
  /** Guest physical address of the identity-map page (KVM_SET_IDENTITY_MAP_ADDR). */
  identityMapAddress?: bigint;
}

/** Options of `vm.irqfd()`. */
export interface IrqfdOptions {
  /**
   * Level-triggered use (KVM_IRQFD_FLAG_RESAMPLE, needs KVM_CAP_IRQFD_RESAMPLE): a write to the eventfd
   * asserts the line and keeps it asserted until the guest EOIs it; KVM then lowers it and signals this
   * eventfd, where the device re-asserts if its condition still holds. Without it the line is pulsed (edge).
   */
  resample?: EventFd | number;
}

/** Options of `vm.ioeventfd()`. */
export interface IoeventfdOptions {
  /** Guest-physical address (MMIO), or the port with `pio`. Outside every memory slot. */
  address: bigint | number;
  /** Access size that triggers it: 1, 2, 4 or 8 bytes. */
  length: 1 | 2 | 4 | 8;
  /**
   * Only a write of this value signals the eventfd (KVM_IOEVENTFD_FLAG_DATAMATCH); any other write exits to
   * userspace as usual. Without it every write of `length` bytes signals.
   */
  datamatch?: bigint | number;
  /** `address` is an I/O port, not MMIO. Default false. */
  pio?: boolean;
}

/** A KVM_IOEVENTFD binding; `close()` removes it (idempotent; `using` works). The eventfd stays the caller's. */
export interface IoeventfdBinding extends Disposable {
  /** The binding's settings. */
  readonly options: Readonly<IoeventfdOptions>;
  /** The eventfd it signals. */
  readonly fd: number;
  /** True once removed (by `close()`, or because the VM closed). */
  readonly closed: boolean;
  /** KVM_IOEVENTFD with DEASSIGN; nothing if the VM is already closed (that dropped the binding). */
  close(): void;
}

/** Options of `vm.addMemory()`. */
export interface MemorySlotOptions {
  /** First guest-physical address; a multiple of 4096. */
  guestAddress: bigint | number;
  /**
   * Size: bytes or a string such as `'2 MiB'`; a positive multiple of 4096, at most 4 GiB (the largest
   * SharedArrayBuffer Node makes). Backed lazily: pages cost resident memory once touched.
   */
  size: Size;
  /** Guest writes to a read-only slot become MMIO exits (needs KVM_CAP_READONLY_MEM). */
  readOnly?: boolean;
  /** Track written pages for `dirtyPages()`. */
  dirtyLog?: boolean;
  /** Slot number; the lowest free one by default. */
  slot?: number;
}

export const PIT_SPEAKER_DUMMY = 1;

/**
 * A VM handle (`KVM_CREATE_VM`), made by `kvm.createVm()`. It owns its fd, its memory slots and its vCPUs:
 * `close()` closes the vCPUs, then the VM (idempotent; `using` works).
 * This is the bare handle: no threads, no devices. `createMachine()` builds a whole machine around one.
 */
export class Vm implements Disposable {
  /** The system handle this VM was made from. */
  readonly kvm: Kvm;
  #fd: number;
  /** Bounds-checked, zero-copy access to the guest-physical memory of every slot. */
  readonly memory = new GuestMemory();
  readonly #vcpus = new Map<number, Vcpu>();
  #irqchip = false;
  readonly #vcpuMmapSize: number;
  /** False for a VM handle attached to an fd another handle owns (`kvm.attachVm`). */
  readonly #ownsFd: boolean;

  /** @internal Use `kvm.createVm()` or `kvm.attachVm()`. */
  constructor(kvm: Kvm, fd: number, ownsFd = true) {
    this.kvm = kvm;
    this.#fd = fd;
    this.#ownsFd = ownsFd;
    this.#vcpuMmapSize = kvm.vcpuMmapSize();
  }

  /** KVM_CHECK_EXTENSION on the VM fd (the answer can differ per VM). */
  checkExtension(cap: KvmCapName | number): number {
    return ioctlInt(this.fd, 'KVM_CHECK_EXTENSION', typeof cap === 'number' ? cap : KVM_CAPS[cap]);
  }

  /** @internal Applies VmOptions to a fresh VM fd; closes it if set-up fails. */
  static fromFd(kvm: Kvm, fd: number, options: VmOptions): Vm {
    const vm = new Vm(kvm, fd);
    try {
      if (options.tssAddress !== undefined) vm.setTssAddress(options.tssAddress);
      if (options.identityMapAddress !== undefined) vm.setIdentityMapAddress(options.identityMapAddress);
      if (options.irqchip) vm.createIrqchip();
      if (options.pit) vm.createPit();
    } catch (e) {
      vm.close();
      throw e;
    }
    return vm;
  }

  /** The VM fd (owned by this handle); throws `ClosedError` after `close()`. */
  get fd(): number {
    if (this.#fd < 0) throw new ClosedError('Vm');
    return this.#fd;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Whether the in-kernel irqchip was created. */
  get hasIrqchip(): boolean {
    return this.#irqchip;
  }

  /** The vCPUs made by `createVcpu()` and not yet closed. */
  get vcpus(): readonly Vcpu[] {
    return [...this.#vcpus.values()];
  }

  /** Adds a memory slot backed by fresh, zeroed memory. */
  addMemory(options: MemorySlotOptions): MemorySlot {
    const size = parseSize(options.size, 'memory size');
    const slotNo = options.slot ?? this.#freeSlot();
    if (this.memory.slots.some((s) => s.slot === slotNo)) throw new RangeError(`memory slot ${slotNo} is already in use`);
    if (options.readOnly && !this.checkExtension('KVM_CAP_READONLY_MEM')) {
      throw new KvmUnsupportedError('KVM_CAP_READONLY_MEM', 'read-only memory slots are not supported by this host');
    }
    const slot = new MemorySlot(slotNo, BigInt(options.guestAddress), size, {
      readOnly: options.readOnly ?? false,
      dirtyLog: options.dirtyLog ?? false,
    });
    this.memory.insert(slot);
    try {
      this.#setRegion(slot, size);
    } catch (e) {
      this.memory.remove(slot);
      throw e;
    }
    return slot;
  }

  /** Removes a memory slot (KVM_SET_USER_MEMORY_REGION with size 0). */
  removeMemory(slot: MemorySlot | number): void {
    const s = typeof slot === 'number' ? this.memory.slots.find((x) => x.slot === slot) : slot;
    if (!s || !this.memory.slots.includes(s)) throw new RangeError(`memory slot ${String(typeof slot === 'number' ? slot : slot.slot)} is not in this VM`);
    this.#setRegion(s, 0);
    this.memory.remove(s);
  }

  /** Every slot's settings, in guest-address order. */
  memorySlots(): MemorySlotInfo[] {
    return this.memory.slots.map((s) => s.describe());
  }

  #setRegion(slot: MemorySlot, size: number): void {
    ioctlPtr(this.fd, 'KVM_SET_USER_MEMORY_REGION', encode(KVM_USERSPACE_MEMORY_REGION, {
      slot: slot.slot,
      flags: slot.flags,
      guest_phys_addr: slot.guestAddress,
      memory_size: BigInt(size),
      userspace_addr: slot.hostAddress,
    }));
  }

  #freeSlot(): number {
    const used = new Set(this.memory.slots.map((s) => s.slot));
    let n = 0;
    while (used.has(n)) n++;
    return n;
  }

  /**
   * KVM_GET_DIRTY_LOG: indices (within the slot) of the pages written since the last call.
   * Reading the log clears it (with manual protection on, by a KVM_CLEAR_DIRTY_LOG of what it read).
   */
  dirtyPages(slot: MemorySlot | number): number[] {
    const s = this.#dirtySlot(slot);
    const words = this.dirtyBitmap(s);
    const out = pagesOf(words);
    if (this.#manualDirty && out.length > 0) this.clearDirtyLog(s, words);
    return out;
  }

  /**
   * KVM_GET_DIRTY_LOG into the slot's own bitmap (64 pages a word, page i at bit i % 64 of word
   * i / 64; valid until the next call). Without manual protection reading clears the log and
   * write-protects the pages again; with it (`enableManualDirtyProtect`), neither happens: a page
   * stays in the log, and writable, until `clearDirtyLog` names it.
   */
  dirtyBitmap(slot: MemorySlot | number): BigUint64Array {
    const s = this.#dirtySlot(slot);
    let b = s.dirtyLogBuffers;
    if (!b) {
      const bitmap = new Uint8Array(Math.ceil(s.size / PAGE_SIZE / 64) * 8);
      const clear = new Uint8Array(bitmap.length);
      b = {
        bitmap, words: new BigUint64Array(bitmap.buffer), arg: encode(KVM_DIRTY_LOG, { slot: s.slot, dirty_bitmap: addressOf(bitmap) }),
        clear, clearWords: new BigUint64Array(clear.buffer),
        clearArg: encode(KVM_CLEAR_DIRTY_LOG, { slot: s.slot, num_pages: s.size / PAGE_SIZE, first_page: 0n, dirty_bitmap: addressOf(clear) }),
      };
      s.dirtyLogBuffers = b;
    }
    ioctlPtr(this.fd, 'KVM_GET_DIRTY_LOG', b.arg);
    return b.words;
  }

  /**
   * KVM_CLEAR_DIRTY_LOG (manual protection only): takes the pages set in `pages` (a bitmap shaped
   * like `dirtyBitmap`'s) out of the log and write-protects them, so the guest's next write to
   * each is logged again.
   */
  clearDirtyLog(slot: MemorySlot | number, pages: BigUint64Array): void {
    if (!this.#manualDirty) throw new RangeError('clearDirtyLog: manual dirty-log protection is not enabled on this VM');
    const s = this.#dirtySlot(slot);
    if (!s.dirtyLogBuffers) this.dirtyBitmap(s);
    const b = s.dirtyLogBuffers!;
    if (pages.length !== b.clearWords.length) throw new RangeError(`clearDirtyLog: a bitmap of ${pages.length} words, the slot has ${b.clearWords.length}`);
    if (pages !== b.clearWords) b.clearWords.set(pages);
    ioctlPtr(this.fd, 'KVM_CLEAR_DIRTY_LOG', b.clearArg);
  }

  /**
   * Turns on KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 for this VM where the host has it; returns whether
   * it is on. Then reading the dirty log neither clears it nor write-protects the pages
   * (`dirtyBitmap`, `clearDirtyLog`).
   */
  enableManualDirtyProtect(): boolean {
    if (this.#manualDirty) return true;
    if ((this.checkExtension('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2') & MANUAL_PROTECT_ENABLE) === 0) return false;
    this.enableCap(KVM_CAPS.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, [BigInt(MANUAL_PROTECT_ENABLE)]);
    this.#manualDirty = true;
    return true;
  }

  /** Whether manual dirty-log protection is on (`enableManualDirtyProtect`). */
  get manualDirtyProtect(): boolean {
    return this.#manualDirty;
  }
  #manualDirty = false;

  #dirtySlot(slot: MemorySlot | number): MemorySlot {
    const s = typeof slot === 'number' ? this.memory.slots.find((x) => x.slot === slot) : slot;
    if (!s) throw new RangeError(`memory slot ${String(slot)} is not in this VM`);
    if (!s.dirtyLog) throw new RangeError(`memory slot ${s.slot} was not created with dirtyLog: true`);
    return s;
  }

  /** KVM_CREATE_IRQCHIP: the in-kernel PIC, IOAPIC and LAPICs. */
  createIrqchip(): void {
    ioctlInt(this.fd, 'KVM_CREATE_IRQCHIP');
    this.#irqchip = true;
  }

  /** KVM_CREATE_PIT2: the in-kernel PIT (after `createIrqchip()`). */
  createPit(flags = PIT_SPEAKER_DUMMY): void {
    ioctlPtr(this.fd, 'KVM_CREATE_PIT2', encode(KVM_PIT_CONFIG, { flags }));
    this.#pit = true;
  }

  /** Whether the in-kernel PIT was created. */
  get hasPit(): boolean {
    return this.#pit;
  }
  #pit = false;

  /** KVM_SET_TSS_ADDR: three pages of guest-physical space Intel's real-mode emulation needs. */
  setTssAddress(gpa: bigint): void {
    ioctlInt(this.fd, 'KVM_SET_TSS_ADDR', gpa);
  }

  /** KVM_SET_IDENTITY_MAP_ADDR: one page of guest-physical space for Intel's real-mode identity map. */
  setIdentityMapAddress(gpa: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, gpa, true);
    ioctlPtr(this.fd, 'KVM_SET_IDENTITY_MAP_ADDR', b);
  }

  /** KVM_IRQ_LINE: drives an irqchip input (GSI) high or low. */
  irqLine(irq: number, level: boolean): void {
    ioctlPtr(this.fd, 'KVM_IRQ_LINE', encode(KVM_IRQ_LEVEL, { irq, level: level ? 1 : 0 }));
  }

  /**
   * KVM_IRQFD: a write to `eventfd` raises irqchip input `gsi` inside the kernel (no ioctl, no exit: a device
   * thread signals a completion by writing the eventfd). Needs the in-kernel irqchip and KVM_CAP_IRQFD.
   * Undo with `removeIrqfd()`; closing the VM drops every binding. An eventfd binds to one GSI of a VM.
   */
  irqfd(eventfd: EventFd | number, gsi: number, options: IrqfdOptions = {}): void {
    if (!this.#irqchip) throw new KvmUnsupportedError('irqchip', 'KVM_IRQFD needs the in-kernel irqchip (createVm({ irqchip: true }))');
    if (!this.checkExtension('KVM_CAP_IRQFD')) throw new KvmUnsupportedError('KVM_CAP_IRQFD', 'irqfd is not supported by this host');
    checkGsi(gsi);
    const fd = fdOf(eventfd);
    let flags = 0;
    let resamplefd = 0;
    if (options.resample !== undefined) {
      if (!this.checkExtension('KVM_CAP_IRQFD_RESAMPLE')) {
        throw new KvmUnsupportedError('KVM_CAP_IRQFD_RESAMPLE', 'level-triggered irqfd (resample) is not supported by this host');
      }
      flags |= KVM_IRQFD_FLAG.RESAMPLE;
      resamplefd = fdOf(options.resample);
    }
    ioctlPtr(this.fd, 'KVM_IRQFD', encode(KVM_IRQFD_STRUCT, { fd, gsi, flags, resamplefd }));
  }

  /** KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN: unbinds `eventfd` from `gsi` (the pair given to `irqfd()`). */
  removeIrqfd(eventfd: EventFd | number, gsi: number): void {
    checkGsi(gsi);
    ioctlPtr(this.fd, 'KVM_IRQFD', encode(KVM_IRQFD_STRUCT, { fd: fdOf(eventfd), gsi, flags: KVM_IRQFD_FLAG.DEASSIGN }));
  }

  /**
   * KVM_IOEVENTFD: a guest write matching `options` (address, length, optionally the value) signals `eventfd`
   * inside the kernel — the vCPU does not exit to userspace, so a doorbell costs no round trip through the
   * host process. Another thread watches the eventfd (poll(2)). Needs KVM_CAP_IOEVENTFD. The returned binding
   * removes it on `close()`; closing the VM drops every binding.
   */
  ioeventfd(eventfd: EventFd | number, options: IoeventfdOptions): IoeventfdBinding {
    if (!this.checkExtension('KVM_CAP_IOEVENTFD')) throw new KvmUnsupportedError('KVM_CAP_IOEVENTFD', 'ioeventfd is not supported by this host');
    const fd = fdOf(eventfd);
    const addr = BigInt(options.address);
    if (addr < 0n || addr > (options.pio ? 0xffffn : 0xffff_ffff_ffff_ffffn)) throw outOfRange('ioeventfd address', `0x${addr.toString(16)} is not a valid ${options.pio ? 'port' : 'guest-physical address'}`);
    if (![1, 2, 4, 8].includes(options.length)) throw outOfRange('ioeventfd length', `${String(options.length)} is not 1, 2, 4 or 8`);
    let datamatch = 0n;
    let flags = options.pio ? KVM_IOEVENTFD_FLAG.PIO : 0;
    if (options.datamatch !== undefined) {
      datamatch = BigInt(options.datamatch);
      if (datamatch < 0n || datamatch >= 1n << BigInt(options.length * 8)) throw outOfRange('ioeventfd datamatch', `${datamatch} does not fit ${options.length} bytes`);
      flags |= KVM_IOEVENTFD_FLAG.DATAMATCH;
    }
    const arg = (extra: number): Uint8Array => encode(KVM_IOEVENTFD_STRUCT, { datamatch, addr, len: options.length, fd, flags: flags | extra });
    ioctlPtr(this.fd, 'KVM_IOEVENTFD', arg(0));
    let open = true;
    const binding: IoeventfdBinding = {
      options: { ...options },
      fd,
      get closed() {
        return !open;
      },
      close: () => {
        if (!open) return;
        open = false;
        this.#ioeventfds.delete(binding);
        if (this.#fd >= 0) ioctlPtr(this.#fd, 'KVM_IOEVENTFD', arg(KVM_IOEVENTFD_FLAG.DEASSIGN));
      },
      [Symbol.dispose]: () => binding.close(),
    };
    this.#ioeventfds.add(binding);
    return binding;
  }

  /** The ioeventfd bindings not removed yet. */
  get ioeventfds(): readonly IoeventfdBinding[] {
    return [...this.#ioeventfds];
  }
  readonly #ioeventfds = new Set<IoeventfdBinding>();

  /** KVM_REGISTER_COALESCED_MMIO: writes to the zone are queued in a ring instead of exiting. */
  registerCoalescedZone(address: bigint, size: number, pio = false): void {
    ioctlPtr(this.fd, 'KVM_REGISTER_COALESCED_MMIO', encode(KVM_COALESCED_MMIO_ZONE, { addr: address, size, pio: pio ? 1 : 0 }));
  }

  /** KVM_UNREGISTER_COALESCED_MMIO: undoes `registerCoalescedZone()`. */
  unregisterCoalescedZone(address: bigint, size: number, pio = false): void {
    ioctlPtr(this.fd, 'KVM_UNREGISTER_COALESCED_MMIO', encode(KVM_COALESCED_MMIO_ZONE, { addr: address, size, pio: pio ? 1 : 0 }));
  }

  /** KVM_ENABLE_CAP on the VM with up to four arguments. */
  enableCap(cap: number, args: bigint[] = []): void {
    ioctlPtr(this.fd, 'KVM_ENABLE_CAP', encode(KVM_ENABLE_CAP, { cap, args: BigUint64Array.from(args) }));
  }

  /** KVM_GET_CLOCK: the VM's kvmclock. */
  getClock(): KvmClockData {
    const b = new Uint8Array(KVM_CLOCK_DATA.size);
    ioctlPtr(this.fd, 'KVM_GET_CLOCK', b);
    return decode(KVM_CLOCK_DATA, b);
  }
  /** KVM_SET_CLOCK: only `clock` (and the flags that say which other fields count) are taken. */
  setClock(clock: KvmClockData): void {
    ioctlPtr(this.fd, 'KVM_SET_CLOCK', encode(KVM_CLOCK_DATA, { clock: clock.clock, flags: 0 }));
  }

  /** KVM_GET_IRQCHIP: chip 0 = PIC master, 1 = PIC slave, 2 = IOAPIC (raw 512-byte state). */
  getIrqchip(chip: 0 | 1 | 2): Uint8Array {
    const b = encode(KVM_IRQCHIP, { chip_id: chip });
    ioctlPtr(this.fd, 'KVM_GET_IRQCHIP', b);
    return decode(KVM_IRQCHIP, b).chip;
  }
  /** KVM_SET_IRQCHIP: writes back a state from `getIrqchip()`. */
  setIrqchip(chip: 0 | 1 | 2, state: Uint8Array): void {
    ioctlPtr(this.fd, 'KVM_SET_IRQCHIP', encode(KVM_IRQCHIP, { chip_id: chip, chip: state }));
  }

  /** KVM_GET_PIT2: the in-kernel PIT's state. */
  getPit(): KvmPitState2 {
    const b = new Uint8Array(KVM_PIT_STATE2.size);
    ioctlPtr(this.fd, 'KVM_GET_PIT2', b);
    return decode(KVM_PIT_STATE2, b);
  }
  /** KVM_SET_PIT2: writes back a state from `getPit()`. */
  setPit(state: KvmPitState2): void {
    ioctlPtr(this.fd, 'KVM_SET_PIT2', encode(KVM_PIT_STATE2, state));
  }

  /**
   * KVM_CREATE_VCPU. Create a vCPU in the thread that will run it: KVM expects a vCPU's
   * ioctls from the thread that created it.
   */
  createVcpu(id = this.#vcpus.size): Vcpu {
    if (this.#vcpus.has(id)) throw new RangeError(`vCPU ${id} already exists in this VM`);
    const fd = ioctlInt(this.fd, 'KVM_CREATE_VCPU', id);
    const vcpu = new Vcpu(id, fd, this.#vcpuMmapSize, (v) => this.#vcpus.delete(v.id));
    this.#vcpus.set(id, vcpu);
    return vcpu;
  }

  /**
   * Closes every vCPU, then the VM fd (which releases the memory slots in the kernel), then
   * drops the guest memory. An attached handle leaves the fd to its owner. Idempotent.
   */
  close(): void {
    if (this.#fd < 0) return;
    for (const v of [...this.#vcpus.values()]) v.close();
    if (this.#ownsFd) sysClose(this.#fd);
    this.#fd = -1;
    // Closing the fd dropped the kernel's bindings; the handles only need to know.
    for (const b of [...this.#ioeventfds]) b.close();
    for (const s of [...this.memory.slots]) this.memory.remove(s);
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The IOAPIC has 24 pins; KVM's default routing covers GSIs 0–23 (PIC pins 0–15 alias the first 16). */
export const IOAPIC_PINS = 24;

/** KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE: KVM_GET_DIRTY_LOG leaves the log and the protection alone. */
const MANUAL_PROTECT_ENABLE = 1;

/** The page indices set in a dirty-log bitmap, ascending. */
function pagesOf(words: BigUint64Array): number[] {
  const out: number[] = [];
  for (let w = 0; w < words.length; w++) {
    const v = words[w]!;
    if (v === 0n) continue;
    let lo = Number(v & 0xffff_ffffn);
    let hi = Number(v >> 32n);
    for (let bit = 0; lo !== 0; bit++, lo >>>= 1) if (lo & 1) out.push(w * 64 + bit);
    for (let bit = 32; hi !== 0; bit++, hi >>>= 1) if (hi & 1) out.push(w * 64 + bit);
  }
  return out;
}

function checkGsi(gsi: number): void {
  if (!Number.isInteger(gsi) || gsi < 0 || gsi >= IOAPIC_PINS) throw outOfRange('gsi', `${gsi} is not an IOAPIC pin (0–${IOAPIC_PINS - 1})`);
}

function fdOf(e: EventFd | number): number {
  const fd = typeof e === 'number' ? e : e.fd;
  if (!Number.isInteger(fd) || fd < 0) throw outOfRange('eventfd', `${fd} is not a file descriptor`);
  return fd;
}
