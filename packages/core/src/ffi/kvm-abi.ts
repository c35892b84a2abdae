/**
 * KVM's x86-64 userspace ABI (linux/kvm.h, asm/kvm.h): each struct declared once.
 * The third argument of `defineStruct` is the kernel's `sizeof`; offsets the code
 * depends on are checked below. Both checks run when this module loads, and
 * `test/abi.test.ts` compares every size and ioctl number with a C program built
 * against the machine's kernel headers.
 */
import { array, checkOffset, defineStruct, type Infer } from './layout.js';

export const KVM_REGS = defineStruct('kvm_regs', {
  rax: 'u64', rbx: 'u64', rcx: 'u64', rdx: 'u64', rsi: 'u64', rdi: 'u64', rsp: 'u64', rbp: 'u64',
  r8: 'u64', r9: 'u64', r10: 'u64', r11: 'u64', r12: 'u64', r13: 'u64', r14: 'u64', r15: 'u64',
  rip: 'u64', rflags: 'u64',
}, 144);

export const KVM_SEGMENT = defineStruct('kvm_segment', {
  base: 'u64', limit: 'u32', selector: 'u16', type: 'u8', present: 'u8', dpl: 'u8', db: 'u8',
  s: 'u8', l: 'u8', g: 'u8', avl: 'u8', unusable: 'u8', padding: 'u8',
}, 24);

export const KVM_DTABLE = defineStruct('kvm_dtable', { base: 'u64', limit: 'u16', padding: array('u16', 3) }, 16);

export const KVM_SREGS = defineStruct('kvm_sregs', {
  cs: KVM_SEGMENT, ds: KVM_SEGMENT, es: KVM_SEGMENT, fs: KVM_SEGMENT, gs: KVM_SEGMENT, ss: KVM_SEGMENT,
  tr: KVM_SEGMENT, ldt: KVM_SEGMENT, gdt: KVM_DTABLE, idt: KVM_DTABLE,
  cr0: 'u64', cr2: 'u64', cr3: 'u64', cr4: 'u64', cr8: 'u64', efer: 'u64', apic_base: 'u64',
  interrupt_bitmap: array('u64', 4),
}, 312);
checkOffset(KVM_SREGS, 'interrupt_bitmap', 280);

export const KVM_FPU = defineStruct('kvm_fpu', {
  fpr: array('u8', 128), fcw: 'u16', fsw: 'u16', ftwx: 'u8', pad1: 'u8', last_opcode: 'u16',
  last_ip: 'u64', last_dp: 'u64', xmm: array('u8', 256), mxcsr: 'u32', pad2: 'u32',
}, 416);

export const KVM_DEBUGREGS = defineStruct('kvm_debugregs', {
  db: array('u64', 4), dr6: 'u64', dr7: 'u64', flags: 'u64', reserved: array('u64', 9),
}, 128);

export const KVM_MP_STATE = defineStruct('kvm_mp_state', { mp_state: 'u32' }, 4);
export const KVM_LAPIC_STATE = defineStruct('kvm_lapic_state', { regs: array('u8', 1024) }, 1024);

const EVENTS_EXCEPTION = defineStruct('kvm_vcpu_events_exception', {
  injected: 'u8', nr: 'u8', has_error_code: 'u8', pending: 'u8', error_code: 'u32',
}, 8);
const EVENTS_INTERRUPT = defineStruct('kvm_vcpu_events_interrupt', { injected: 'u8', nr: 'u8', soft: 'u8', shadow: 'u8' }, 4);
const EVENTS_NMI = defineStruct('kvm_vcpu_events_nmi', { injected: 'u8', pending: 'u8', masked: 'u8', pad: 'u8' }, 4);
const EVENTS_SMI = defineStruct('kvm_vcpu_events_smi', { smm: 'u8', pending: 'u8', smm_inside_nmi: 'u8', latched_init: 'u8' }, 4);
export const KVM_VCPU_EVENTS = defineStruct('kvm_vcpu_events', {
  exception: EVENTS_EXCEPTION, interrupt: EVENTS_INTERRUPT, nmi: EVENTS_NMI, sipi_vector: 'u32', flags: 'u32',
  smi: EVENTS_SMI, triple_fault_pending: 'u8', reserved: array('u8', 26), exception_has_payload: 'u8',
  exception_payload: 'u64',
}, 64);
checkOffset(KVM_VCPU_EVENTS, 'smi', 24);
checkOffset(KVM_VCPU_EVENTS, 'exception_payload', 56);

