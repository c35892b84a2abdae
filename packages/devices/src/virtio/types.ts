/**
 * virtio 1.2 (modern only, virtio-mmio, split virtqueues): the interfaces a device model and the
 * transport share, and the constants of the specification they use.
 */

/** Guest RAM as a virtio device sees it. */
export interface GuestRam {
  /**
   * A live view of guest-physical bytes [gpa, gpa+length), or undefined if any byte of it lies
   * outside guest RAM (or length < 0, or gpa+length overflows). A zero-length view at an address
   * inside RAM (or at its end) is allowed.
   */
  view(gpa: bigint, length: number): Uint8Array | undefined;
}

/** One descriptor chain a driver made available, as a device takes it (`VirtioQueue.pop()`). */
export interface VirtqueueChain {
  /** Index of the chain's head descriptor: what `push()` hands back to the driver. */
  readonly head: number;
  /** Device-readable buffers, in chain order: live views into guest RAM. */
  readonly readable: readonly Uint8Array[];
  /** Device-writable buffers, in chain order (they follow every readable one). */
  readonly writable: readonly Uint8Array[];
  /** Sum of the readable buffers' lengths. */
  readonly readableLength: number;
  /** Sum of the writable buffers' lengths. */
  readonly writableLength: number;
  /**
   * Tolerant walks only (`pop(true)`): descriptors whose buffer lay outside guest RAM (or wrapped
   * the address space). They are left out of `readable`/`writable` and their lengths.
   */
  readonly badBuffers?: number;
  /** Tolerant walks only: the chain's last non-empty writable descriptor was one of the bad buffers. */
  readonly lastWritableBad?: boolean;
}

/** A device's access to one of its virtqueues (implemented by `Virtqueue`). */
export interface VirtioQueue {
  /** The queue's index within its device. */
  readonly index: number;
  /** Entries in the ring (a power of two). */
  readonly size: number;
  /**
   * The next available chain, or undefined when the driver has made none available.
   * Throws `QueueError` when the ring or a chain is malformed (the transport then marks the
   * device as needing a reset). With `tolerant`, buffers outside guest RAM do not throw but are
   * left out and counted in the chain's `badBuffers`, so the device can fail just that request.
   */
  pop(tolerant?: boolean): VirtqueueChain | undefined;
  /**
   * Walks the chain at `head` again, with the same checks as `pop()` (`QueueError`), without
   * touching the available ring: for a device that resumes, after a snapshot restore, a chain it
   * had popped but not yet pushed.
   */
  chain(head: number, tolerant?: boolean): VirtqueueChain;
  /**
   * Hands chain `head` back to the driver with `writtenLength` bytes written into its writable
   * buffers (clamped to their total).
   */
  push(head: number, writtenLength: number): void;
  /**
   * Whether the driver wants an interrupt for the buffers pushed since the last call (honours
   * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with VIRTIO_F_EVENT_IDX).
   */
  needsInterrupt(): boolean;
}

/** What a device receives once the driver set DRIVER_OK. */
export interface VirtioActivation {
  /** The features both sides agreed on (transport bits included, e.g. VERSION_1). */
  readonly features: bigint;
  /** The device's queues by index; an entry is undefined when the driver did not enable that queue. */
  readonly queues: readonly (VirtioQueue | undefined)[];
  /**
   * Asks the transport to call `process(index)` now, from the device's own event (host input,
   * stream drained): the transport runs it under the same error handling as a guest notify and
   * raises the used-buffer interrupt afterwards if the driver wants one.
   */
  kick(index: number): void;
  /** The device's configuration space changed: bumps ConfigGeneration and raises the config interrupt. */
  configChanged(): void;
}

/** A virtio device model (one per file: blk.ts, console.ts, rng.ts), behind a transport. */
export interface VirtioDevice {
  /** The virtio device ID (`VIRTIO_DEVICE_ID`). */
  readonly deviceId: number;
  /** A short name for messages. */
  readonly name: string;
  /** Device-specific feature bits offered (the transport adds VERSION_1, EVENT_IDX, INDIRECT_DESC). */
  readonly features: bigint;
  /** Number of virtqueues. */
  readonly queueCount: number;
  /** Largest queue size the device accepts (a power of two, at most 32768). */
  readonly queueMaxSize: number;
  /** Fills `data` from the device configuration space at `offset` (bytes past its end read 0). */
  readConfig(offset: number, data: Uint8Array): void;
  /** Takes a driver write into the configuration space (ignored where read-only). */
  writeConfig(offset: number, data: Uint8Array): void;
  /** Called once DRIVER_OK is set, with the negotiated features and the queues. */
  activate(ctx: VirtioActivation): void;
  /** A buffer chain became available (or a notify arrived) on queue `index`. */
  process(index: number): void;
  /** Back to the state before activation (the driver reset the device). */
  reset(): void;
  /** Device-specific state for a snapshot (JSON-serialisable). */
  exportState?(): unknown;
  /** Restores what `exportState()` returned (before the transport re-activates the device). */
  importState?(state: unknown): void;
}

