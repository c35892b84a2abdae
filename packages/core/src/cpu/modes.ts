/**
 * Guest CPU modes, set up from the host by ioctl (no guest boot code):
 * - `real`: 16-bit real mode, CS:IP = 0:entry.
 * - `protected`: 32-bit flat protected mode, no paging.
 * - `paged`: 32-bit protected mode with paging: PAE (2 MiB pages) by default, or `legacy`
 *   two-level paging with 4 MiB PSE pages as in kvm-hello-world.
 * - `long`: 64-bit mode, CPL 0, identity-mapped with 2 MiB pages.
 * - `user`: 64-bit mode at CPL 3 with user pages — no guest kernel. Port I/O is allowed both
 *   by IOPL 3 and by a TSS I/O permission bitmap that grants every port (some hosts, such as
 *   kvm_pvm, run CPL 3 natively with the host's IOPL and honour only the bitmap). An
 *   exception has no handler and ends in a triple fault (`shutdown` exit).
 *
 * The GDT, TSS (with its I/O bitmap) and page tables are written to a system area in guest
 * memory: `systemArea`, default 0x1000, SYSTEM_AREA_SIZE bytes (0x1000–0xafff).
 *
 * `protectSystemArea` (user mode; what sandboxes use) maps the first 2 MiB with 4 KiB pages so
 * that the system area is read-only to CPL 3: a guest cannot edit its page tables, GDT or TSS
 * (the write faults, and with no IDT the guest shuts down), while the rest of low memory — the
 * sandbox call area at 0xc000 among it — stays user-writable. Read-only rather than supervisor-
 * only: the tables hold nothing secret (every call sees the same pristine bytes), and guests
 * that scan all of their memory keep working. Machine guests keep the all-writable layout.
 */
import type { GuestMemory } from '../memory.js';
import type { KvmRegs, KvmSregs } from '../ffi/index.js';
import { KvmUnsupportedError } from '../errors.js';
import type { Vcpu } from '../vcpu.js';
import {
  CR0, CR4, EFER, PTE, RFLAGS, SELECTOR, SEG_TYPE, encodeDescriptor, encodeSystemDescriptor, flatSegment, segment,
} from './descriptors.js';

/** The CPU modes `setupCpuMode()` can put a vCPU in. */
export const CPU_MODES = ['real', 'protected', 'paged', 'long', 'user'] as const;
/**
 * A CPU mode: `real` (16-bit), `protected` (32-bit flat), `paged` (32-bit with paging), `long` (64-bit CPL 0),
 * `user` (64-bit CPL 3, the default for machines and sandboxes).
 */
export type CpuMode = (typeof CPU_MODES)[number];

/** Options of `setupCpuMode()`. */
export interface CpuModeOptions {
  /** Where the GDT, TSS and page tables go (page-aligned; 7 pages). Default 0x1000. */
  systemArea?: bigint;
  /** How many bytes from GPA 0 to identity-map in paged/long/user mode (≤ 4 GiB). Default 1 GiB. */
  mapSize?: number;
  /**
   * User mode only: the system area read-only to CPL 3 (4 KiB pages for the low 2 MiB; the page
   * table goes in the system area's last page, so mapSize is then at most 3 GiB). Default false.
   */
  protectSystemArea?: boolean;
  /**
   * With `protectSystemArea`: CPL 3 may not write below this address from the system area on
   * (default: the system area's end; at most 2 MiB). Linux sandboxes protect their syscall stub so.
   */
  protectedEnd?: bigint;
  /** With `protectSystemArea`: guest page 0 is not mapped, so a NULL dereference faults. Default false. */
  unmapNullPage?: boolean;
  /**
   * 64-bit modes: IDTR base (a 256-gate IDT, limit 0xfff, that the guest writes itself: `lidt` is
   * privileged). Without it IDTR is left as it is (empty), and any exception shuts the guest down.
   */
  idt?: bigint;
  /**
   * 64-bit modes: TSS.RSP0, the stack an interrupt or exception from CPL 3 switches to (CPL 0 gates).
   * One TSS serves every vCPU, so at most one vCPU may take interrupts from CPL 3 at a time on it.
   */
  interruptStack?: bigint;
  /** 32-bit paging flavour for `paged` mode. Default `pae`. */
  paging?: 'pae' | 'legacy';
  /**
   * The whole register file to start from, written without reading the old one first
   * (unlisted registers are 0; RFLAGS gets the mode's bits). Without it, only RFLAGS changes.
   */
  regs?: Partial<KvmRegs>;
}

