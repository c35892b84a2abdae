/**
 * A running VM: guest memory, one worker thread per vCPU, the exit bus and its dispatcher,
 * and the devices. `createMachine()` builds it; `close()` (or `await using`) releases everything.
 */
import { EventEmitter } from 'node:events';
import { Bus, Dispatcher, MAX_SPIN_US, createDoorbell, type Device, type IrqLine, type Uart16550, type UartLine } from '@kvmpool/devices';
import { writeModeTables } from '../cpu/modes.js';
import { ClosedError, GuestCrashError, KvmUnsupportedError } from '../errors.js';
import { EventFd } from '../eventfd.js';
import type { KvmRegs, KvmSregs } from '../ffi/index.js';
import { Kvm } from '../kvm.js';
import type { GuestMemory } from '../memory.js';
import type { CoalescedRing } from '../coalesced-ring.js';
import { blockSignal } from '../signals.js';
import { parseSize } from '../util/size.js';
import type { VcpuSnapshot } from '../vcpu-state.js';
import type { Translation } from '../vcpu.js';
import { IOAPIC_PINS, type Vm } from '../vm.js';
import type { Inspection } from './inspect.js';
import { KICK_SIGNAL, type GuestDebugConfig, type RunEnd, type VcpuState } from './vcpu-lifecycle.js';
import type { RestoreOptions, SnapshotInfo } from './snapshot.js';
import { standardDevices } from './standard-devices.js';
import type { DeviceSpec, MachineEvents, MachineExit, MachineOptions, StartOptions } from './types.js';
import { STOP_ACK_MS, VcpuHandle } from './vcpu-handle.js';
import { SOFT_IRQ, createSoftIrqState, softIrqLine } from './soft-irq.js';
import { threadWiring, wireDevices } from './wiring.js';
import { VirtioNotifyPath, isVirtioSpec, virtioTransports, type VirtioPlacement } from './virtio.js';
import type { Duplex } from 'node:stream';

export type { VirtioDeviceSpec, VirtioInterrupt, VirtioPlacement } from './virtio.js';
export type { DebugStop, DeviceSpec, MachineEvents, MachineExit, MachineOptions, StartInterrupts, StartOptions } from './types.js';

/** An interrupt line backed by an eventfd bound to a GSI with KVM_IRQFD (`machine.irqfd()`). */
export interface IrqfdLine extends IrqLine {
  /** The IOAPIC pin. */
  readonly gsi: number;
  /**
   * The eventfd: any thread may write 8 bytes (a u64 ≥ 1) to this fd (`EventFd.attach(fd).write()` in a
   * worker) to raise the interrupt, with no ioctl and no exit. The machine closes it at `close()`.
   */
  readonly fd: number;
  /** With `resample`: KVM signals this eventfd when the guest EOIs the (level) interrupt. */
  readonly resampleFd: number | undefined;
  /** Raises the interrupt once (an eventfd write): an edge, or with `resample` the level until the EOI. */
  trigger(): void;
}

/** Placeholder for the no-irqchip controller's ports on the PIO bus: vCPU 0's thread answers them itself. */
const softIrqPorts: Device = {
  name: 'irq-controller',
  read: (_offset, data) => {
    data.fill(0xff);
  },
  write: () => {},
};

/** One reason to keep every vCPU paused; the vCPUs run again when the last hold is released. */
export interface PauseHold {
  /** Gives the hold up (idempotent); resolves once the vCPUs run again, if this was the last. */
  release(): Promise<void>;
}

const SYSTEM_AREA = 0x1000n;
/** MachineOptions.vcpuSpinUs by default (µs). */
const DEFAULT_VCPU_SPIN_US = 50;
/** VIRTIO_DEVICE_ID.CONSOLE. */
const VIRTIO_CONSOLE_ID = 3;