export const KVM_TRANSLATION = defineStruct('kvm_translation', {
  linear_address: 'u64', physical_address: 'u64', valid: 'u8', writeable: 'u8', usermode: 'u8', pad: array('u8', 5),
}, 24);

export const KVM_USERSPACE_MEMORY_REGION = defineStruct('kvm_userspace_memory_region', {
  slot: 'u32', flags: 'u32', guest_phys_addr: 'u64', memory_size: 'u64', userspace_addr: 'u64',
}, 32);

export const KVM_DIRTY_LOG = defineStruct('kvm_dirty_log', { slot: 'u32', padding1: 'u32', dirty_bitmap: 'u64' }, 16);
/** `struct kvm_clear_dirty_log` (KVM_CLEAR_DIRTY_LOG, with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled). */
export const KVM_CLEAR_DIRTY_LOG = defineStruct('kvm_clear_dirty_log', { slot: 'u32', num_pages: 'u32', first_page: 'u64', dirty_bitmap: 'u64' }, 24);

export const KVM_MSR_ENTRY = defineStruct('kvm_msr_entry', { index: 'u32', reserved: 'u32', data: 'u64' }, 16);
/** Header of `struct kvm_msrs`; `nmsrs` entries of KVM_MSR_ENTRY follow at offset 8. */
export const KVM_MSRS = defineStruct('kvm_msrs', { nmsrs: 'u32', pad: 'u32' }, 8);
/** Header of `struct kvm_msr_list`; `nmsrs` u32 indices follow at offset 4. */
export const KVM_MSR_LIST = defineStruct('kvm_msr_list', { nmsrs: 'u32' }, 4);

export const KVM_CPUID_ENTRY2 = defineStruct('kvm_cpuid_entry2', {
  function: 'u32', index: 'u32', flags: 'u32', eax: 'u32', ebx: 'u32', ecx: 'u32', edx: 'u32', padding: array('u32', 3),
}, 40);
/** Header of `struct kvm_cpuid2`; `nent` entries of KVM_CPUID_ENTRY2 follow at offset 8. */
export const KVM_CPUID2 = defineStruct('kvm_cpuid2', { nent: 'u32', padding: 'u32' }, 8);

export const KVM_PIT_CONFIG = defineStruct('kvm_pit_config', { flags: 'u32', pad: array('u32', 15) }, 64);
export const KVM_IRQ_LEVEL = defineStruct('kvm_irq_level', { irq: 'u32', level: 'u32' }, 8);
/** `struct kvm_irqfd` (KVM_IRQFD): an eventfd that raises `gsi`; `resamplefd` with KVM_IRQFD_FLAG_RESAMPLE. */
export const KVM_IRQFD_STRUCT = defineStruct('kvm_irqfd', { fd: 'u32', gsi: 'u32', flags: 'u32', resamplefd: 'u32', pad: array('u8', 16) }, 32);
/** KVM_IRQFD flags: remove the binding; or make it level-triggered with a resample eventfd. */
export const KVM_IRQFD_FLAG = { DEASSIGN: 1, RESAMPLE: 2 } as const;
/**
 * `struct kvm_ioeventfd` (KVM_IOEVENTFD): a guest write of `len` bytes to `addr` (MMIO, or a port with
 * the PIO flag), equal to `datamatch` with the DATAMATCH flag, signals eventfd `fd` inside the kernel
 * instead of exiting to userspace.
 */