/**
 * Device status bits (the Status register).
 * @enum
 */
export const VIRTIO_STATUS = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/**
 * Transport feature bit numbers (reserved range 28..41), as bit positions.
 * @enum
 */
export const VIRTIO_F = {
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  RING_RESET: 40,
} as const;

/**
 * virtio-blk feature bit numbers.
 * @enum
 */
export const VIRTIO_BLK_F = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
  DISCARD: 13,
  WRITE_ZEROES: 14,
} as const;

/**
 * virtio-console feature bit numbers.
 * @enum
 */
export const VIRTIO_CONSOLE_F = { SIZE: 0, MULTIPORT: 1, EMERG_WRITE: 2 } as const;

/**
 * virtio device IDs.
 * @enum
 */
export const VIRTIO_DEVICE_ID = { NET: 1, BLOCK: 2, CONSOLE: 3, ENTROPY: 4 } as const;

/**
 * virtio-mmio register offsets (virtio 1.2 §4.2.2); the device configuration space starts at `CONFIG`.
 * @enum
 */
export const VIRTIO_MMIO = {
  MAGIC_VALUE: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  SHM_SEL: 0x0ac,
  SHM_LEN_LOW: 0x0b0,
  SHM_LEN_HIGH: 0x0b4,
  SHM_BASE_LOW: 0x0b8,
  SHM_BASE_HIGH: 0x0bc,
  QUEUE_RESET: 0x0c0,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;

/** The MagicValue register's value: "virt" little-endian. */
export const VIRTIO_MMIO_MAGIC = 0x74726976;
/** The Version register's value for the modern (virtio 1.x) MMIO interface. */
export const VIRTIO_MMIO_VERSION = 2;
/** The VendorID the transport reports: "KVMP" little-endian (virtio defines no registry; drivers ignore it). */
export const VIRTIO_MMIO_VENDOR_ID = 0x504d564b;

/**
 * InterruptStatus bits.
 * @enum
 */
export const VIRTIO_INT = { USED_BUFFER: 1, CONFIG_CHANGE: 2 } as const;

/**
 * Split-ring descriptor flags.
 * @enum
 */
export const VIRTQ_DESC_F = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;
/**
 * Split-ring available-ring flags.
 * @enum
 */
export const VIRTQ_AVAIL_F = { NO_INTERRUPT: 1 } as const;
/**
 * Split-ring used-ring flags.
 * @enum
 */
export const VIRTQ_USED_F = { NO_NOTIFY: 1 } as const;

/** Largest queue size of a split virtqueue. */
export const VIRTQ_MAX_SIZE = 32768;

/** `1n << BigInt(bit)`: a feature bit number as a mask. */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

/** The stable `code` of a `QueueError`. */
export const QUEUE_ERROR_CODE = 'ERR_KVMPOOL_VIRTQUEUE';

/**
 * A virtqueue the driver set up or filled is malformed (a descriptor outside RAM, a loop, a chain
 * longer than allowed, an index out of range…). The transport catches it, sets
 * DEVICE_NEEDS_RESET and stops processing the device until the driver resets it.
 */
export class QueueError extends Error {
  /** Always `'QueueError'`. */
  override readonly name = 'QueueError';
  /** Always `'ERR_KVMPOOL_VIRTQUEUE'`. */
  readonly code = QUEUE_ERROR_CODE;
  /** The queue's index in its device, or -1 when the error is not about one queue. */
  readonly queue: number;
  /** `message` says what is wrong, for the queue `queue`. */
  constructor(queue: number, message: string) {
    super(queue >= 0 ? `virtqueue ${queue}: ${message}` : message);
    this.queue = queue;
  }
}

/** Copies bytes of `views` starting at byte `skip` into `out`; returns how many it copied. */
export function gather(views: readonly Uint8Array[], skip: number, out: Uint8Array): number {
  let n = 0;
  for (const v of views) {
    if (n === out.length) break;
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    const k = Math.min(v.length - skip, out.length - n);
    out.set(v.subarray(skip, skip + k), n);
    n += k;
    skip = 0;
  }
  return n;
}