/**
 * A running VM made by `createMachine()` (or `Machine.restore()`): guest memory at guest-physical 0, one worker
 * thread per vCPU, the PIO and MMIO buses, the dispatcher that answers exits on the main thread, and the
 * standard devices (a COM1 UART, the debug-exit port 0x501, the halt port 0x500 by default).
 * A guest ends its vCPU by writing to the halt port (`out` to 0x500): a vCPU stopped that way counts as halted,
 * and when every vCPU has, `waitForExit()` resolves `{ reason: 'halted' }`. HLT does that only at CPL 0; in the
 * default `user` mode (CPL 3) HLT faults and, with no guest kernel, the machine crashes (`GuestCrashError`).
 * Events: `exit` (MachineExit), `error`, `debug` (DebugStop), `reset`. `close()` (or `await using`) stops the
 * vCPUs and releases everything; it is idempotent.
 */
export class Machine extends EventEmitter<MachineEvents> implements AsyncDisposable {
  /** The system handle this machine opened. */
  readonly kvm: Kvm;
  /** The bare VM handle underneath. */
  readonly vm: Vm;
  /** The options it was made with. */
  readonly options: Readonly<MachineOptions>;
  /** The port I/O bus (devices by port range). */
  readonly pio = new Bus('pio');
  /** The MMIO bus (devices by guest-physical range). */
  readonly mmio = new Bus('mmio');
  /** The main-thread dispatcher that drains the vCPUs' exit rings and calls the devices. */
  readonly dispatcher: Dispatcher;
  readonly #doorbell = createDoorbell();
  readonly #devices: DeviceSpec[];
  readonly #uarts: Uart16550[];
  #vcpus: VcpuHandle[] = [];
  #runs: Promise<void>[] = [];
  #exit: MachineExit | undefined;
  #exitWaiters: ((e: MachineExit) => void)[] = [];
  #stopping: Promise<void> | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #started = false;
  readonly #vcpuSpinUs: number;