export const SYSTEM_AREA_SIZE = 0xa000;
/** TSS: 104-byte header, then an I/O permission bitmap for all 65536 ports, then 0xff. */
const TSS_IOMAP_OFFSET = 0x68;
const TSS_LIMIT = TSS_IOMAP_OFFSET + 0x2000;
const GIB = 1 << 30;

interface Layout {
  gdt: bigint;
  tss: bigint;
  top: bigint; // PML4, legacy PD, or PAE PDPT
  next: bigint; // first page after `top`
}

function layoutAt(base: bigint): Layout {
  if (base % 0x1000n !== 0n) throw new RangeError(`systemArea 0x${base.toString(16)} is not page-aligned`);
  return { gdt: base, tss: base + 0x1000n, top: base + 0x4000n, next: base + 0x5000n };
}

function tssSegment(l: Layout): ReturnType<typeof segment> {
  return segment({ base: l.tss, limit: TSS_LIMIT, selector: SELECTOR.TSS, type: SEG_TYPE.TSS_BUSY, present: 1 });
}

function writeGdt(mem: GuestMemory, l: Layout, bits: 32 | 64): void {
  const tss = tssSegment(l);
  const entries = [
    0n,
    encodeDescriptor(flatSegment('code', 0, bits, SELECTOR.KERNEL_CODE)),
    encodeDescriptor(flatSegment('data', 0, bits, SELECTOR.KERNEL_DATA)),
    encodeDescriptor(flatSegment('code', 3, bits, SELECTOR.USER_CODE)),
    encodeDescriptor(flatSegment('data', 3, bits, SELECTOR.USER_DATA)),
    ...encodeSystemDescriptor(tss),
  ];
  entries.forEach((d, i) => mem.writeU64(l.gdt + BigInt(i * 8), d));
  // A zeroed bitmap grants every port; the byte after it must be 0xff.
  mem.fill(l.tss, TSS_LIMIT + 1, 0);
  mem.writeU16(l.tss + 0x66n, TSS_IOMAP_OFFSET);
  mem.writeU8(l.tss + BigInt(TSS_LIMIT), 0xff);
}

/** TSS.RSP0 (offset 4 of the 64-bit TSS). */
const TSS_RSP0 = 4n;

/**
 * 64-bit identity map of [0, mapSize) with 2 MiB pages: PML4 → PDPT → PDs. With `protect`, the
 * first 2 MiB are 4 KiB pages from a page table in the system area's last page, the system
 * area's own pages without RW.
 */
function writeLongModeTables(mem: GuestMemory, l: Layout, mapSize: number, user: boolean, protect: boolean, options: CpuModeOptions = {}): void {
  const flags = PTE.P | PTE.RW | PTE.A | (user ? PTE.US : 0n);
  const pdpt = l.next;
  const pds = Math.ceil(mapSize / GIB);
  const pt = l.gdt + BigInt(SYSTEM_AREA_SIZE - 0x1000);
  if (protect && pdpt + 0x1000n * BigInt(1 + pds) > pt) {
    throw new RangeError(`protectSystemArea: mapSize ${mapSize} needs ${pds} page directories; at most 3 GiB fit beside the page table`);
  }
  mem.fill(l.top, 0x1000 * (2 + pds), 0);
  mem.writeU64(l.top, pdpt | flags);
  for (let g = 0; g < pds; g++) {
    const pd = pdpt + 0x1000n * BigInt(1 + g);
    mem.writeU64(pdpt + BigInt(8 * g), pd | flags);
    for (let i = 0; i < 512; i++) {
      const phys = BigInt(g) * BigInt(GIB) + BigInt(i) * 0x200000n;
      if (phys >= BigInt(mapSize)) break;
      mem.writeU64(pd + BigInt(8 * i), phys | flags | PTE.D | PTE.PS);
    }
  }
  if (!protect) return;
  mem.fill(pt, 0x1000, 0);
  const sysEnd = options.protectedEnd ?? l.gdt + BigInt(SYSTEM_AREA_SIZE);
  if (sysEnd < l.gdt + BigInt(SYSTEM_AREA_SIZE) || sysEnd > 0x20_0000n) {
    throw new RangeError(`protectedEnd 0x${sysEnd.toString(16)} must lie between the system area's end and 2 MiB`);
  }
  for (let i = options.unmapNullPage ? 1 : 0; i < 512 && i * 0x1000 < mapSize; i++) {
    const phys = BigInt(i) * 0x1000n;
    const system = phys >= l.gdt && phys < sysEnd;
    mem.writeU64(pt + BigInt(8 * i), phys | PTE.P | PTE.A | PTE.D | (user ? PTE.US : 0n) | (system ? 0n : PTE.RW));
  }
  mem.writeU64(pdpt + 0x1000n, pt | flags); // PD[0] → the page table
}

