/**
 * virtio devices on a machine: where their virtio-mmio transports go (0xd0000000 + i × 4 KiB,
 * interrupt line 5 + i), guest RAM as the devices see it, and the QueueNotify fast path
 * (KVM_IOEVENTFD per queue + the watcher thread of virtio-notify.ts). Every transport and device
 * lives on the main thread, with the dispatcher; see docs/virtio.md.
 */
import { DOORBELL, VirtioMmioTransport, type Dispatcher, type GuestRam, type IrqLine, type VirtioDevice } from '@kvmpool/devices';
import { EventFd } from '../eventfd.js';
import type { GuestMemory } from '../memory.js';
import type { IoeventfdBinding, Vm } from '../vm.js';
import type { DeviceSpec } from './types.js';
import { NotifyWatcher } from './virtio-notify.js';

/** Guest-physical address of the first virtio-mmio transport; the next ones follow every `VIRTIO_MMIO_STRIDE` bytes. */
export const VIRTIO_MMIO_BASE = 0xd000_0000n;
/** Bytes between two transports (each occupies `VirtioMmioTransport.SIZE`, 4 KiB). */
export const VIRTIO_MMIO_STRIDE = 0x1000;
/** Interrupt line of the first virtio device; device `i` uses line `VIRTIO_IRQ_BASE + i`. */
export const VIRTIO_IRQ_BASE = 5;

/** A virtio device for `MachineOptions.devices`: the machine puts its virtio-mmio transport in the virtio window. */
export interface VirtioDeviceSpec {
  /** The device model (`virtioBlk()`, `virtioConsole()`, `virtioRng()` make one, or any `VirtioDevice`). */
  virtio: VirtioDevice;
  /**
   * How a guest's QueueNotify write reaches the device: `ioeventfd` (default; KVM signals an eventfd, no exit,
   * a watcher thread wakes the main thread) or `exit` (an ordinary MMIO exit through the dispatcher). Hosts
   * without KVM_CAP_IOEVENTFD use `exit`.
   */
  notify?: 'ioeventfd' | 'exit';
}

/** How a virtio device's completions reach the guest (`VirtioPlacement.interrupt`). */
export type VirtioInterrupt = 'irqfd' | 'irq-line' | 'controller';

/** Where a machine put one virtio device (`machine.virtio`). */
export interface VirtioPlacement {
  /** The transport's name (`virtio-blk0`, …: device name and index). */
  readonly name: string;
  /** Guest-physical address of its registers. */
  readonly address: bigint;
  /** Bytes of MMIO (4096). */
  readonly size: number;
  /** Its interrupt line (IOAPIC pin with `irqchip: true`, else a line of the machine's own controller). */
  readonly irq: number;
  /** The Linux kernel command-line fragment that declares it: `virtio_mmio.device=4K@0xd0000000:5`. */
  readonly cmdline: string;
  /** How QueueNotify reaches it: `ioeventfd` or `exit`. */
  readonly notify: 'ioeventfd' | 'exit';
  /**
   * How its completions interrupt the guest: `irqfd` (an eventfd write, edge on the IOAPIC pin, with
   * `irqchip: true` where the host has KVM_CAP_IRQFD), `irq-line` (KVM_IRQ_LINE, level, the irqchip
   * without irqfd) or `controller` (the machine's own controller, no irqchip).
   */
  readonly interrupt: VirtioInterrupt;
  /** The transport (status, `needsReset`, `lastError`). */
  readonly transport: VirtioMmioTransport;
}

/** Whether an entry of `MachineOptions.devices` is a virtio device rather than a bus device. */
export function isVirtioSpec(spec: DeviceSpec | VirtioDeviceSpec): spec is VirtioDeviceSpec {
  return typeof spec === 'object' && spec !== null && 'virtio' in spec && !('device' in spec);
}

/**
 * Guest RAM for the devices: a live view of [gpa, gpa+length) inside one memory slot, or undefined (outside
 * RAM, across a slot end, negative, overflowing). Never throws: every address comes from the guest.
 */
export function guestRam(memory: GuestMemory): GuestRam {
  return {
    view(gpa: bigint, length: number): Uint8Array | undefined {
      if (typeof gpa !== 'bigint' || gpa < 0n || !Number.isSafeInteger(length) || length < 0) return undefined;
      for (const s of memory.slots) {
        if (gpa < s.guestAddress || gpa > s.end || (gpa === s.end && length > 0)) continue;
        if (gpa + BigInt(length) > s.end) return undefined;
        const off = Number(gpa - s.guestAddress);
        return s.bytes.subarray(off, off + length);
      }
      return undefined;
    },
  };
}

