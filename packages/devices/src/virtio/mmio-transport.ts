/**
 * The virtio-mmio transport, modern interface only (virtio 1.2 §4.2.2, Version 2): the register
 * block a driver programs, feature negotiation, the queues' set-up, notifications and the
 * interrupt, in front of one `VirtioDevice`.
 *
 * - Registers 0x000–0x0ff are 32 bits wide; an access of another width or misaligned reads 0
 *   and is ignored when written (the spec lets the driver use only aligned 32-bit accesses).
 *   The device configuration space at 0x100 takes any width and goes to the device.
 * - FEATURES_OK is refused (the Status write keeps the bit clear) when the driver asks for bits
 *   the device did not offer or leaves out VIRTIO_F_VERSION_1. DRIVER_OK without FEATURES_OK is
 *   ignored. Writing 0 to Status resets the device and every queue.
 * - A malformed ring (any `QueueError`, from a queue's set-up or a device's walk) sets
 *   DEVICE_NEEDS_RESET, raises the configuration-change interrupt and stops all processing
 *   until the driver resets the device; `needsReset` and `lastError` tell the host.
 * - The interrupt is level-triggered: `irq` is high while InterruptStatus is non-zero.
 *
 * Single-threaded: every entry point runs on the dispatcher's thread; only the rings in guest
 * RAM are shared (with the vCPUs), see virtqueue.ts for their ordering.
 */
import type { Device, IrqLine } from '../device.js';
import { bytesToValue, valueToBytes } from '../device.js';
import {
  QueueError, VIRTIO_F, VIRTIO_INT, VIRTIO_MMIO as R, VIRTIO_MMIO_MAGIC, VIRTIO_MMIO_VENDOR_ID, VIRTIO_MMIO_VERSION, VIRTIO_STATUS,
  featureBit, type GuestRam, type VirtioActivation, type VirtioDevice,
} from './types.js';
import { Virtqueue, type VirtqueueState } from './virtqueue.js';

/** Options of `new VirtioMmioTransport()`. */
export interface VirtioTransportOptions {
  /** Guest RAM the rings and buffers live in. */
  ram: GuestRam;
  /** The interrupt line (level: high while InterruptStatus is non-zero). */
  irq: IrqLine;
  /** Name for messages; default `virtio-<device name>`. */
  name?: string;
}

/** One queue's registers and ring position, as `exportState()` keeps it. */
export interface VirtioQueueRegisters {
  /** QueueNum. */
  num: number;
  /** QueueReady. */
  ready: boolean;
  /** Descriptor table address (decimal string: JSON has no u64). */
  desc: string;
  /** Driver area address (decimal string). */
  driver: string;
  /** Device area address (decimal string). */
  device: string;
  /** Ring positions while ready. */
  ring?: VirtqueueState;
}

/** The transport's state for a snapshot (JSON-serialisable). */
export interface VirtioTransportState {
  /** Device status (the driver's bits). */
  status: number;
  /** DeviceFeaturesSel. */
  deviceFeaturesSel: number;
  /** DriverFeaturesSel. */
  driverFeaturesSel: number;
  /** The driver's feature bits (decimal string). */
  driverFeatures: string;
  /** QueueSel. */
  queueSel: number;
  /** InterruptStatus. */
  interruptStatus: number;
  /** ConfigGeneration. */
  configGeneration: number;
  /** DEVICE_NEEDS_RESET is set; the reason. */
  needsReset: string | null;
  /** Per queue. */
  queues: VirtioQueueRegisters[];
  /** The device's own state (`VirtioDevice.exportState()`). */
  device: unknown;
}

interface QueueRegs {
  num: number;
  ready: boolean;
  desc: bigint;
  driver: bigint;
  device: bigint;
  ring: Virtqueue | undefined;
}

/** Most rounds of device kicks taken in one go before the rest waits for the next event-loop turn. */
const MAX_KICK_ROUNDS = 8;
const TRANSPORT_FEATURES = featureBit(VIRTIO_F.VERSION_1) | featureBit(VIRTIO_F.EVENT_IDX) | featureBit(VIRTIO_F.INDIRECT_DESC);

function setHalf(v: bigint, high: boolean, value: number): bigint {
  return high ? (v & 0xffff_ffffn) | (BigInt(value >>> 0) << 32n) : (v & ~0xffff_ffffn) | BigInt(value >>> 0);
}

