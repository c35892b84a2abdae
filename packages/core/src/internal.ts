/**
 * @kvmpool/core/internal — for kvmpool's own packages (the vCPU thread), its tests and benchmarks.
 * Not a stable API: the thread protocol, signals, codecs and building blocks live here.
 */
export * from './index.js';
export { Kvm, KVM_API_VERSION, detectKvmModule, type KvmModule } from './kvm.js';
export { Vm, IOAPIC_PINS, type VmOptions, type MemorySlotOptions, type IrqfdOptions, type IoeventfdOptions, type IoeventfdBinding } from './vm.js';
export { NotifyWatcher, NOTIFY_STOP_MS, type NotifyWatcherHooks, type NotifyWatcherOptions, type NotifyWatcherStats } from './machine/virtio-notify.js';
export { guestRam, isVirtioSpec } from './machine/virtio.js';
export { Vcpu, MP_STATE, GUEST_DEBUG, type MpState, type Translation } from './vcpu.js';
export { GuestMemory, MemorySlot, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from './memory.js';
export {
  KVM_EXIT, KVM_INTERNAL_ERROR, KVM_SYSTEM_EVENT, decodeExit, describeExit, type IoExit, type MmioExit, type VcpuExit,
  type VcpuExitKind,
} from './exits.js';
export { encodeError, decodeError, invalidArgument, outOfRange, describeValue, type EncodedError } from './errors.js';
export { setupCpuMode, setEntryPoint, writeModeTables, setVcpuMode, CPU_MODES, SYSTEM_AREA_SIZE, type CpuMode, type CpuModeOptions } from './cpu/modes.js';
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
export {
  buildCapsReport, formatCapsReport, featureMsrName, jsonify, decodeVmxMsrs, decodeVmxBasic, decodeVmxControls, decodeVmxMisc,
  controlSetting, vmxMsrName, VMX_MSR, VMX_MSR_FIRST, VMX_MSR_LAST, VMX_CONTROL_FIELDS, VMX_MEMORY_TYPES, EPT_VPID_CAP_BITS,
  VMFUNC_BITS, CR0_BIT_NAMES, CR4_BIT_NAMES, type CapsReport, type CapsVmx, type Jsonified, type VmxMsrName,
  type VmxControlField, type VmxControlSetting, type VmxControl, type VmxControls, type VmxBasic, type VmxMisc,
  type VmxFixedBit, type VmxFixedBits, type VmxCapabilityBit, type VmxCapabilityBits, type VmxVmcsEnum, type VmxMsrs,
} from './caps/report.js';
export {
  ALLOWED, CONTROL, OWNED, REQUEST, KICK_SIGNAL, VCPU_STATE, VCPU_STATE_NAME, acknowledgeKicks, isFinal, kickAcknowledged, recordKick,
  refusal, waitCheck, type OwnedResources, type VcpuState, type VcpuThreadInit, type VcpuConfig, type VcpuReply, type VcpuRequest,
  type VcpuRequests, type VcpuRequestType, type RunEnd, type FastPathEntry,
} from './machine/vcpu-lifecycle.js';
export { OwnedBlock, closeOwned, reclaimOwned, releaseVia } from './thread-resources.js';
export { ThreadTimer, blockSignal, consumePending, currentTid, runMaskWithout, signalThread, signalsSent } from './signals.js';
export { COM_PORTS, DEFAULT_DEBUG_EXIT_PORT, DEFAULT_HALT_PORT, type StandardDeviceOptions } from './machine/standard-devices.js';
export { KICK_WAITS, VcpuHandle } from './machine/vcpu-handle.js';
export { configureVcpuThreads, drainVcpuThreads, vcpuThreads, type VcpuThreadPoolOptions } from './machine/thread-pool.js';
export { loadElf, parseElf, symbolize, type ElfImage, type ElfSegment, type ElfSymbol } from './loader/elf.js';
export {
  SandboxVm, CALL_CONTROL, type SandboxVmOptions, type CallOptions, type CallResult,
  type SyncHostFunction, type RemoteHostCall,
} from './sandbox/sandbox-vm.js';
export { GUEST_CFLAGS } from './sandbox/sdk.js';
export { SANDBOX_LIMITS, guestRange } from './sandbox/host-call.js';
export { OBSERVABLE_MSRS, settlePendingExit } from './sandbox/reset.js';
export { LatencyHistogram, type LatencySummary } from './sandbox/histogram.js';
export { encodeReply, decodeReply, boundedErrorJson, REPLY_ERROR_BYTES, type DecodedReply } from './sandbox/reply-codec.js';
export { LAST_CALL } from './sandbox/pool-seat.js';
export { DirtyTracker, HOT_PAGES_MAX, type DirtyLogVm } from './sandbox/dirty-tracker.js';
export { captureVcpuState, completePendingExit, restoreVcpuState, type VcpuSnapshot } from './vcpu-state.js';
export { snapshotMachine, restoreMachine, type RestoreOptions, type SnapshotInfo } from './machine/snapshot.js';
export { inspectMachine, readVirtual, writeVirtual, scanMemory, type Inspection, type VcpuInspection } from './machine/inspect.js';
export { walkPageTables, type WalkResult } from './cpu/page-walk.js';
export { guestDebugRegisters } from './debug/guest-debug.js';
export type { GuestDebugConfig, VcpuThreadEvent } from './machine/vcpu-lifecycle.js';
export { CoalescedRing, KVM_COALESCED_MMIO_PAGE_OFFSET, type CoalescedWrite } from './coalesced-ring.js';
export { LinuxVm, linuxLayout, linuxVmProfile, type LinuxVmProfile, USER_MIN, PIE_BASE, type LinuxVmOptions, type LinuxCallInput, type LinuxCallResult, type LinuxStart } from './linux/linux-vm.js';
export { SyscallLayer, PID, KVMPOOL_SYSCALL, type LinuxProgramConfig, type RunEnd as LinuxRunEnd, type SyscallStats, type LayerHost } from './linux/syscall-layer.js';
export { ProcessState, OutputStream, MAX_FDS, type ProcessLayout, type OpenFile } from './linux/process-state.js';
export { buildProcessStack, AT, MAX_ARG_BYTES, MAX_ARG_STRINGS, type ProcessStack, type ProcessStackInput } from './linux/process-stack.js';
export { STUB_CODE, STUB_ADDRESS, SCRATCH_ADDRESS, SCRATCH, SYSCALL_PORT, STUB_RESUME_OFFSET } from './linux/syscall-stub.js';
export { SYSCALLS, implementedSyscalls } from './linux/syscalls/table.js';
export { SYSCALL_NAMES, NR } from './linux/syscalls/numbers.js';
export { E as ERRNO, SIGNALS, signalName } from './linux/errno.js';
export {
  encodeRunRequest, decodeRunRequest, encodeRunResult, decodeRunResult, REQUEST_OVERHEAD, RESULT_OVERHEAD, type DecodedRunResult,
} from './linux/run-codec.js';
export { freeRange, takeRange } from './linux/syscalls/memory.js';
export { linuxConfig, PROGRAM_IDS } from './linux/linux-config.js';
export { normalizePath, resolvePath } from './linux/syscalls/fs.js';
export {
  SOFT_IRQ, SOFT_IRQ_WORD, createSoftIrqState, softIrqAccept, softIrqLine, softIrqNext, softIrqPort, softIrqRequested, softIrqRestore,
  softIrqSet, softIrqSnapshot, type SoftIrqSnapshot,
} from './machine/soft-irq.js';
export { EventFd, type EventFdOptions } from './eventfd.js';