/** Builds the transports and their bus specs, in `specs` order; `irqLine(n)` gives line n. */
export function virtioTransports(
  specs: readonly VirtioDeviceSpec[],
  memory: GuestMemory,
  irqLine: (irq: number) => IrqLine,
  lines: number,
  ioeventfdOk: boolean,
  interrupt: VirtioInterrupt,
): { placements: VirtioPlacement[]; buses: DeviceSpec[] } {
  const room = lines - VIRTIO_IRQ_BASE;
  if (specs.length > room) throw new RangeError(`devices: ${specs.length} virtio devices; this machine has interrupt lines for ${room} (lines ${VIRTIO_IRQ_BASE}–${lines - 1})`);
  const ram = guestRam(memory);
  const placements: VirtioPlacement[] = [];
  const buses: DeviceSpec[] = [];
  specs.forEach((spec, i) => {
    const d = spec.virtio;
    if (typeof d !== 'object' || d === null || typeof d.process !== 'function') throw new TypeError(`devices: virtio entry ${i} is not a VirtioDevice`);
    if (spec.notify !== undefined && spec.notify !== 'ioeventfd' && spec.notify !== 'exit') throw new TypeError(`devices: virtio entry ${i}: notify must be 'ioeventfd' or 'exit'`);
    const irq = VIRTIO_IRQ_BASE + i;
    const address = VIRTIO_MMIO_BASE + BigInt(i * VIRTIO_MMIO_STRIDE);
    const name = `virtio-${d.name}${i}`;
    const transport = new VirtioMmioTransport(d, { ram, irq: irqLine(irq), name });
    placements.push({
      name, address, size: VirtioMmioTransport.SIZE, irq, transport,
      cmdline: `virtio_mmio.device=4K@0x${address.toString(16)}:${irq}`,
      notify: spec.notify === 'exit' || !ioeventfdOk ? 'exit' : 'ioeventfd',
      interrupt,
    });
    buses.push({ device: transport, mmio: { base: address, length: VirtioMmioTransport.SIZE }, irq });
  });
  return { placements, buses };
}

/** The ioeventfd fast path of a machine's virtio devices: eventfds, their bindings, the watcher thread. */
export class VirtioNotifyPath {
  #eventfds: EventFd[] = [];
  #bindings: IoeventfdBinding[] = [];
  #watcher: NotifyWatcher | undefined;

  /** The watcher's counters, or undefined when no device uses the ioeventfd path. */
  get stats(): { wakeups: number; notifies: number } | undefined {
    return this.#watcher?.stats;
  }

  /** The eventfds still open (tests check that `close()` leaves none). */
  get openEventfds(): number {
    return this.#eventfds.filter((e) => !e.closed).length;
  }

  /**
   * Binds one eventfd per queue of each `ioeventfd` placement to its QueueNotify register (4-byte write,
   * datamatch = queue index) and starts the watcher as the dispatcher's side work: the thread rings the
   * dispatcher's `doorbell`, and the dispatcher's loop takes the notifies after draining the exit rings (so the
   * driver's earlier posted writes, e.g. DRIVER_OK, are applied first; it drains once more right before).
   */
  async start(vm: Vm, placements: readonly VirtioPlacement[], dispatcher: Dispatcher, doorbell: SharedArrayBuffer, onError: (e: Error) => void): Promise<void> {
    const targets: { transport: VirtioMmioTransport; queue: number }[] = [];
    for (const p of placements) {
      if (p.notify !== 'ioeventfd') continue;
      for (let q = 0; q < p.transport.device.queueCount; q++) {
        const efd = EventFd.create();
        this.#eventfds.push(efd);
        this.#bindings.push(vm.ioeventfd(efd, { address: p.address + BigInt(VirtioMmioTransport.QUEUE_NOTIFY), length: 4, datamatch: q }));
        targets.push({ transport: p.transport, queue: q });
      }
    }
    if (targets.length === 0) return;
    this.#watcher = await NotifyWatcher.start(this.#eventfds.map((e) => e.fd), {
      beforeNotify: () => dispatcher.drainAll(),
      onNotify: (i) => {
        const t = targets[i]!;
        t.transport.notifyQueue(t.queue);
      },
      onError,
    }, { doorbell, doorbellIndex: DOORBELL.COUNT });
    dispatcher.sideWork = this.#watcher;
    this.#dispatcher = dispatcher;
  }
  #dispatcher: Dispatcher | undefined;

  /** Ends the watcher, then removes the bindings and closes the eventfds (the thread polled them until it ended). */
  async close(): Promise<void> {
    const errors: unknown[] = [];
    if (this.#dispatcher && this.#dispatcher.sideWork === this.#watcher) this.#dispatcher.sideWork = undefined;
    try {
      await this.#watcher?.close();
    } catch (e) {
      errors.push(e);
    }
    this.#watcher = undefined;
    for (const b of this.#bindings.splice(0)) {
      try {
        b.close();
      } catch (e) {
        errors.push(e);
      }
    }
    for (const e of this.#eventfds.splice(0)) e.close();
    if (errors.length > 0) throw errors[0];
  }
}