  private constructor(kvm: Kvm, vm: Vm, options: MachineOptions) {
    super();
    this.kvm = kvm;
    this.vm = vm;
    this.options = options;
    const spin = options.vcpuSpinUs ?? DEFAULT_VCPU_SPIN_US;
    if (typeof spin !== 'number' || !Number.isFinite(spin) || spin < 0 || spin > MAX_SPIN_US) {
      throw new TypeError(`vcpuSpinUs must be a number of µs from 0 to ${MAX_SPIN_US} (got ${String(spin)})`);
    }
    this.#vcpuSpinUs = spin;
    const std = standardDevices(options, {
      irqLine: (irq) => this.irqLine(irq),
      onExitCode: (code) => this.requestExit(code),
      onReset: () => {
        this.emit('reset');
        void this.#finish({ reason: 'reset' });
      },
    });
    this.#uarts = std.uarts;
    // The no-irqchip controller's ports: served by vCPU 0's thread, reserved on the bus against overlaps.
    const controller = vm.hasIrqchip ? [] : [{ device: softIrqPorts, pio: { base: SOFT_IRQ.PORT, length: SOFT_IRQ.PORTS } }];
    const custom = options.devices ?? [];
    const virtioSpecs = custom.filter(isVirtioSpec);
    const lines = vm.hasIrqchip ? IOAPIC_PINS : SOFT_IRQ.LINES;
    const ioeventfdOk = virtioSpecs.length > 0 && vm.checkExtension('KVM_CAP_IOEVENTFD') > 0;
    // Completions through irqfd where there is one: the transport's rising line is one eventfd write
    // (an edge on the IOAPIC pin, and a new one for each completion while InterruptStatus stays set).
    const irqfdOk = virtioSpecs.length > 0 && vm.hasIrqchip && vm.checkExtension('KVM_CAP_IRQFD') > 0;
    const interrupt = irqfdOk ? 'irqfd' : vm.hasIrqchip ? 'irq-line' : 'controller';
    try {
      const virtioLine = (irq: number): IrqLine => (irqfdOk ? this.irqfd(irq) : this.irqLine(irq));
      const virtio = virtioTransports(virtioSpecs, vm.memory, virtioLine, lines, ioeventfdOk, interrupt);
      this.#virtio = virtio.placements;
      const virtioBus = [...virtio.buses];
      // Each entry keeps its place in `devices` (snapshots match devices by that order).
      const placed = custom.map((d) => (isVirtioSpec(d) ? virtioBus.shift()! : d));
      this.#devices = [...std.specs, ...controller, ...placed];
      this.dispatcher = new Dispatcher(this.pio, this.mmio, this.#doorbell, { postedWriteBoundMs: options.postedWriteBoundMs, maxSpinUs: options.dispatcherSpinUs });
    } catch (e) {
      // The eventfds made for irqfd lines so far: the caller closes the VM, which unbinds them.
      for (const efd of this.#irqfds.splice(0)) efd.close();
      throw e;
    }
    this.dispatcher.onDeviceError = (e) => this.#fail(e);
  }

  /** Builds the VM: memory at GPA 0, devices on their buses, one started vCPU thread per vCPU. */
  static async create(options: MachineOptions): Promise<Machine> {
    const vcpus = options.vcpus ?? 1;
    if (!Number.isInteger(vcpus) || vcpus < 1) throw new RangeError(`vcpus: ${vcpus} is not a positive whole number`);
    // Threads made from here on inherit the blocked kick signal: a stray one can then never
    // run its default action (terminate) on a thread that is not a vCPU.
    blockSignal(KICK_SIGNAL);
    const kvm = Kvm.open(options.kvmPath);
    let m: Machine | undefined;
    try {
      const max = kvm.vcpuLimits().max;
      if (vcpus > max) throw new RangeError(`vcpus: ${vcpus} is more than this host's limit of ${max}`);
      const size = parseSize(options.memory, 'memory');
      const vm = kvm.createVm({ irqchip: options.irqchip ?? false });
      try {
        m = new Machine(kvm, vm, options);
      } catch (e) {
        vm.close(); // the machine never owned it
        throw e;
      }
      vm.addMemory({ guestAddress: 0, size });
      m.#wireDevices();
      // ioeventfd notifies: served by the dispatcher's loop after its rings (virtio.ts).
      const made = m;
      await made.#virtioNotify.start(vm, made.#virtio, made.dispatcher, made.#doorbell, (e) => made.#fail(e));
      await m.#startThreads(vcpus);
      return m;
    } catch (e) {
      if (m) await m.close();
      else {
        kvm.close();
        // The machine owned its virtio devices from the call on: a disk's file is closed here too.
        for (const d of options.devices ?? []) if (isVirtioSpec(d)) (d.virtio as { close?: () => unknown }).close?.();
      }
      throw e;
    }
  }

  /** Guest memory (`vm.memory`): zero-copy, bounds-checked. */
  get memory(): GuestMemory {
    return this.vm.memory;
  }

  /** How many vCPUs. */
  get vcpuCount(): number {
    return this.#vcpus.length;
  }

  /** Each vCPU's state now: `created`, `running`, `paused`, `stopped` or `crashed`. */
  vcpuStates(): VcpuState[] {
    return this.#vcpus.map((v) => v.state);
  }

  /** Exits handled per vCPU so far. */
  vcpuExits(): number[] {
    return this.#vcpus.map((v) => v.exits);
  }

  #wireDevices(): void {
    const coalesced = wireDevices(this.vm, this.pio, this.mmio, this.#devices, this.options.coalesce ?? true);
    if (coalesced) {
      // The coalesced ring is VM-wide; vCPU 0's mapping reaches it.
      const ring = (): CoalescedRing | undefined => this.#vcpus[0]?.mapping?.coalesced;
      this.dispatcher.coalesced = {
        pending: () => ring()?.pending() ?? false,
        last: () => ring()?.last() ?? 0,
        drainTo: (stop, handle) => ring()?.drainTo(stop, handle) ?? 0,
      };
    }
  }

  /**
   * UART `index` (COM1 = 0) as a Node Duplex stream: what the guest transmits comes out of it,
   * what you write into it the guest receives. `vm.serial(0).pipe(process.stdout)`.
   */
  serial(index = 0): UartLine {
    const uart = this.#uarts[index];
    if (!uart) throw new RangeError(`serial(${index}): this VM has ${this.#uarts.length} UART(s) (option serial)`);
    return uart.stream();
  }

  /**
   * The IrqLine for interrupt line `irq`: 0–23 with `irqchip: true`, where it drives that in-kernel IOAPIC pin
   * (and PIC input, for 0–15) with KVM_IRQ_LINE; 0–15 without, a line of the machine's own controller, which vCPU 0's
   * thread delivers with KVM_INTERRUPT as vector 0x20 + irq (docs/machines.md, Interrupts). Level-triggered:
   * `set(true)` until the device's condition clears. Call it on the main thread (device models live there).
   */
  irqLine(irq: number): IrqLine {
    const lines = this.vm.hasIrqchip ? IOAPIC_PINS : SOFT_IRQ.LINES;
    if (!Number.isInteger(irq) || irq < 0 || irq >= lines) throw new RangeError(`irqLine(${irq}): this machine's lines are 0–${lines - 1}`);
    // KVM delivers to a running or halted vCPU itself (it kicks it): measured here, a kick from us adds nothing.
    if (this.vm.hasIrqchip) return { set: (level: boolean) => this.vm.irqLine(irq, level) };
    return softIrqLine(this.#softIrq, irq, () => this.#vcpus[0]?.interruptKick());
  }

  /** The no-irqchip controller's shared state (snapshots read and restore it). */
  readonly #softIrq = createSoftIrqState();
  /** @internal The no-irqchip controller's state words (soft-irq.ts), for snapshots; undefined with an irqchip. */
  get softIrqState(): Int32Array | undefined {
    return this.vm.hasIrqchip ? undefined : this.#softIrq;
  }

  readonly #irqfds: EventFd[] = [];

  /**
   * An eventfd bound to IOAPIC pin `gsi` with KVM_IRQFD: a write to it from any thread (a device's worker)
   * raises the interrupt inside the kernel, with no ioctl and no exit. Edge-triggered by default; with
   * `resample`, level-triggered: asserted until the guest EOIs it, then KVM lowers it and signals
   * `resampleFd`, where the device re-triggers if its condition still holds. Needs `irqchip: true` (a
   * KvmUnsupportedError otherwise). The machine unbinds and closes the eventfds at `close()`.
   */
  irqfd(gsi: number, options: { resample?: boolean } = {}): IrqfdLine {
    if (this.#closed) throw new ClosedError('machine');
    if (!this.vm.hasIrqchip) throw new KvmUnsupportedError('irqchip', 'machine.irqfd() needs the in-kernel irqchip (createMachine({ irqchip: true }))');
    const efd = EventFd.create();
    let resample: EventFd | undefined;
    try {
      if (options.resample) resample = EventFd.create();
      this.vm.irqfd(efd, gsi, resample ? { resample } : {});
    } catch (e) {
      efd.close();
      resample?.close();
      throw e;
    }
    this.#irqfds.push(efd, ...(resample ? [resample] : []));
    return {
      gsi,
      fd: efd.fd,
      resampleFd: resample?.fd,
      trigger: () => efd.write(),
      set: (level: boolean) => {
        if (level) efd.write();
      },
    };
  }

  async #startThreads(count: number): Promise<void> {
    const { fastPath, stopPorts } = threadWiring(this.#devices);
    for (let id = 0; id < count; id++) {
      const h = await VcpuHandle.start({
        id,
        vmFd: this.vm.fd,
        mmapSize: this.kvm.vcpuMmapSize(),
        doorbell: this.#doorbell,
        fastPath,
        stopPorts,
        coalesced: this.dispatcher.coalesced !== undefined,
        replySpinUs: this.#vcpuSpinUs,
        ...(id === 0 && !this.vm.hasIrqchip ? { softIrq: this.#softIrq.buffer as SharedArrayBuffer } : {}),
        onThreadError: (e) => this.#fail(e),
        onEvent: (e) => {
          const v = this.#vcpus[e.vcpu];
          // Report the stop once the thread is really paused (its registers are readable).
          if (e.kvmpoolEvent === 'debug-stop' && v) {
            void v.paused().then(() => this.emit('debug', { vcpu: e.vcpu, pc: e.pc, dr6: e.dr6, exception: e.exception }));
          }
        },
      });
      this.#vcpus.push(h);
      this.dispatcher.addRing(id, h.ring, this.#doorbell);
    }
  }

  /** Copies `bytes` into guest memory at `gpa`. */
  load(gpa: bigint | number, bytes: Uint8Array): void {
    this.memory.write(gpa, bytes);
  }

  /**
   * Sets up every vCPU (mode, entry, stack) and runs them; resolves once all are running.
   * A machine from `Machine.restore()` already has its vCPU state: call `start()` bare.
   */
  async start(options?: StartOptions): Promise<void> {
    if (this.#started) throw new Error('machine: start() was already called');
    if (this.#closed) throw new ClosedError('machine');
    if (!options && !this.#restored) throw new TypeError('machine: start() needs { entry } (only a restored machine starts without one)');
    this.#started = true;
    if (options) await this.#configure(options);
    this.dispatcher.start();
    if (this.dispatcher.coalesced) {
      // Coalesced writes need no exit; vCPUs pass them on at their next exit, and this takes
      // what a guest that never exits leaves behind, so output does not linger.
      this.#flushTimer = setInterval(() => this.dispatcher.flushCoalesced(), 10);
      this.#flushTimer.unref();
    }
    this.#runs = this.#vcpus.map((v) => v.run().then((end) => this.#onRunEnd(v, end), (e: unknown) => this.#fail(e)));
    await Promise.all(this.#vcpus.map((v) => v.started()));
  }

  #restored = false;
  /** @internal Marks a machine whose vCPU state came from a snapshot. */
  markRestored(): void {
    this.#restored = true;
  }

  async #configure(options: StartOptions): Promise<void> {
    const mode = this.options.mode ?? 'user';
    const irq = options.interrupts;
    if (irq && mode !== 'user' && mode !== 'long') throw new RangeError(`start: interrupts need a 64-bit mode (user or long), not ${mode}`);
    writeModeTables(this.memory, mode, {
      systemArea: SYSTEM_AREA,
      // 4 GiB: the IOAPIC (0xfec00000) and LAPIC (0xfee00000) pages are then mapped for the guest.
      ...(irq ? { interruptStack: irq.stack } : {}),
      // 4 GiB: the IOAPIC (0xfec00000), LAPIC (0xfee00000) and virtio (0xd0000000) pages are then mapped.
      ...(irq || this.#virtio.length > 0 ? { mapSize: 4 * 2 ** 30 } : {}),
    });
    for (const v of this.#vcpus) {
      const stack = typeof options.stack === 'function' ? options.stack(v.id) : (options.stack ?? 0n);
      await v.configure({
        mode,
        entry: options.entry,
        stack,
        systemArea: SYSTEM_AREA,
        runnable: this.vm.hasIrqchip,
        ...(options.regs ? { regs: options.regs(v.id) } : {}),
        ...(irq ? { idt: irq.idt, interruptsEnabled: irq.enabled ?? true } : {}),
      });
    }
  }

  #onRunEnd(v: VcpuHandle, end: RunEnd): void {
    switch (end.reason) {
      case 'crashed':
        this.#fail(new GuestCrashError(v.id, end.description, end.rip));
        return;
      case 'stop-port':
      case 'hlt':
        // This vCPU is done; the machine is done when every vCPU is (or a device asks to exit).
        if (this.#vcpus.every((x) => x.state === 'stopped' || x.state === 'crashed')) void this.#finish({ reason: 'halted' });
        return;
      default:
        return;
    }
  }

  /**
   * A failure ends the machine. It is reported through `waitForExit()` / the 'exit' event, and
   * also as an 'error' event when someone listens (an unheard 'error' must not end the process).
   */
  #fail(e: unknown): void {
    if (this.#failure || this.#exit) return;
    const error = e instanceof Error ? e : new Error(String(e));
    this.#failure = error;
    if (this.listenerCount('error') > 0) this.emit('error', error);
    void this.#finish(error instanceof GuestCrashError ? { reason: 'crashed', error } : { reason: 'error', error });
  }
  #failure: Error | undefined;

  /** Reported by a debug-exit device: the guest asks the whole VM to exit with `code`. */
  requestExit(code: number): void {
    this.#pendingCode ??= code;
    void this.#finish({ reason: 'debug-exit', code });
  }
  #pendingCode: number | undefined;

  async #finish(exit: MachineExit): Promise<void> {
    await this.#halt().catch((e: unknown) => {
      this.#failure ??= e instanceof Error ? e : new Error(String(e));
    });
    if (this.#exit) return;
    const failure = this.#failure;
    if (failure) this.#exit = failure instanceof GuestCrashError ? { reason: 'crashed', error: failure } : { reason: 'error', error: failure };
    else if (this.#pendingCode !== undefined) this.#exit = { reason: 'debug-exit', code: this.#pendingCode };
    else this.#exit = exit;
    for (const w of this.#exitWaiters) w(this.#exit);
    this.#exitWaiters = [];
    this.emit('exit', this.#exit);
  }

  /** Stops every vCPU and the dispatcher (after a final drain, so no posted write is lost). */
  #halt(): Promise<void> {
    this.#stopping ??= (async () => {
      await Promise.all(this.#vcpus.map((v) => v.stop()));
      // A thread that does not answer (hung) must not hold the machine up: close() ends it.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(this.#runs),
        new Promise<void>((r) => {
          timer = setTimeout(r, STOP_ACK_MS);
        }),
      ]);
      clearTimeout(timer);
      if (this.#flushTimer) clearInterval(this.#flushTimer);
      await this.dispatcher.stop();
    })();
    return this.#stopping;
  }

  /** Resolves when the machine has stopped, with why. */
  waitForExit(): Promise<MachineExit> {
    if (this.#exit) return Promise.resolve(this.#exit);
    return new Promise((resolve) => this.#exitWaiters.push(resolve));
  }

  /**
   * Pauses every vCPU and resolves only when all have acknowledged: none is inside KVM_RUN
   * (they may be computing at CPL 3, halted, or waiting on a device read — such a read goes
   * on waiting for its answer after `resume()`). Posted writes already on the exit bus are
   * handed to their devices before it resolves. This is the caller's pause hold (one, however
   * often `pause()` is called): other holders (a debugger, a snapshot) keep theirs.
   */
  async pause(): Promise<void> {
    const hold = (this.#userHold ??= this.holdPaused());
    try {
      await hold;
    } catch (e) {
      if (this.#userHold === hold) this.#userHold = undefined;
      throw e;
    }
    if (this.running) await this.#pauseAll();
  }

  /**
   * Gives up the caller's pause hold; the vCPUs run again unless someone else holds them
   * paused (`holdPaused()`, a GuestDebugger, an inspect or snapshot in progress). Without any
   * hold, every paused vCPU (e.g. stopped at a debug exit) runs again.
   */
  async resume(): Promise<void> {
    const hold = this.#userHold;
    this.#userHold = undefined;
    if (hold) await (await hold).release();
    else if (this.#holds === 0) await this.#resumeAll();
  }

  /**
   * Pauses every vCPU and keeps them paused until the hold is released. Holds are counted:
   * the vCPUs run again only when the last one is released.
   */
  async holdPaused(): Promise<PauseHold> {
    this.#holds++;
    try {
      await this.#pauseAll();
    } catch (e) {
      this.#holds--;
      throw e;
    }
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        if (--this.#holds === 0) await this.#resumeAll();
      },
    };
  }

  /** Pause holders now (for tools and tests). */
  get pauseHolds(): number {
    return this.#holds;
  }

  #holds = 0;
  #userHold: Promise<PauseHold> | undefined;

  async #pauseAll(): Promise<void> {
    await Promise.all(this.#vcpus.map((v) => v.pause()));
    this.dispatcher.drainAll();
    this.dispatcher.flushCoalesced();
  }

  async #resumeAll(): Promise<void> {
    if (this.#closed) return;
    await Promise.all(this.#vcpus.map((v) => v.resume()));
  }

  readonly #virtio: VirtioPlacement[];
  readonly #virtioNotify = new VirtioNotifyPath();

  /**
   * The virtio devices (from `options.devices`), in order: each one's transport name, MMIO address and size,
   * interrupt line, the Linux command-line fragment that declares it, and how QueueNotify reaches it.
   */
  get virtio(): readonly VirtioPlacement[] {
    return this.#virtio;
  }

  /**
   * The `index`-th virtio console's stream (counting virtio consoles only): what the guest transmits comes out
   * of it, what you write into it the guest receives (in the receive buffers it posts).
   */
  virtioConsole(index = 0): Duplex {
    const consoles = this.#virtio.filter((p) => p.transport.device.deviceId === VIRTIO_CONSOLE_ID);
    const c = consoles[index]?.transport.device as { stream?: Duplex } | undefined;
    if (!c?.stream) throw new RangeError(`virtioConsole(${index}): this machine has ${consoles.length} virtio console(s)`);
    return c.stream;
  }

  /** @internal The ioeventfd watcher's counters and open eventfds (tests, benchmarks). */
  get virtioNotifyState(): { stats: { wakeups: number; notifies: number } | undefined; openEventfds: number } {
    return { stats: this.#virtioNotify.stats, openEventfds: this.#virtioNotify.openEventfds };
  }

  /** The devices on this machine's buses, standard ones first, in a stable order. */
  get devices(): readonly DeviceSpec[] {
    return this.#devices;
  }

  /** The whole state of vCPU `vcpu` (paused, stopped, or not yet started). */
  saveVcpuState(vcpu: number): Promise<VcpuSnapshot> {
    return this.#vcpu(vcpu).saveState(this.vm.hasIrqchip);
  }

  /** Loads a vCPU state (before `start()`). */
  loadVcpuState(vcpu: number, state: VcpuSnapshot): Promise<void> {
    return this.#vcpu(vcpu).loadState(state);
  }

  /** KVM_SET_GUEST_DEBUG for vCPU `vcpu` (paused or not started). See also `GuestDebugger`. */
  setGuestDebug(vcpu: number, config: GuestDebugConfig): Promise<void> {
    return this.#vcpu(vcpu).setGuestDebug(config);
  }

  /** Lets one paused vCPU run again (the others stay as they are). */
  resumeVcpu(vcpu: number): Promise<void> {
    return this.#vcpu(vcpu).resume();
  }

  /** Pauses one vCPU. */
  pauseVcpu(vcpu: number): Promise<void> {
    return this.#vcpu(vcpu).pause();
  }

  /** KVM_TRANSLATE through vCPU `vcpu`'s page tables (paused). */
  translate(vcpu: number, gva: bigint): Promise<Translation> {
    return this.#vcpu(vcpu).translate(gva);
  }

  /** Pauses, writes a snapshot to `path`, and lets running vCPUs go on. */
  async snapshot(path: string): Promise<SnapshotInfo> {
    const { snapshotMachine } = await import('./snapshot.js');
    return snapshotMachine(this, path);
  }

  /** A fresh machine from a snapshot file, ready for `start()`. */
  static async restore(path: string, options: RestoreOptions = {}): Promise<Machine> {
    const { restoreMachine } = await import('./snapshot.js');
    return restoreMachine(path, options);
  }

  /** Every vCPU's state, read while all are paused (they go on afterwards if they were running). */
  async inspect(): Promise<Inspection> {
    const { inspectMachine } = await import('./inspect.js');
    return inspectMachine(this);
  }

  /** Guest memory at guest-physical `gpa` (a copy). */
  readPhysical(gpa: bigint | number, length: number): Uint8Array {
    return this.memory.read(gpa, length);
  }

  /** Guest memory at guest-virtual `gva` through vCPU `vcpu`'s page tables (vCPU paused). */
  async readVirtual(vcpu: number, gva: bigint, length: number): Promise<Uint8Array> {
    const { readVirtual } = await import('./inspect.js');
    return readVirtual(this, vcpu, gva, length);
  }

  /** Guest-physical addresses where `pattern` occurs, over every memory slot. */
  async scanMemory(pattern: Uint8Array | string, limit?: number): Promise<bigint[]> {
    const { scanMemory } = await import('./inspect.js');
    return scanMemory(this, pattern, limit);
  }

  /**
   * Runs `fn` with every vCPU paused (a consistent view) under a pause hold of its own, then
   * gives the hold up: vCPUs someone else holds paused stay paused, whatever `fn` did.
   */
  async whilePaused<T>(fn: () => Promise<T>): Promise<T> {
    const hold = await this.holdPaused();
    try {
      return await fn();
    } finally {
      await hold.release();
    }
  }

  /** Were vCPUs running (not paused/stopped) — for tools that pause and put things back. */
  get running(): boolean {
    return this.#vcpus.some((v) => v.state === 'running');
  }

  /** Stops the guest; resolves with the exit once every vCPU has stopped. */
  async stop(): Promise<MachineExit> {
    await this.#finish({ reason: 'stopped' });
    return this.#exit ?? { reason: 'stopped' };
  }

  /** Registers of a paused (or stopped) vCPU. */
  getRegs(vcpu: number): Promise<KvmRegs> {
    return this.#vcpu(vcpu).getRegs();
  }
  /** Writes the registers of a paused (or stopped) vCPU. */
  setRegs(vcpu: number, regs: KvmRegs): Promise<void> {
    return this.#vcpu(vcpu).setRegs(regs);
  }
  /** Special registers of a paused (or stopped) vCPU. */
  getSregs(vcpu: number): Promise<KvmSregs> {
    return this.#vcpu(vcpu).getSregs();
  }

  /**
   * Kicks one vCPU out of KVM_RUN to a safe point and back in (for tests and benchmarks);
   * `boundMs` bounds the wait for the thread's acknowledgement. Not in the API reference.
   * @internal
   */
  kick(vcpu: number, boundMs?: number): Promise<void> {
    return this.#vcpu(vcpu).kick(boundMs);
  }

  /**
   * Fault injection for tests: an uncaught exception in vCPU `vcpu`'s thread, or with
   * `hang`, a thread that stops answering (so `close()` must end it). Not in the API reference.
   * @internal
   */
  injectThreadFault(vcpu: number, message = 'injected fault', options: { hang?: boolean } = {}): Promise<void> {
    return this.#vcpu(vcpu).injectFault(message, options.hang ?? false);
  }

  #vcpu(id: number): VcpuHandle {
    if (this.#closed) throw new ClosedError('machine');
    const v = this.#vcpus[id];
    if (!v) throw new RangeError(`vCPU ${id} does not exist (this VM has ${this.#vcpus.length})`);
    return v;
  }

  /**
   * Stops the guest if running, ends every thread, closes the VM and every fd; `waitForExit()`
   * settles (with `{ reason: 'stopped' }` if nothing else ended the machine). Idempotent; each
   * step runs even if an earlier one failed, and the first failure is thrown at the end.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    const errors: unknown[] = [];
    const step = async (fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    };
    await step(() => this.#finish({ reason: 'stopped' }));
    this.#closed = true;
    if (this.#flushTimer) clearInterval(this.#flushTimer);
    await step(() => this.dispatcher.stop());
    await step(() => Promise.all(this.#vcpus.map((v) => v.close())));
    this.#vcpus = [];
    // The watcher thread ends before its eventfds close (it polls them until then).
    await step(() => this.#virtioNotify.close());
    for (const p of this.#virtio) await step(() => (p.transport.device as { close?: () => unknown }).close?.());
    await step(() => this.vm.close());
    // After the VM: closing it drops the irqfd bindings, so nothing signals a closed eventfd's number.
    for (const e of this.#irqfds.splice(0)) await step(() => e.close());
    await step(() => this.kvm.close());
    if (errors.length > 0) throw errors[0];
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Builds a whole machine (a `Machine`: memory, vCPU threads, exit bus, devices):
 * `await using m = await createMachine({ memory: '64 MiB', vcpus: 4 })`. Compare `kvm.createVm()`,
 * which returns the bare `Vm` handle.
 */
export function createMachine(options: MachineOptions): Promise<Machine> {
  return Machine.create(options);
}
