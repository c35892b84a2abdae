/**
 * @kvmpool/core — the public API. Low level: `Kvm` → `Vm` → `Vcpu` (each owns its fd) and guest
 * memory. A whole machine: `createMachine()` → `Machine` (vCPU threads, exit bus, devices).
 * Sandboxes: `SandboxPool`. Snapshots, inspection and debugging hang off `Machine`.
 * Everything else (thread protocol, signals, ring internals) is behind `@kvmpool/core/internal`.
 *
 * @packageDocumentation
 * @module @kvmpool/core
 */
export { Kvm, KVM_API_VERSION, detectKvmModule, type KvmModule } from './kvm.js';
export { Vm, IOAPIC_PINS, type VmOptions, type MemorySlotOptions, type IrqfdOptions, type IoeventfdOptions, type IoeventfdBinding } from './vm.js';
export { EventFd, type EventFdOptions } from './eventfd.js';
export { Vcpu, MP_STATE, type MpState, type Translation } from './vcpu.js';
export { GuestMemory, MemorySlot, type MemorySlotInfo } from './memory.js';
export { KVM_EXIT, describeExit, type IoExit, type MmioExit, type VcpuExit, type VcpuExitKind } from './exits.js';
export {
  ERROR_CODES, KvmpoolError, KvmError, KvmUnsupportedError, ClosedError, GuestMemoryError, GuestCrashError, VcpuThreadError,
  VcpuStateError, SandboxTimeoutError, GuestError, GuestLimitError, HostFunctionError, SandboxWorkerError, ElfError,
  SnapshotError, DebugUnsupportedError, AbortError, type KvmpoolErrorCode,
} from './errors.js';
export { setupCpuMode, setEntryPoint, CPU_MODES, type CpuMode, type CpuModeOptions } from './cpu/modes.js';
export { guestCpuid, cpuidSignature } from './cpu/cpuid.js';
export type { KvmRegs, KvmSregs, KvmSegment, KvmDtable, KvmFpu } from './ffi/kvm-abi.js';
export { parseSize, formatBytes, type Size } from './util/size.js';
export { buildCapsReport, formatCapsReport, type CapsReport } from './caps/report.js';
export {
  Machine, createMachine, type MachineOptions, type StartOptions, type StartInterrupts, type MachineExit, type DeviceSpec,
  type DebugStop, type IrqfdLine,
} from './machine/machine.js';
export { virtioBlk, virtioConsole, virtioRng, type VirtioNotifyOption } from './machine/virtio-devices.js';
export { VIRTIO_IRQ_BASE, VIRTIO_MMIO_BASE, VIRTIO_MMIO_STRIDE, type VirtioDeviceSpec, type VirtioInterrupt, type VirtioPlacement } from './machine/virtio.js';
export { SOFT_IRQ } from './machine/soft-irq.js';
export type { VcpuState, GuestDebugConfig } from './machine/vcpu-lifecycle.js';
export { COM_PORTS, DEFAULT_DEBUG_EXIT_PORT, DEFAULT_HALT_PORT, type StandardDeviceOptions } from './machine/standard-devices.js';
export { configureVcpuThreads, drainVcpuThreads, type VcpuThreadPoolOptions } from './machine/thread-pool.js';
export type { Inspection, VcpuInspection } from './machine/inspect.js';
export type { RestoreOptions, SnapshotInfo } from './machine/snapshot.js';
export { SNAPSHOT_VERSION } from './snapshot/format.js';
export { SDK_DIR, compileGuest, type CompileGuestOptions } from './sandbox/sdk.js';
export {
  SandboxPool, type SandboxPoolOptions, type SandboxWarmUp, type SandboxPoolStats, type AsyncHostFunction, type CallOptionsPublic as SandboxCallOptions,
} from './sandbox/pool.js';
export type { SyncHostFunction } from './sandbox/sandbox-vm.js';
export { Sandbox, type SandboxOptions, type SandboxCallResult } from './sandbox/sandbox.js';
export type { LatencySummary } from './sandbox/histogram.js';
export { debugSupport, type DebugSupport, type DebugSupportLevel } from './debug/support.js';
export { GuestDebugger, type StopEvent } from './debug/debugger.js';
export { GdbStub, type GdbStubOptions } from './debug/gdb-stub.js';
export type { Bytes } from './util/bytes.js';
export type { UartLine, UartStats } from '@kvmpool/devices';
export {
  LinuxPool, LINUX_MAX_MEMORY, type LinuxPoolOptions, type LinuxRunOptions, type LinuxRunResult,
} from './linux/linux-pool.js';
export type { LinuxStart } from './linux/linux-vm.js';