/** 32-bit PAE identity map: PDPT (4 entries) → PDs of 2 MiB pages. */
function writePaeTables(mem: GuestMemory, l: Layout, mapSize: number): void {
  const pds = Math.ceil(mapSize / GIB);
  mem.fill(l.top, 0x1000 * (1 + pds), 0);
  for (let g = 0; g < pds; g++) {
    const pd = l.next + 0x1000n * BigInt(g);
    mem.writeU64(l.top + BigInt(8 * g), pd | PTE.P); // PDPTEs: only P; RW/US are reserved in PAE
    for (let i = 0; i < 512; i++) {
      const phys = BigInt(g) * BigInt(GIB) + BigInt(i) * 0x200000n;
      if (phys >= BigInt(mapSize)) break;
      mem.writeU64(pd + BigInt(8 * i), phys | PTE.P | PTE.RW | PTE.US | PTE.A | PTE.D | PTE.PS);
    }
  }
}

/** 32-bit legacy two-level identity map with 4 MiB PSE pages. */
function writeLegacyTables(mem: GuestMemory, l: Layout, mapSize: number): void {
  mem.fill(l.top, 0x1000, 0);
  for (let i = 0; i < 1024 && i * 4 * 1024 * 1024 < mapSize; i++) {
    mem.writeU32(l.top + BigInt(4 * i), ((i << 22) | Number(PTE.P | PTE.RW | PTE.US | PTE.A | PTE.D | PTE.PS)) >>> 0);
  }
}

function setSegments(sregs: KvmSregs, code: KvmSregs['cs'], data: KvmSregs['ds'], l: Layout): void {
  sregs.cs = code;
  sregs.ds = data;
  sregs.es = data;
  sregs.fs = data;
  sregs.gs = data;
  sregs.ss = data;
  sregs.tr = tssSegment(l);
  sregs.gdt = { base: l.gdt, limit: 7 * 8 - 1, padding: new Uint16Array(3) };
}

/** Writes the GDT, TSS and page tables `mode` needs into guest memory (once per VM). */
export function writeModeTables(memory: GuestMemory, mode: CpuMode, options: CpuModeOptions = {}): void {
  const l = layoutAt(options.systemArea ?? 0x1000n);
  const mapSize = checkedMapSize(options);
  switch (mode) {
    case 'real':
      return;
    case 'protected':
      writeGdt(memory, l, 32);
      return;
    case 'paged':
      writeGdt(memory, l, 32);
      if (options.paging === 'legacy') writeLegacyTables(memory, l, mapSize);
      else writePaeTables(memory, l, mapSize);
      return;
    case 'long':
    case 'user':
      writeGdt(memory, l, 64);
      if (options.interruptStack !== undefined) memory.writeU64(l.tss + TSS_RSP0, options.interruptStack);
      writeLongModeTables(memory, l, mapSize, mode === 'user', mode === 'user' && options.protectSystemArea === true, options);
      return;
  }
}

function checkedMapSize(options: CpuModeOptions): number {
  const mapSize = options.mapSize ?? GIB;
  if (mapSize <= 0 || mapSize > 4 * GIB) throw new RangeError(`mapSize ${mapSize} must be in (0, 4 GiB]`);
  return mapSize;
}

/**
 * Sets the vCPU's segments, control registers and RFLAGS for `mode`, pointing at tables that
 * `writeModeTables` wrote. Throws KvmUnsupportedError if the host does not keep them.
 */
