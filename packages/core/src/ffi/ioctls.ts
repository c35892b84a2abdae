/**
 * Every KVM ioctl number kvmpool uses, in one table, computed the way <asm-generic/ioctl.h>
 * does (`_IO`, `_IOR`, `_IOW`, `_IOWR` with type 0xAE) from the struct sizes declared in
 * kvm-abi.ts. `test/abi.test.ts` checks each value against the C headers.
 */
import {
  KVM_CLEAR_DIRTY_LOG, KVM_CLOCK_DATA, KVM_COALESCED_MMIO_ZONE, KVM_CPUID2, KVM_DEBUGREGS, KVM_DIRTY_LOG, KVM_ENABLE_CAP, KVM_FPU,
  KVM_GUEST_DEBUG, KVM_INTERRUPT_STRUCT, KVM_IRQ_LEVEL, KVM_IRQFD_STRUCT, KVM_IOEVENTFD_STRUCT, KVM_IRQCHIP, KVM_LAPIC_STATE, KVM_MP_STATE, KVM_MSR_LIST, KVM_MSRS, KVM_PIT_CONFIG,
  KVM_PIT_STATE2, KVM_REGS, KVM_SIGNAL_MASK, KVM_SREGS, KVM_TRANSLATION, KVM_USERSPACE_MEMORY_REGION, KVM_VCPU_EVENTS,
  KVM_XCRS, KVM_XSAVE,
} from './kvm-abi.js';

const KVMIO = 0xae;
const NONE = 0;
const WRITE = 1;
const READ = 2;

function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}
const io = (nr: number): number => ioc(NONE, nr, 0);
const ior = (nr: number, size: number): number => ioc(READ, nr, size);
const iow = (nr: number, size: number): number => ioc(WRITE, nr, size);
const iowr = (nr: number, size: number): number => ioc(READ | WRITE, nr, size);
const U64 = 8;

export const KVM_IOCTLS = {
  // system fd
  KVM_GET_API_VERSION: io(0x00),
  KVM_CREATE_VM: io(0x01),
  KVM_GET_MSR_INDEX_LIST: iowr(0x02, KVM_MSR_LIST.size),
  KVM_CHECK_EXTENSION: io(0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(0x04),
  KVM_GET_SUPPORTED_CPUID: iowr(0x05, KVM_CPUID2.size),
  KVM_GET_MSR_FEATURE_INDEX_LIST: iowr(0x0a, KVM_MSR_LIST.size),
  // vm fd
  KVM_CREATE_VCPU: io(0x41),
  KVM_GET_DIRTY_LOG: iow(0x42, KVM_DIRTY_LOG.size),
  KVM_CLEAR_DIRTY_LOG: iowr(0xc0, KVM_CLEAR_DIRTY_LOG.size),
  KVM_SET_USER_MEMORY_REGION: iow(0x46, KVM_USERSPACE_MEMORY_REGION.size),
  KVM_SET_TSS_ADDR: io(0x47),
  KVM_SET_IDENTITY_MAP_ADDR: iow(0x48, U64),
  KVM_CREATE_IRQCHIP: io(0x60),
  KVM_IRQ_LINE: iow(0x61, KVM_IRQ_LEVEL.size),
  KVM_GET_IRQCHIP: iowr(0x62, KVM_IRQCHIP.size),
  KVM_SET_IRQCHIP: ior(0x63, KVM_IRQCHIP.size),
  KVM_REGISTER_COALESCED_MMIO: iow(0x67, KVM_COALESCED_MMIO_ZONE.size),
  KVM_UNREGISTER_COALESCED_MMIO: iow(0x68, KVM_COALESCED_MMIO_ZONE.size),
  KVM_IRQFD: iow(0x76, KVM_IRQFD_STRUCT.size),
  KVM_IOEVENTFD: iow(0x79, KVM_IOEVENTFD_STRUCT.size),
  KVM_CREATE_PIT2: iow(0x77, KVM_PIT_CONFIG.size),
  KVM_SET_BOOT_CPU_ID: io(0x78),
  KVM_SET_CLOCK: iow(0x7b, KVM_CLOCK_DATA.size),
  KVM_GET_CLOCK: ior(0x7c, KVM_CLOCK_DATA.size),
  KVM_GET_PIT2: ior(0x9f, KVM_PIT_STATE2.size),
  KVM_SET_PIT2: iow(0xa0, KVM_PIT_STATE2.size),
  // vcpu fd
  KVM_RUN: io(0x80),
  KVM_GET_REGS: ior(0x81, KVM_REGS.size),
  KVM_SET_REGS: iow(0x82, KVM_REGS.size),
  KVM_GET_SREGS: ior(0x83, KVM_SREGS.size),
  KVM_SET_SREGS: iow(0x84, KVM_SREGS.size),
  KVM_TRANSLATE: iowr(0x85, KVM_TRANSLATION.size),
  KVM_INTERRUPT: iow(0x86, KVM_INTERRUPT_STRUCT.size),
  KVM_GET_MSRS: iowr(0x88, KVM_MSRS.size),
  KVM_SET_MSRS: iow(0x89, KVM_MSRS.size),
  KVM_SET_SIGNAL_MASK: iow(0x8b, KVM_SIGNAL_MASK.size),
  KVM_GET_FPU: ior(0x8c, KVM_FPU.size),
  KVM_SET_FPU: iow(0x8d, KVM_FPU.size),
  KVM_GET_LAPIC: ior(0x8e, KVM_LAPIC_STATE.size),
  KVM_SET_LAPIC: iow(0x8f, KVM_LAPIC_STATE.size),
  KVM_SET_CPUID2: iow(0x90, KVM_CPUID2.size),
  KVM_GET_CPUID2: iowr(0x91, KVM_CPUID2.size),
  KVM_GET_MP_STATE: ior(0x98, KVM_MP_STATE.size),
  KVM_SET_MP_STATE: iow(0x99, KVM_MP_STATE.size),
  KVM_SET_GUEST_DEBUG: iow(0x9b, KVM_GUEST_DEBUG.size),
  KVM_GET_VCPU_EVENTS: ior(0x9f, KVM_VCPU_EVENTS.size),
  KVM_SET_VCPU_EVENTS: iow(0xa0, KVM_VCPU_EVENTS.size),
  KVM_GET_DEBUGREGS: ior(0xa1, KVM_DEBUGREGS.size),
  KVM_SET_DEBUGREGS: iow(0xa2, KVM_DEBUGREGS.size),
  KVM_ENABLE_CAP: iow(0xa3, KVM_ENABLE_CAP.size),
  KVM_GET_XSAVE: ior(0xa4, KVM_XSAVE.size),
  KVM_SET_XSAVE: iow(0xa5, KVM_XSAVE.size),
  KVM_GET_XCRS: ior(0xa6, KVM_XCRS.size),
  KVM_SET_XCRS: iow(0xa7, KVM_XCRS.size),
  KVM_GET_XSAVE2: ior(0xcf, KVM_XSAVE.size),
} as const;

export type IoctlName = keyof typeof KVM_IOCTLS;