function half(v: bigint, high: boolean): number {
  return Number((high ? v >> 32n : v) & 0xffff_ffffn);
}

/** A virtio-mmio (Version 2) register block in front of a `VirtioDevice` (see the file's notes). */
export class VirtioMmioTransport implements Device {
  /** Bytes of MMIO the transport occupies (registers 0..0xff, configuration space from 0x100). */
  static readonly SIZE = 0x1000;
  /** The QueueNotify offset: where an ioeventfd goes (4-byte write, datamatch = queue index). */
  static readonly QUEUE_NOTIFY = R.QUEUE_NOTIFY;
  readonly name: string;
  /** The device behind this transport. */
  readonly device: VirtioDevice;
  /** Feature bits offered: the device's plus VERSION_1, EVENT_IDX and INDIRECT_DESC. */
  readonly offeredFeatures: bigint;
  readonly #ram: GuestRam;
  readonly #irq: IrqLine;
  #status = 0;
  #deviceFeaturesSel = 0;
  #driverFeaturesSel = 0;
  #driverFeatures = 0n;
  #queueSel = 0;
  #interruptStatus = 0;
  #configGeneration = 0;
  #error: Error | undefined;
  #queues: QueueRegs[] = [];
  #active: (Virtqueue | undefined)[] = [];
  #processing = false;
  #pendingKicks = new Set<number>();
  #later = new Set<number>();
  #deferred: NodeJS.Immediate | undefined;

  /** Wraps `device`; `options.ram` is where its rings live, `options.irq` its interrupt line. */
  constructor(device: VirtioDevice, options: VirtioTransportOptions) {
    if (!Number.isInteger(device.queueCount) || device.queueCount < 1 || device.queueCount > 64) throw new RangeError(`${device.name}: queueCount ${device.queueCount} out of range`);
    const m = device.queueMaxSize;
    if (!Number.isInteger(m) || m < 1 || m > 32768 || (m & (m - 1)) !== 0) throw new RangeError(`${device.name}: queueMaxSize ${m} is not a power of two ≤ 32768`);
    this.device = device;
    this.name = options.name ?? `virtio-${device.name}`;
    this.#ram = options.ram;
    this.#irq = options.irq;
    this.offeredFeatures = device.features | TRANSPORT_FEATURES;
    this.#clearQueues();
  }

  /** DEVICE_NEEDS_RESET is set: a ring was malformed (`lastError` says how); nothing is processed until a reset. */
  get needsReset(): boolean {
    return this.#error !== undefined;
  }

  /** Why the device needs a reset, if it does. */
  get lastError(): Error | undefined {
    return this.#error;
  }

  /** The Status register as the driver reads it. */
  get status(): number {
    return this.#status | (this.#error ? VIRTIO_STATUS.DEVICE_NEEDS_RESET : 0);
  }

  /** InterruptStatus. */
  get interruptStatus(): number {
    return this.#interruptStatus;
  }

  /** The features the driver accepted (meaningful once FEATURES_OK is set). */
  get negotiatedFeatures(): bigint {
    return this.#driverFeatures;
  }