export const KVM_IOEVENTFD_STRUCT = defineStruct('kvm_ioeventfd', {
  datamatch: 'u64', addr: 'u64', len: 'u32', fd: 'i32', flags: 'u32', pad: array('u8', 36),
}, 64);
checkOffset(KVM_IOEVENTFD_STRUCT, 'fd', 20);
/** KVM_IOEVENTFD flags: match the written value; a port instead of MMIO; remove the binding. */
export const KVM_IOEVENTFD_FLAG = { DATAMATCH: 1, PIO: 2, DEASSIGN: 4 } as const;
/** `struct kvm_interrupt` (KVM_INTERRUPT, vCPU fd, no in-kernel irqchip): the vector to inject. */
export const KVM_INTERRUPT_STRUCT = defineStruct('kvm_interrupt', { irq: 'u32' }, 4);
/** Header of `struct kvm_signal_mask`; `len` bytes of sigset follow at offset 4. */
export const KVM_SIGNAL_MASK = defineStruct('kvm_signal_mask', { len: 'u32' }, 4);
export const KVM_GUEST_DEBUG = defineStruct('kvm_guest_debug', { control: 'u32', pad: 'u32', debugreg: array('u64', 8) }, 72);
export const KVM_COALESCED_MMIO_ZONE = defineStruct('kvm_coalesced_mmio_zone', { addr: 'u64', size: 'u32', pio: 'u32' }, 16);
export const KVM_COALESCED_MMIO = defineStruct('kvm_coalesced_mmio', {
  phys_addr: 'u64', len: 'u32', pio: 'u32', data: array('u8', 8),
}, 24);
/** Header of the coalesced-MMIO ring page; entries of KVM_COALESCED_MMIO follow at offset 8. */
export const KVM_COALESCED_MMIO_RING = defineStruct('kvm_coalesced_mmio_ring', { first: 'u32', last: 'u32' }, 8);
export const KVM_ENABLE_CAP = defineStruct('kvm_enable_cap', { cap: 'u32', flags: 'u32', args: array('u64', 4), pad: array('u8', 64) }, 104);
export const KVM_CLOCK_DATA = defineStruct('kvm_clock_data', {
  clock: 'u64', flags: 'u32', pad0: 'u32', realtime: 'u64', host_tsc: 'u64', pad: array('u32', 4),
}, 48);
export const KVM_IRQCHIP = defineStruct('kvm_irqchip', { chip_id: 'u32', pad: 'u32', chip: array('u8', 512) }, 520);
const KVM_PIT_CHANNEL_STATE = defineStruct('kvm_pit_channel_state', {
  count: 'u32', latched_count: 'u16', count_latched: 'u8', status_latched: 'u8', status: 'u8', read_state: 'u8',
  write_state: 'u8', write_latch: 'u8', rw_mode: 'u8', mode: 'u8', bcd: 'u8', gate: 'u8', count_load_time: 'i64',
}, 24);
export const KVM_PIT_STATE2 = defineStruct('kvm_pit_state2', {
  channels: array(KVM_PIT_CHANNEL_STATE, 3), flags: 'u32', reserved: array('u32', 9),
}, 112);
const KVM_XCR = defineStruct('kvm_xcr', { xcr: 'u32', reserved: 'u32', value: 'u64' }, 16);
export const KVM_XCRS = defineStruct('kvm_xcrs', {
  nr_xcrs: 'u32', flags: 'u32', xcrs: array(KVM_XCR, 16), padding: array('u64', 16),
}, 392);
/**
 * `struct kvm_xsave`: the XSAVE area as the guest's XSAVE would write it (legacy FPU/SSE region,
 * header, then the extended components). 4096 bytes; KVM_GET_XSAVE2 may fill a larger buffer
 * (as many bytes as KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) says) for components past 4 KiB.
 */
export const KVM_XSAVE = defineStruct('kvm_xsave', { region: array('u32', 1024) }, 4096);
/** Offsets inside the XSAVE area (Intel SDM vol. 1, 13.4.1): FCW, MXCSR. */
export const XSAVE_OFFSET = { FCW: 0, FSW: 2, MXCSR: 24, XMM0: 160, XSTATE_BV: 512 } as const;

/**
 * `struct kvm_run`, the page shared with the kernel after KVM_RUN. The exit union is
 * kept as bytes; its members are declared separately and read at `exit` (offset 32).
 */
export const KVM_RUN_STRUCT = defineStruct('kvm_run', {
  request_interrupt_window: 'u8', immediate_exit: 'u8', padding1: array('u8', 6),
  exit_reason: 'u32', ready_for_interrupt_injection: 'u8', if_flag: 'u8', flags: 'u16',
  cr8: 'u64', apic_base: 'u64', exit: array('u8', 256), kvm_valid_regs: 'u64', kvm_dirty_regs: 'u64',
  s: array('u8', 2048),
}, 2352);
checkOffset(KVM_RUN_STRUCT, 'exit_reason', 8);
checkOffset(KVM_RUN_STRUCT, 'exit', 32);
checkOffset(KVM_RUN_STRUCT, 'kvm_valid_regs', 288);
checkOffset(KVM_RUN_STRUCT, 's', 304);

