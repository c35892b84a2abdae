/** Putting a machine's devices on its buses, and what its vCPU threads need to know of them. */
import type { Bus } from '@kvmpool/devices';
import { IOAPIC_PINS, type Vm } from '../vm.js';
import type { DeviceSpec } from './machine.js';
import type { FastPathEntry } from './vcpu-lifecycle.js';

/**
 * Registers each device's ranges (overlaps throw, naming both devices) and, where the host
 * can, the coalesced PIO/MMIO zones of its coalescable registers. Returns whether any zone was
 * registered (the dispatcher must then drain KVM's coalesced ring).
 */
export function wireDevices(vm: Vm, pio: Bus, mmio: Bus, devices: readonly DeviceSpec[], coalesce: boolean): boolean {
  for (const spec of devices) {
    if (spec.pio) pio.register(spec.pio.base, spec.pio.length, spec.device);
    if (spec.mmio) mmio.register(spec.mmio.base, spec.mmio.length, spec.device);
    if (spec.irq !== undefined && (!Number.isInteger(spec.irq) || spec.irq < 0 || spec.irq >= IOAPIC_PINS)) {
      throw new RangeError(`device ${spec.device.name} wants irq ${spec.irq}; lines are 0–${IOAPIC_PINS - 1}`);
    }
  }
  if (!coalesce) return false;
  const pioOk = vm.checkExtension('KVM_CAP_COALESCED_PIO') > 0;
  const mmioOk = vm.checkExtension('KVM_CAP_COALESCED_MMIO') > 0;
  let coalesced = false;
  for (const spec of devices) {
    for (const z of spec.device.coalescable ?? []) {
      if (spec.pio && pioOk && !spec.stopsVcpu) {
        vm.registerCoalescedZone(BigInt(spec.pio.base + z.offset), z.length, true);
        coalesced = true;
      } else if (spec.mmio && mmioOk) {
        vm.registerCoalescedZone(spec.mmio.base + BigInt(z.offset), z.length, false);
        coalesced = true;
      }
    }
  }
  return coalesced;
}

/** The registers vCPU threads answer from shared state, and the ports that stop a vCPU. */
export function threadWiring(devices: readonly DeviceSpec[]): { fastPath: FastPathEntry[]; stopPorts: number[] } {
  const fastPath: FastPathEntry[] = [];
  const stopPorts: number[] = [];
  for (const spec of devices) {
    const state = spec.device.fastState;
    for (const r of spec.device.fastRegisters ?? []) {
      if (!state) throw new RangeError(`device ${spec.device.name} declares fast registers but no fastState`);
      const shared = state.buffer;
      if (!(shared instanceof SharedArrayBuffer)) throw new TypeError(`device ${spec.device.name}: fastState must be over a SharedArrayBuffer`);
      if (spec.pio) fastPath.push({ bus: 'pio', address: BigInt(spec.pio.base + r.offset), size: r.size, state: shared, index: r.index });
      if (spec.mmio) fastPath.push({ bus: 'mmio', address: spec.mmio.base + BigInt(r.offset), size: r.size, state: shared, index: r.index });
    }
    if (spec.stopsVcpu && spec.pio) for (let p = 0; p < spec.pio.length; p++) stopPorts.push(spec.pio.base + p);
  }
  return { fastPath, stopPorts };
}