  read(offset: number, data: Uint8Array): void {
    if (offset >= R.CONFIG) {
      data.fill(0);
      if (offset < VirtioMmioTransport.SIZE) this.device.readConfig(offset - R.CONFIG, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0) {
      data.fill(0);
      return;
    }
    valueToBytes(this.#readRegister(offset), data);
  }

  #readRegister(offset: number): number {
    const q = this.#queues[this.#queueSel];
    switch (offset) {
      case R.MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
      case R.VERSION: return VIRTIO_MMIO_VERSION;
      case R.DEVICE_ID: return this.device.deviceId;
      case R.VENDOR_ID: return VIRTIO_MMIO_VENDOR_ID;
      case R.DEVICE_FEATURES: return this.#deviceFeaturesSel > 1 ? 0 : half(this.offeredFeatures, this.#deviceFeaturesSel === 1);
      case R.QUEUE_NUM_MAX: return q ? this.device.queueMaxSize : 0;
      case R.QUEUE_READY: return q?.ready ? 1 : 0;
      case R.INTERRUPT_STATUS: return this.#interruptStatus;
      case R.STATUS: return this.status;
      case R.SHM_LEN_LOW: case R.SHM_LEN_HIGH: case R.SHM_BASE_LOW: case R.SHM_BASE_HIGH: return 0xffffffff; // no shared memory regions
      case R.CONFIG_GENERATION: return this.#configGeneration;
      default: return 0; // write-only and reserved registers
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (offset >= R.CONFIG) {
      if (offset < VirtioMmioTransport.SIZE) this.device.writeConfig(offset - R.CONFIG, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0) return;
    const v = bytesToValue(data);
    const q = this.#queues[this.#queueSel];
    const configurable = q !== undefined && !q.ready;
    switch (offset) {
      case R.DEVICE_FEATURES_SEL: this.#deviceFeaturesSel = v; break;
      case R.DRIVER_FEATURES_SEL: this.#driverFeaturesSel = v; break;
      case R.DRIVER_FEATURES:
        if (this.#driverFeaturesSel <= 1 && !(this.#status & VIRTIO_STATUS.FEATURES_OK)) {
          this.#driverFeatures = setHalf(this.#driverFeatures, this.#driverFeaturesSel === 1, v);
        }
        break;
      case R.QUEUE_SEL: this.#queueSel = v; break;
      case R.QUEUE_NUM: if (configurable) q.num = v; break;
      case R.QUEUE_DESC_LOW: case R.QUEUE_DESC_HIGH: if (configurable) q.desc = setHalf(q.desc, offset === R.QUEUE_DESC_HIGH, v); break;
      case R.QUEUE_DRIVER_LOW: case R.QUEUE_DRIVER_HIGH: if (configurable) q.driver = setHalf(q.driver, offset === R.QUEUE_DRIVER_HIGH, v); break;
      case R.QUEUE_DEVICE_LOW: case R.QUEUE_DEVICE_HIGH: if (configurable) q.device = setHalf(q.device, offset === R.QUEUE_DEVICE_HIGH, v); break;
      case R.QUEUE_READY: if (q) this.#setReady(this.#queueSel, v === 1); break;
      case R.QUEUE_NOTIFY: this.notifyQueue(v & 0xffff); break;
      case R.INTERRUPT_ACK: this.#setInterrupt(this.#interruptStatus & ~v); break;
      case R.STATUS: this.#writeStatus(v & 0xff); break;
      default: break; // read-only and reserved registers
    }
  }

  #setReady(index: number, ready: boolean): void {
    const q = this.#queues[index]!;
    if (!ready) {
      q.ready = false;
      q.ring = undefined;
      this.#active[index] = undefined;
      return;
    }
    if (q.ready || this.#error) return;
    q.ready = true;
    this.#startRing(index, undefined);
  }

  /** Builds the ring of a ready queue; a malformed set-up marks the device as needing a reset. */
  #startRing(index: number, state: VirtqueueState | undefined): void {
    const q = this.#queues[index]!;
    try {
      q.ring = new Virtqueue({
        ram: this.#ram, index, size: q.num, maxSize: this.device.queueMaxSize, desc: q.desc, driver: q.driver, device: q.device,
        eventIdx: (this.#driverFeatures & featureBit(VIRTIO_F.EVENT_IDX)) !== 0n,
        indirect: (this.#driverFeatures & featureBit(VIRTIO_F.INDIRECT_DESC)) !== 0n,
        ...(state ? { state } : {}),
      });
      this.#active[index] = q.ring;
    } catch (e) {
      this.#fail(e);
    }
  }

  #writeStatus(v: number): void {
    if (v === 0) {
      this.reset();
      return;
    }
    const added = v & ~this.#status;
    let next = v & ~VIRTIO_STATUS.DEVICE_NEEDS_RESET;
    if (added & VIRTIO_STATUS.FEATURES_OK) {
      const f = this.#driverFeatures;
      const ok = (f & ~this.offeredFeatures) === 0n && (f & featureBit(VIRTIO_F.VERSION_1)) !== 0n;
      if (!ok) next &= ~VIRTIO_STATUS.FEATURES_OK;
    }
    if ((added & VIRTIO_STATUS.DRIVER_OK) && !((this.#status | next) & VIRTIO_STATUS.FEATURES_OK)) next &= ~VIRTIO_STATUS.DRIVER_OK;
    // Bits the driver already set stay set (only a write of 0 clears them).
    this.#status |= next;
    if ((added & VIRTIO_STATUS.DRIVER_OK) && (this.#status & VIRTIO_STATUS.DRIVER_OK) && !this.#error) {
      this.#activate();
      for (let i = 0; i < this.#queues.length; i++) if (this.#queues[i]!.ring) this.#run(i, false);
    }
  }

  #activate(): void {
    const ctx: VirtioActivation = {
      features: this.#driverFeatures,
      queues: this.#active,
      kick: (index) => this.#kick(index),
      configChanged: () => {
        this.#configGeneration = (this.#configGeneration + 1) >>> 0;
        if (this.#status & VIRTIO_STATUS.DRIVER_OK) this.#setInterrupt(this.#interruptStatus | VIRTIO_INT.CONFIG_CHANGE);
      },
    };
    this.device.activate(ctx);
  }

  /**
   * Processes queue `index` now: from the ioeventfd watcher or a QueueNotify write. Ignored before
   * DRIVER_OK, for a queue that is not ready, and while the device needs a reset. A `QueueError`
   * marks the device as needing a reset; any other error from the device model is rethrown.
   */
  notifyQueue(index: number): void {
    this.#run(index, true);
  }

  #kick(index: number): void {
    this.#run(index, false);
  }

  #run(index: number, rethrow: boolean): void {
    if (!(this.#status & VIRTIO_STATUS.DRIVER_OK) || this.#error || !this.#queues[index]?.ring) return;
    if (this.#processing) {
      this.#pendingKicks.add(index);
      return;
    }
    this.#processing = true;
    let failure: unknown;
    try {
      this.#process(index);
      for (let round = 0; this.#pendingKicks.size > 0 && !this.#error; round++) {
        if (round === MAX_KICK_ROUNDS) {
          this.#defer();
          break;
        }
        const [i] = this.#pendingKicks;
        this.#pendingKicks.delete(i!);
        if (this.#queues[i!]?.ring) this.#process(i!);
      }
    } catch (e) {
      failure = e;
    } finally {
      this.#processing = false;
    }
    if (failure !== undefined) {
      this.#fail(failure);
      if (rethrow && !(failure instanceof QueueError)) throw failure;
      return;
    }
    let used = false;
    for (const q of this.#active) if (q?.needsInterrupt()) used = true;
    if (used) this.#setInterrupt(this.#interruptStatus | VIRTIO_INT.USED_BUFFER);
  }

  /** One `device.process(index)` with a budget of one ring's worth of chains; a spent budget comes back next turn. */
  #process(index: number): void {
    const ring = this.#queues[index]!.ring!;
    ring.setBudget(ring.size);
    let exhausted = false;
    try {
      this.device.process(index);
    } finally {
      exhausted = ring.exhausted;
      ring.setBudget(Infinity);
    }
    if (exhausted) {
      this.#later.add(index);
      this.#defer();
    }
  }

  /** Leaves the pending kicks for the next event-loop turn (a guest or device that never stops must not hold the thread). */
  #defer(): void {
    this.#deferred ??= setImmediate(() => {
      this.#deferred = undefined;
      const again = new Set([...this.#pendingKicks, ...this.#later]);
      this.#pendingKicks.clear();
      this.#later.clear();
      for (const i of again) this.#run(i, false);
    });
  }

  #fail(e: unknown): void {
    if (this.#error) return;
    this.#error = e instanceof Error ? e : new Error(String(e));
    this.#pendingKicks.clear();
    this.#later.clear();
    if (this.#status & VIRTIO_STATUS.DRIVER_OK) {
      this.#configGeneration = (this.#configGeneration + 1) >>> 0;
      this.#setInterrupt(this.#interruptStatus | VIRTIO_INT.CONFIG_CHANGE);
    }
  }

  #setInterrupt(v: number): void {
    const was = this.#interruptStatus !== 0;
    this.#interruptStatus = v & (VIRTIO_INT.USED_BUFFER | VIRTIO_INT.CONFIG_CHANGE);
    const now = this.#interruptStatus !== 0;
    if (was !== now) this.#irq.set(now);
  }

  #clearQueues(): void {
    this.#queues = Array.from({ length: this.device.queueCount }, () => ({ num: this.device.queueMaxSize, ready: false, desc: 0n, driver: 0n, device: 0n, ring: undefined }));
    this.#active = new Array<Virtqueue | undefined>(this.device.queueCount).fill(undefined);
  }

  /** Device reset (Status = 0): the device, every queue, the features and the interrupt go back to their initial state. */
  reset(): void {
    if (this.#deferred) clearImmediate(this.#deferred);
    this.#deferred = undefined;
    this.#pendingKicks.clear();
    this.#later.clear();
    this.device.reset();
    this.#status = 0;
    this.#deviceFeaturesSel = 0;
    this.#driverFeaturesSel = 0;
    this.#driverFeatures = 0n;
    this.#queueSel = 0;
    this.#error = undefined;
    this.#clearQueues();
    this.#setInterrupt(0);
  }

  exportState(): VirtioTransportState {
    return {
      status: this.#status,
      deviceFeaturesSel: this.#deviceFeaturesSel,
      driverFeaturesSel: this.#driverFeaturesSel,
      driverFeatures: this.#driverFeatures.toString(),
      queueSel: this.#queueSel,
      interruptStatus: this.#interruptStatus,
      configGeneration: this.#configGeneration,
      needsReset: this.#error ? this.#error.message : null,
      queues: this.#queues.map((q) => ({
        num: q.num, ready: q.ready, desc: q.desc.toString(), driver: q.driver.toString(), device: q.device.toString(),
        ...(q.ring ? { ring: q.ring.exportState() } : {}),
      })),
      device: this.device.exportState?.() ?? null,
    };
  }

  /**
   * Restores `exportState()`'s result (into a transport over the same device type and RAM
   * contents), re-activates the device if DRIVER_OK was set, and then processes every ready
   * queue, so requests that were available but not yet handled at the snapshot complete.
   */
  importState(state: unknown): void {
    const s = parseState(state, this.name, this.device.queueCount);
    this.reset();
    this.device.importState?.(s.device);
    this.#status = s.status & ~VIRTIO_STATUS.DEVICE_NEEDS_RESET;
    this.#deviceFeaturesSel = s.deviceFeaturesSel;
    this.#driverFeaturesSel = s.driverFeaturesSel;
    this.#driverFeatures = BigInt(s.driverFeatures);
    this.#queueSel = s.queueSel;
    this.#configGeneration = s.configGeneration;
    s.queues.forEach((r, i) => {
      const q = this.#queues[i]!;
      q.num = r.num;
      q.ready = r.ready;
      q.desc = BigInt(r.desc);
      q.driver = BigInt(r.driver);
      q.device = BigInt(r.device);
    });
    if (s.needsReset !== null) this.#error = new QueueError(-1, s.needsReset);
    else s.queues.forEach((r, i) => { if (r.ready) this.#startRing(i, r.ring); });
    this.#setInterrupt(s.interruptStatus);
    if ((this.#status & VIRTIO_STATUS.DRIVER_OK) && !this.#error) {
      this.#activate();
      for (let i = 0; i < this.#queues.length; i++) if (this.#queues[i]!.ring) this.#run(i, false);
    }
  }
}

const DECIMAL = /^[0-9]{1,20}$/;

function parseState(state: unknown, name: string, queueCount: number): VirtioTransportState {
  const bad = (what: string): never => {
    throw new TypeError(`${name}: importState: ${what}`);
  };
  if (typeof state !== 'object' || state === null) bad('not a virtio-mmio state');
  const s = state as Record<string, unknown>;
  for (const k of ['status', 'deviceFeaturesSel', 'driverFeaturesSel', 'queueSel', 'interruptStatus', 'configGeneration']) {
    if (!Number.isInteger(s[k])) bad(`field ${k} is missing`);
  }
  if (typeof s.driverFeatures !== 'string' || !DECIMAL.test(s.driverFeatures)) bad('driverFeatures is not a decimal string');
  if (s.needsReset !== null && typeof s.needsReset !== 'string') bad('needsReset is neither null nor a string');
  if (!Array.isArray(s.queues) || s.queues.length !== queueCount) bad(`queues is not an array of ${queueCount}`);
  for (const q of s.queues as unknown[]) {
    const r = q as Record<string, unknown> | null;
    if (!r || !Number.isInteger(r.num) || typeof r.ready !== 'boolean') bad('a queue lacks num/ready');
    for (const k of ['desc', 'driver', 'device']) if (typeof r![k] !== 'string' || !DECIMAL.test(r![k] as string)) bad(`a queue's ${k} is not a decimal string`);
    const ring = r!.ring as Record<string, unknown> | undefined;
    if (ring !== undefined && !['lastAvailIdx', 'usedIdx', 'signalledUsed'].every((k) => Number.isInteger(ring[k]))) bad("a queue's ring state is malformed");
  }
  return s as unknown as VirtioTransportState;
}
