/**
 * @kvmpool/devices — the device models (16550A UART, debug-exit port, CMOS RTC, i8042), the PIO and
 * MMIO buses, the exit ring and the dispatcher that `createMachine()` wires together. Apps reach them
 * through `@kvmpool/core` (`DeviceSpec` takes any `Device`); the ring and dispatcher exports are the
 * building blocks the vCPU thread and the machine share. The virtio exports are virtio 1.2
 * modern virtio-mmio devices over split virtqueues: `VirtioMmioTransport` in front of a
 * `VirtioBlk`, `VirtioConsole` or `VirtioRng`, reading rings from a `GuestRam`.
 *
 * @packageDocumentation
 * @module @kvmpool/devices
 */
export { Bus, type BusRange } from './bus.js';
export { bytesToValue, valueToBytes, type Device, type FastRegister, type IrqLine } from './device.js';
export {
  DOORBELL, RECORD_KIND, RING, RING_BYTES, RingConsumer, RingProducer, WAIT_SLICE_MS, createDoorbell, createRingBuffer, lockCoalesced,
  recordsFor, tryWithCoalescedLock, unlockCoalesced, type RecordKind, type RingRecord, type StepOutcome, type WaitCheck,
} from './exit-ring.js';
export { AdaptiveSpin, MAX_SPIN_US, freeCores } from './spin-policy.js';
export { DeviceAccessError, Dispatcher, POSTED_WRITE_BOUND_MS, type CoalescedSource, type DispatcherOptions, type DispatcherSideWork, type DispatcherStats } from './dispatcher.js';
export {
  UART_FAST_LSR, UART_FCR, UART_FIFO_SIZE, UART_IER, UART_IIR, UART_LCR, UART_LSR, UART_MCR, UART_MSR, UART_REG, UART_TX_HIGH_WATER, UART_TX_LIMIT, Uart16550,
  type Uart16550Options, type Uart16550State, type UartLine, type UartStats,
} from './uart-16550.js';
export { DebugExit, type DebugExitOptions } from './debug-exit.js';
export {
  I8042, I8042_CMD, I8042_CTR, I8042_OFFSET, I8042_OUTPUT, I8042_PORT, I8042_STATUS, type I8042Options, type I8042State,
} from './i8042.js';
export {
  CMOS_NMI_DISABLE, CMOS_REG, CmosRtc, RTC_STATUS_A, RTC_STATUS_B, RTC_STATUS_D, type CmosRtcOptions, type CmosRtcState,
} from './cmos-rtc.js';
export {
  QUEUE_ERROR_CODE, QueueError, VIRTIO_BLK_F, VIRTIO_CONSOLE_F, VIRTIO_DEVICE_ID, VIRTIO_F, VIRTIO_INT, VIRTIO_MMIO, VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_VENDOR_ID, VIRTIO_MMIO_VERSION, VIRTIO_STATUS, VIRTQ_AVAIL_F, VIRTQ_DESC_F, VIRTQ_MAX_SIZE, VIRTQ_USED_F, featureBit,
  type GuestRam, type VirtioActivation, type VirtioDevice, type VirtioQueue, type VirtqueueChain,
} from './virtio/types.js';
export { Virtqueue, type VirtqueueOptions, type VirtqueueState } from './virtio/virtqueue.js';
export { VirtioMmioTransport, type VirtioQueueRegisters, type VirtioTransportOptions, type VirtioTransportState } from './virtio/mmio-transport.js';
export {
  MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, VIRTIO_BLK_S, VIRTIO_BLK_SECTOR, VIRTIO_BLK_T, VirtioBlk, type VirtioBlkFile, type VirtioBlkOptions,
  type VirtioBlkStats,
} from './virtio/blk.js';
export { VirtioConsole, type VirtioConsoleOptions, type VirtioConsoleState, type VirtioConsoleStats } from './virtio/console.js';
export { VIRTIO_RNG_MAX_REQUEST, VirtioRng, type VirtioRngOptions } from './virtio/rng.js';
