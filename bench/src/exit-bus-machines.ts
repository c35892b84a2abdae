/**
 * kvmpool machines for the `exit-bus` benchmark, and how their exits are timed.
 *
 * A per-exit case runs a guest that loops forever; between its batches the machine is paused
 * (so it costs nothing while the other cases run). A batch resumes it, lets a few exits go by,
 * and times a window of K exits from timestamps the devices take on the main thread as the
 * dispatcher hands them the accesses: per-exit ns = window / K, in steady state. Waiting is
 * promise-based (the device resolves a waiter when its count is reached): the harness never spins.
 */
import { createMachine, guestCpuid, setEntryPoint, setupCpuMode, type Kvm, type Machine, type MachineOptions, type Vcpu, type Vm } from '@kvmpool/core/internal';
import { OUT_LOOP } from './exit-bus-guests.js';
import type { Device, DispatcherStats, FastRegister } from '@kvmpool/devices';

export const CODE = 0x10000n;
export const STACK = 0x80000n;

const now = (): bigint => process.hrtime.bigint();

type Access = 'read' | 'write';

/**
 * Counts the accesses the dispatcher hands it and timestamps the one that reaches a count.
 * Reads answer the low byte of `fastState[0]` when there is one (what the worker's fast path
 * answers), else the read count.
 */
export class CountingDevice implements Device {
  readonly name: string;
  reads = 0;
  writes = 0;
  readonly fastRegisters?: readonly FastRegister[];
  readonly fastState?: Int32Array;
  #waiter: { kind: Access; at: number; resolve: (t: bigint) => void } | undefined;

  constructor(name: string, options: { fast?: boolean } = {}) {
    this.name = name;
    if (options.fast) {
      this.fastRegisters = [{ offset: 0, size: 1, index: 0 }];
      this.fastState = new Int32Array(new SharedArrayBuffer(4));
      this.fastState[0] = 0x5a;
    }
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(this.fastState ? Atomics.load(this.fastState, 0) & 0xff : this.reads & 0xff);
    this.reads++;
    this.#check('read', this.reads);
  }

  write(): void {
    this.writes++;
    this.#check('write', this.writes);
  }

  count(kind: Access): number {
    return kind === 'read' ? this.reads : this.writes;
  }

  /** Resolves with the time (hrtime ns) of the access that makes the `kind` count reach `at`. */
  when(kind: Access, at: number): Promise<bigint> {
    if (this.#waiter) throw new Error(`${this.name}: one waiter at a time`);
    if (this.count(kind) >= at) return Promise.resolve(now());
    return new Promise((resolve) => {
      this.#waiter = { kind, at, resolve };
    });
  }

  #check(kind: Access, count: number): void {
    const w = this.#waiter;
    if (w && w.kind === kind && count >= w.at) {
      this.#waiter = undefined;
      w.resolve(now());
    }
  }
}

/** Creates a machine (no standard UART: serial 0), loads `code` at CODE, starts and pauses it. */
export async function pausedMachine(options: MachineOptions, code: Uint8Array): Promise<Machine> {
  const m = await createMachine({ serial: 0, ...options });
  try {
    m.load(CODE, code);
    await m.start({ entry: CODE, stack: STACK });
    await m.pause();
  } catch (e) {
    await m.close();
    throw e;
  }
  return m;
}

/** Dispatcher counters over some window. */
export interface StatsDelta {
  records: number;
  wakeups: number;
  batches: number;
  spinHits: number;
}

function statsDelta(a: DispatcherStats, b: DispatcherStats): StatsDelta {
  return { records: b.records - a.records, wakeups: b.wakeups - a.wakeups, batches: b.batches - a.batches, spinHits: b.spinHits - a.spinHits };
}

export interface WindowResult {
  /** ns per exit over the window. */
  perExit: number;
  stats: StatsDelta;
  /** Userspace exits the vCPU counted over the window (read after it, so approximate). */
  vcpuExits: number;
}

/**
 * Resumes `m`, skips `warm` accesses of `kind` on `dev`, times the next `accesses` of them,
 * and pauses `m` again. `exitsPerAccess` converts accesses to exits (a marker that stands for
 * a round of k + 1 exits).
 */
export async function timeWindow(
  m: Machine, dev: CountingDevice, kind: Access, warm: number, accesses: number, exitsPerAccess = 1,
): Promise<WindowResult> {
  const start = dev.count(kind);
  m.resume();
  try {
    const t0 = await dev.when(kind, start + warm);
    const s0 = { ...m.dispatcher.stats };
    const e0 = m.vcpuExits()[0] ?? 0;
    const t1 = await dev.when(kind, start + warm + accesses);
    const s1 = { ...m.dispatcher.stats };
    const e1 = m.vcpuExits()[0] ?? 0;
    return { perExit: Number(t1 - t0) / (accesses * exitsPerAccess), stats: statsDelta(s0, s1), vcpuExits: (e1 - e0) >>> 0 };
  } finally {
    await m.pause();
  }
}

/** Times `n` kicks of vCPU 0 of a running machine, one after another, each from call to resolution. */
export async function timeKicks(m: Machine, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = now();
    await m.kick(0);
    out.push(Number(now() - t0));
  }
  return out;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A VM with one vCPU on the main thread, running OUT_LOOP (for node-direct-out). */
export function directVcpu(kvm: Kvm): { vm: Vm; vcpu: Vcpu } {
  const vm = kvm.createVm();
  try {
    vm.addMemory({ guestAddress: 0, size: '2 MiB' });
    vm.memory.write(CODE, OUT_LOOP);
    const vcpu = vm.createVcpu(0);
    vcpu.setCpuid(guestCpuid(kvm));
    setupCpuMode(vcpu, vm.memory, 'user');
    setEntryPoint(vcpu, 'user', CODE, STACK);
    return { vm, vcpu };
  } catch (e) {
    vm.close();
    throw e;
  }
}
