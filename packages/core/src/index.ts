export { Kvm, KVM_API_VERSION, detectKvmModule, type KvmModule } from './kvm.js';
export { Vm, type VmOptions, type MemorySlotOptions } from './vm.js';
export { Vcpu, MP_STATE, GUEST_DEBUG, type MpState, type Translation } from './vcpu.js';
export { GuestMemory, MemorySlot, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from './memory.js';
export {
  KVM_EXIT, KVM_INTERNAL_ERROR, KVM_SYSTEM_EVENT, decodeExit, describeExit, type IoExit, type MmioExit, type VcpuExit,
  type VcpuExitKind,
} from './exits.js';
export { KvmError, KvmUnsupportedError, ClosedError, GuestMemoryError } from './errors.js';
export { setupCpuMode, setEntryPoint, CPU_MODES, SYSTEM_AREA_SIZE, type CpuMode, type CpuModeOptions } from './cpu/modes.js';
export { CR0, CR4, EFER, RFLAGS, PTE, SELECTOR } from './cpu/descriptors.js';
export { guestCpuid, cpuidSignature, cpuidEntry, KVM_CPUID_SIGNATURE, KVM_SIGNATURE } from './cpu/cpuid.js';
export { KVM_CAPS, type KvmCapName } from './caps/capability-table.js';
export { KVM_IOCTLS, type IoctlName } from './ffi/ioctls.js';
export type {
  KvmRegs, KvmSregs, KvmSegment, KvmDtable, KvmFpu, KvmDebugregs, KvmLapicState, KvmVcpuEvents, KvmCpuidEntry,
  KvmMsrEntry, KvmClockData, KvmXcrs, KvmGuestDebug,
} from './ffi/kvm-abi.js';
export { parseSize, formatBytes, hex, PAGE_SIZE, type Size } from './util/size.js';
/** Struct layouts of KVM's ABI and their codecs (for tools and tests; most code needs none of it). */
export * as abi from './ffi/abi-public.js';