/**
 * `struct kvm_sync_regs` (x86), the `s` area of kvm_run with KVM_CAP_SYNC_REGS: registers KVM
 * copies out after every KVM_RUN for the parts set in `kvm_valid_regs`, and takes in before the
 * next one for the parts set in `kvm_dirty_regs` (the same __set_regs/__set_sregs/set_vcpu_events
 * the KVM_SET_* ioctls call, without an ioctl of their own).
 */
export const KVM_SYNC_REGS = defineStruct('kvm_sync_regs', {
  regs: array('u8', 144), sregs: array('u8', 312), events: array('u8', 64),
}, 520);
checkOffset(KVM_SYNC_REGS, 'sregs', 144);
checkOffset(KVM_SYNC_REGS, 'events', 456);
/** kvm_run.kvm_valid_regs / kvm_dirty_regs bits: which part of `KVM_SYNC_REGS`. */
export const KVM_SYNC_X86 = { REGS: 1, SREGS: 2, EVENTS: 4 } as const;

export const KVM_RUN_IO = defineStruct('kvm_run_io', { direction: 'u8', size: 'u8', port: 'u16', count: 'u32', data_offset: 'u64' }, 16);
export const KVM_RUN_MMIO = defineStruct('kvm_run_mmio', { phys_addr: 'u64', data: array('u8', 8), len: 'u32', is_write: 'u8' }, 24);
export const KVM_RUN_FAIL_ENTRY = defineStruct('kvm_run_fail_entry', { hardware_entry_failure_reason: 'u64', cpu: 'u32' }, 16);
export const KVM_RUN_INTERNAL = defineStruct('kvm_run_internal', { suberror: 'u32', ndata: 'u32', data: array('u64', 16) }, 136);
export const KVM_RUN_DEBUG = defineStruct('kvm_run_debug', { exception: 'u32', pad: 'u32', pc: 'u64', dr6: 'u64', dr7: 'u64' }, 32);
export const KVM_RUN_SYSTEM_EVENT = defineStruct('kvm_run_system_event', { type: 'u32', ndata: 'u32', data: array('u64', 16) }, 136);
export const KVM_RUN_EX = defineStruct('kvm_run_ex', { exception: 'u32', error_code: 'u32' }, 8);
export const KVM_RUN_HYPERCALL = defineStruct('kvm_run_hypercall', { nr: 'u64', args: array('u64', 6), ret: 'u64', flags: 'u64' }, 72);
checkOffset(KVM_RUN_MMIO, 'len', 16);
checkOffset(KVM_RUN_MMIO, 'is_write', 20);

/** `struct kvm_regs`: the general-purpose registers, rip and rflags (u64 fields as bigint). */
export type KvmRegs = Infer<typeof KVM_REGS>;
/** `struct kvm_segment`: one segment register. */
export type KvmSegment = Infer<typeof KVM_SEGMENT>;
/** `struct kvm_dtable`: the GDT or IDT register. */
export type KvmDtable = Infer<typeof KVM_DTABLE>;
/** `struct kvm_sregs`: segments, descriptor tables, control registers, EFER, APIC base. */
export type KvmSregs = Infer<typeof KVM_SREGS>;
/** `struct kvm_fpu`: x87 and SSE state. */
export type KvmFpu = Infer<typeof KVM_FPU>;
export type KvmDebugregs = Infer<typeof KVM_DEBUGREGS>;
export type KvmLapicState = Infer<typeof KVM_LAPIC_STATE>;
export type KvmVcpuEvents = Infer<typeof KVM_VCPU_EVENTS>;
export type KvmTranslation = Infer<typeof KVM_TRANSLATION>;
export type KvmCpuidEntry = Infer<typeof KVM_CPUID_ENTRY2>;
export type KvmMsrEntry = Infer<typeof KVM_MSR_ENTRY>;
export type KvmClockData = Infer<typeof KVM_CLOCK_DATA>;
export type KvmPitState2 = Infer<typeof KVM_PIT_STATE2>;
export type KvmXcrs = Infer<typeof KVM_XCRS>;
export type KvmXsave = Infer<typeof KVM_XSAVE>;
export type KvmGuestDebug = Infer<typeof KVM_GUEST_DEBUG>;