export function setVcpuMode(vcpu: Vcpu, mode: CpuMode, options: CpuModeOptions = {}): void {
  const l = layoutAt(options.systemArea ?? 0x1000n);
  const sregs = vcpu.getSregs();
  let rflags = RFLAGS.FIXED;

  switch (mode) {
    case 'real':
      for (const seg of [sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss]) {
        seg.base = 0n;
        seg.selector = 0;
      }
      sregs.cr0 &= ~(CR0.PE | CR0.PG);
      break;
    case 'protected':
    case 'paged':
      setSegments(sregs, flatSegment('code', 0, 32, SELECTOR.KERNEL_CODE), flatSegment('data', 0, 32, SELECTOR.KERNEL_DATA), l);
      sregs.cr0 = CR0.PE | CR0.MP | CR0.ET | CR0.NE;
      sregs.cr4 = 0n;
      sregs.efer = 0n;
      if (mode === 'paged') {
        sregs.cr4 = options.paging === 'legacy' ? CR4.PSE : CR4.PAE;
        sregs.cr3 = l.top;
        sregs.cr0 |= CR0.WP | CR0.AM | CR0.PG;
      }
      break;
    case 'long':
    case 'user': {
      const user = mode === 'user';
      const dpl = user ? 3 : 0;
      setSegments(
        sregs,
        flatSegment('code', dpl, 64, user ? SELECTOR.USER_CODE : SELECTOR.KERNEL_CODE),
        flatSegment('data', dpl, 64, user ? SELECTOR.USER_DATA : SELECTOR.KERNEL_DATA),
        l,
      );
      sregs.cr3 = l.top;
      sregs.cr4 = CR4.PAE | CR4.OSFXSR | CR4.OSXMMEXCPT;
      sregs.cr0 = CR0.PE | CR0.MP | CR0.ET | CR0.NE | CR0.WP | CR0.AM | CR0.PG;
      sregs.efer = EFER.LME | EFER.LMA;
      if (user) rflags |= RFLAGS.IOPL3;
      if (options.idt !== undefined) sregs.idt = { base: options.idt, limit: 0xfff, padding: new Uint16Array(3) };
      break;
    }
  }
  vcpu.setSregs(sregs);
  if (options.regs) vcpu.setRegs({ ...ZERO_REGS, ...options.regs, rflags: rflags | (options.regs.rflags ?? 0n) });
  else vcpu.patchRegs({ rflags });
  // Paging is where a host may accept KVM_SET_SREGS yet keep a bit clear: read it back.
  if ((sregs.cr0 & CR0.PG) !== 0n) verifyMode(vcpu, mode, sregs);
}

const ZERO_REGS: KvmRegs = {
  rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n, r8: 0n, r9: 0n, r10: 0n, r11: 0n,
  r12: 0n, r13: 0n, r14: 0n, r15: 0n, rip: 0n, rflags: 0n,
};

/**
 * Puts `vcpu` in `mode`, writing the tables it needs into `memory`. Registers other than
 * segments, control registers and RFLAGS are left for the caller (entry point, stack).
 */
export function setupCpuMode(vcpu: Vcpu, memory: GuestMemory, mode: CpuMode, options: CpuModeOptions = {}): void {
  writeModeTables(memory, mode, options);
  setVcpuMode(vcpu, mode, options);
}

/**
 * Reads the control registers back: a host may accept KVM_SET_SREGS yet keep a bit clear
 * (kvm_pvm keeps CR0.PG clear outside long mode, and the vCPU then shuts down on entry).
 */
function verifyMode(vcpu: Vcpu, mode: CpuMode, wanted: KvmSregs): void {
  const got = vcpu.getSregs();
  const diffs: string[] = [];
  if (got.cr0 !== wanted.cr0) diffs.push(`CR0 0x${wanted.cr0.toString(16)} became 0x${got.cr0.toString(16)}`);
  if (got.cr4 !== wanted.cr4) diffs.push(`CR4 0x${wanted.cr4.toString(16)} became 0x${got.cr4.toString(16)}`);
  if (got.efer !== wanted.efer) diffs.push(`EFER 0x${wanted.efer.toString(16)} became 0x${got.efer.toString(16)}`);
  if (diffs.length > 0) {
    const pg = (wanted.cr0 & CR0.PG) !== 0n && (got.cr0 & CR0.PG) === 0n;
    throw new KvmUnsupportedError(
      `cpu-mode:${mode}`,
      `${mode} mode is not supported by this host: KVM_SET_SREGS kept ${diffs.join(', ')}` +
        (pg ? ' (the host refuses paging outside long mode)' : ''),
    );
  }
}

/**
 * Points the vCPU at `entry` (a guest physical = virtual address in the identity-mapped
 * modes) with stack `stack`. In real mode, CS:IP is chosen so that CS.base + IP = entry.
 */
export function setEntryPoint(vcpu: Vcpu, mode: CpuMode, entry: bigint, stack = 0n): void {
  if (mode === 'real') {
    if (entry >= 0x10_0000n) throw new RangeError(`real-mode entry 0x${entry.toString(16)} is above 1 MiB`);
    const sregs = vcpu.getSregs();
    sregs.cs.selector = Number(entry >> 4n);
    sregs.cs.base = (entry >> 4n) << 4n;
    vcpu.setSregs(sregs);
    vcpu.patchRegs({ rip: entry & 0xfn, rsp: stack });
    return;
  }
  vcpu.patchRegs({ rip: entry, rsp: stack });
}
