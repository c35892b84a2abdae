/**
 * Shorthands for `MachineOptions.devices`: a virtio device model wrapped as a `VirtioDeviceSpec`,
 * which the machine places in its virtio window (see virtio.ts).
 */
import { VirtioBlk, VirtioConsole, VirtioRng, type VirtioBlkOptions, type VirtioConsoleOptions, type VirtioRngOptions } from '@kvmpool/devices';
import type { VirtioDeviceSpec } from './virtio.js';

/** How a virtio device's queue notifies arrive (`VirtioDeviceSpec.notify`). */
export interface VirtioNotifyOption {
  /** `ioeventfd` (default: no exit, a watcher thread wakes the main thread) or `exit` (an MMIO exit). */
  notify?: 'ioeventfd' | 'exit';
}

function spec(device: VirtioDeviceSpec['virtio'], o: VirtioNotifyOption): VirtioDeviceSpec {
  return { virtio: device, ...(o.notify ? { notify: o.notify } : {}) };
}

/**
 * A virtio-blk disk over a buffer (used in place: the guest's writes land in it) or a file (`{ path, readOnly }`,
 * opened now, closed when the machine closes): `createMachine({ devices: [virtioBlk({ backing: disk })] })`.
 */
export function virtioBlk(options: VirtioBlkOptions & VirtioNotifyOption): VirtioDeviceSpec {
  const { notify, ...rest } = options;
  return spec(new VirtioBlk(rest), { ...(notify ? { notify } : {}) });
}

/** A virtio console with one port; `machine.virtioConsole(i)` is its host end (a Duplex). */
export function virtioConsole(options: VirtioConsoleOptions & VirtioNotifyOption = {}): VirtioDeviceSpec {
  const { notify, ...rest } = options;
  return spec(new VirtioConsole(rest), { ...(notify ? { notify } : {}) });
}

/** A virtio entropy device (crypto.getRandomValues, bounded per request). */
export function virtioRng(options: VirtioRngOptions & VirtioNotifyOption = {}): VirtioDeviceSpec {
  const { notify, ...rest } = options;
  return spec(new VirtioRng(rest), { ...(notify ? { notify } : {}) });
}
