/**
 * Machine snapshots: pause every vCPU, take their state, the in-kernel irqchip/PIT/clock when
 * present, every device's state and the non-zero memory pages, and write them to one file
 * (versioned, checksummed). Restoring builds a fresh machine from it that continues exactly
 * where the original was.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { KvmClockData, KvmPitState2 } from '../ffi/index.js';
import { SnapshotError, decodeSnapshot, encodeSnapshot, nonZeroPages } from '../snapshot/format.js';
import type { VcpuSnapshot } from '../vcpu-state.js';
import { PAGE_SIZE } from '../util/size.js';
import { Machine, type DeviceSpec, type MachineOptions } from './machine.js';
import type { VirtioDeviceSpec } from './virtio.js';
import { softIrqRestore, softIrqSnapshot, type SoftIrqSnapshot } from './soft-irq.js';

/** The options a snapshot records: everything but the device objects. */
type RecordedOptions = Omit<MachineOptions, 'devices' | 'kvmPath'>;

interface SnapshotMeta {
  kvmpool: 1;
  createdAt: string;
  module: string;
  options: RecordedOptions;
  memory: { slot: number; guestAddress: bigint; size: number }[];
  vcpus: VcpuSnapshot[];
  /**
   * `softIrq`: the no-irqchip controller (lines, edges, masks, the line in service). An interrupt it has
   * injected but the guest has not taken yet is in the vCPU's `events` (KVM_GET_VCPU_EVENTS).
   */
  vm: { clock: KvmClockData | null; irqchip: Uint8Array[] | null; pit: KvmPitState2 | null; softIrq?: SoftIrqSnapshot | null };
  devices: { name: string; state: unknown }[];
}

/** What `machine.snapshot(path)` wrote. */
export interface SnapshotInfo {
  /** The file. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** Non-zero pages written. */
  pages: number;
  /** How long the snapshot took (the vCPUs were paused for it), ms. */
  milliseconds: number;
}

function recordedOptions(o: Readonly<MachineOptions>): RecordedOptions {
  const { devices: _devices, kvmPath: _kvmPath, ...rest } = o;
  return rest;
}

/** Writes `m` to `path`; vCPUs that were running run again afterwards. */
export async function snapshotMachine(m: Machine, path: string): Promise<SnapshotInfo> {
  const t0 = performance.now();
  return m.whilePaused(async () => {
    const vcpus: VcpuSnapshot[] = [];
    for (let i = 0; i < m.vcpuCount; i++) vcpus.push(await m.saveVcpuState(i));
    const vm = m.vm;
    const meta: SnapshotMeta = {
      kvmpool: 1,
      createdAt: new Date().toISOString(),
      module: m.kvm.module,
      options: recordedOptions(m.options),
      memory: vm.memory.slots.map((s) => ({ slot: s.slot, guestAddress: s.guestAddress, size: s.size })),
      vcpus,
      vm: {
        clock: vm.getClock(),
        irqchip: vm.hasIrqchip ? [vm.getIrqchip(0), vm.getIrqchip(1), vm.getIrqchip(2)] : null,
        pit: vm.hasPit ? vm.getPit() : null,
        softIrq: m.softIrqState ? softIrqSnapshot(m.softIrqState) : null,
      },
      devices: m.devices.map((d) => ({ name: d.device.name, state: d.device.exportState?.() ?? null })),
    };
    const pages = vm.memory.slots.map((s) => nonZeroPages(s.bytes));
    const chunks = encodeSnapshot(meta, pages);
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, chunks);
    await rename(tmp, path);
    return {
      path,
      bytes: chunks.reduce((n, c) => n + c.length, 0),
      pages: pages.reduce((n, p) => n + p.indices.length, 0),
      milliseconds: performance.now() - t0,
    };
  });
}

/** Options of `Machine.restore(path)`. */
export interface RestoreOptions {
  /** The custom devices the machine had (`options.devices`), in the same order. */
  devices?: (DeviceSpec | VirtioDeviceSpec)[];
  /** The KVM device. Default `/dev/kvm`. */
  kvmPath?: string;
}

function checkMeta(path: string, meta: unknown): SnapshotMeta {
  const m = meta as Partial<SnapshotMeta> | null;
  const bad = (what: string): never => {
    throw new SnapshotError(path, `corrupted: metadata has no valid ${what}`);
  };
  if (!m || typeof m !== 'object' || m.kvmpool !== 1) bad('kvmpool marker');
  if (!m!.options || typeof m!.options !== 'object') bad('options');
  if (!Array.isArray(m!.memory)) bad('memory slot list');
  if (!Array.isArray(m!.vcpus) || m!.vcpus.length !== (m!.options!.vcpus ?? 1)) bad('vCPU states');
  if (!Array.isArray(m!.devices)) bad('device list');
  if (!m!.vm || typeof m!.vm !== 'object') bad('VM state');
  return m as SnapshotMeta;
}

/**
 * Reads and checks the whole file first (a truncated, corrupted or wrong-version file throws
 * SnapshotError before any VM exists), then builds the machine, loads memory, devices and
 * vCPUs. The result is ready for `start()`; on any failure it is closed, never half-restored.
 */
export async function restoreMachine(path: string, options: RestoreOptions = {}): Promise<Machine> {
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (e) {
    throw new SnapshotError(path, `cannot read: ${e instanceof Error ? e.message : String(e)}`);
  }
  const decoded = decodeSnapshot(path, file, (meta) => checkMeta(path, meta).memory.length);
  const meta = checkMeta(path, decoded.meta);
  const m = await Machine.create({
    ...meta.options,
    ...(options.devices ? { devices: options.devices } : {}),
    ...(options.kvmPath ? { kvmPath: options.kvmPath } : {}),
  });
  try {
    const names = m.devices.map((d) => d.device.name);
    const recorded = meta.devices.map((d) => d.name);
    if (names.join('\n') !== recorded.join('\n')) {
      throw new SnapshotError(path, `the snapshot's devices are [${recorded.join(', ')}]; this machine has [${names.join(', ')}] (pass the same devices to restore)`);
    }
    const slots = m.vm.memory.slots;
    meta.memory.forEach((rec, i) => {
      const slot = slots[i];
      if (!slot || slot.guestAddress !== rec.guestAddress || slot.size !== rec.size) {
        throw new SnapshotError(path, `memory slot ${i} (0x${rec.guestAddress.toString(16)}, ${rec.size} bytes) does not match the new machine's`);
      }
      for (const page of decoded.slots[i] ?? []) {
        if ((page.index + 1) * PAGE_SIZE > slot.size) throw new SnapshotError(path, `corrupted: page ${page.index} lies outside memory slot ${i}`);
        slot.bytes.set(page.bytes, page.index * PAGE_SIZE);
      }
    });
    const vm = m.vm;
    if (meta.vm.irqchip && vm.hasIrqchip) meta.vm.irqchip.forEach((chip, i) => vm.setIrqchip(i as 0 | 1 | 2, chip));
    if (meta.vm.pit && vm.hasPit) vm.setPit(meta.vm.pit);
    if (meta.vm.clock) vm.setClock(meta.vm.clock);
    meta.devices.forEach((d, i) => {
      if (d.state !== null) m.devices[i]?.device.importState?.(d.state);
    });
    // After the devices: their importState drives their lines again; the recorded words are exact.
    if (meta.vm.softIrq && m.softIrqState) softIrqRestore(m.softIrqState, meta.vm.softIrq);
    for (const [i, s] of meta.vcpus.entries()) await m.loadVcpuState(i, s);
    m.markRestored();
    return m;
  } catch (e) {
    await m.close();
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError(path, `restore failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}
