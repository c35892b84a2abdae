/** `Kvm`: the system handle (/dev/kvm). It makes VMs and answers questions about the host. */
import { existsSync } from 'node:fs';
import { KVM_CAPS, type KvmCapName } from './caps/capability-table.js';
import { ClosedError, KvmUnsupportedError } from './errors.js';
import {
  O_CLOEXEC, O_RDWR, decodeMsrs, encodeMsrs, errorFor, ioctlInt, ioctlPtr, lastErrno, readCpuidList,
  readMsrIndexList, sysClose, sysOpen, type KvmCpuidEntry,
} from './ffi/index.js';
import { Vm, type VmOptions } from './vm.js';

/** The KVM API version kvmpool speaks (`KVM_GET_API_VERSION` must return it). */
export const KVM_API_VERSION = 12;

/** The kernel module that serves /dev/kvm, from /sys/module. */
export type KvmModule = 'kvm_intel' | 'kvm_amd' | 'kvm_pvm' | 'unknown';

/** Which KVM module serves /dev/kvm, read from `/sys/module` (`sysModule` for tests). */
export function detectKvmModule(sysModule = '/sys/module'): KvmModule {
  for (const m of ['kvm_intel', 'kvm_amd', 'kvm_pvm'] as const) {
    if (existsSync(`${sysModule}/${m}`)) return m;
  }
  return 'unknown';
}

const OPEN_HINTS: Record<string, string> = {
  ENOENT: 'no KVM device: load the module (modprobe kvm_intel or kvm_amd) and check that virtualization is enabled',
  EACCES: 'permission denied: add your user to the kvm group (usermod -aG kvm $USER) or run with access to the device',
  EPERM: 'operation not permitted: the device is there but this process may not use it (container or seccomp policy?)',
  ENODEV: 'the KVM module is loaded but has no usable virtualization support',
};

/**
 * The system handle: an open /dev/kvm. It makes VMs (`createVm()`) and answers questions about the host
 * (capabilities, CPUID, MSRs). It owns its fd; `close()` is idempotent and `using kvm = Kvm.open()` closes it.
 * Throws `KvmError` naming `open(/dev/kvm)` with a hint (the kvm group, a missing module) when the device cannot
 * be opened, and `KvmUnsupportedError` for another API version.
 */
export class Kvm implements Disposable {
  #fd: number;
  /** The device path opened, `/dev/kvm` by default. */
  readonly path: string;
  /** `KVM_GET_API_VERSION`: always 12 (`KVM_API_VERSION`). */
  readonly apiVersion: number;
  /** The kernel module behind the device (`kvm_intel`, `kvm_amd`, `kvm_pvm`). */
  readonly module: KvmModule;
  #mmapSize = 0;

  private constructor(fd: number, path: string, apiVersion: number) {
    this.#fd = fd;
    this.path = path;
    this.apiVersion = apiVersion;
    this.module = detectKvmModule();
  }

  /** Opens the KVM device and checks that it speaks API version 12. */
  static open(path = '/dev/kvm'): Kvm {
    const fd = sysOpen(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      const errno = lastErrno();
      const probe = errorFor(`open(${path})`, errno);
      throw errorFor(`open(${path})`, errno, OPEN_HINTS[probe.code]);
    }
    let version: number;
    try {
      version = ioctlInt(fd, 'KVM_GET_API_VERSION');
    } catch (e) {
      sysClose(fd);
      throw e;
    }
    if (version !== KVM_API_VERSION) {
      sysClose(fd);
      throw new KvmUnsupportedError('api-version', `${path}: KVM_GET_API_VERSION returned ${version}, kvmpool needs ${KVM_API_VERSION}`);
    }
    return new Kvm(fd, path, version);
  }

  /** The system fd (for advanced use; owned by this handle). */
  get fd(): number {
    if (this.#fd < 0) throw new ClosedError('Kvm');
    return this.#fd;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific positive value. */
  checkExtension(cap: KvmCapName | number): number {
    const nr = typeof cap === 'number' ? cap : KVM_CAPS[cap];
    return ioctlInt(this.fd, 'KVM_CHECK_EXTENSION', nr);
  }

  /** Every KVM_CAP_* this kvmpool knows, with the host's answer (0 = absent). */
  capabilities(): Record<KvmCapName, number> {
    const out = {} as Record<KvmCapName, number>;
    for (const name of Object.keys(KVM_CAPS) as KvmCapName[]) out[name] = this.checkExtension(name);
    return out;
  }

  /** Size of the per-vCPU kvm_run mapping. */
  vcpuMmapSize(): number {
    if (this.#mmapSize === 0) this.#mmapSize = ioctlInt(this.fd, 'KVM_GET_VCPU_MMAP_SIZE');
    return this.#mmapSize;
  }

  /** Recommended and maximum vCPU counts per VM. */
  vcpuLimits(): {
    /** KVM_CAP_NR_VCPUS: the count KVM recommends per VM. */
    recommended: number;
    /** KVM_CAP_MAX_VCPUS: the most vCPUs one VM may have. */
    max: number;
    /** KVM_CAP_MAX_VCPU_ID: vCPU ids are below this. */
    maxId: number;
  } {
    const recommended = this.checkExtension('KVM_CAP_NR_VCPUS') || 4;
    const max = this.checkExtension('KVM_CAP_MAX_VCPUS') || recommended;
    const maxId = this.checkExtension('KVM_CAP_MAX_VCPU_ID') || max;
    return { recommended, max, maxId };
  }

  /** KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can present to a guest. */
  supportedCpuid(): KvmCpuidEntry[] {
    return readCpuidList(this.fd, 'KVM_GET_SUPPORTED_CPUID');
  }

  /** KVM_GET_MSR_INDEX_LIST: MSRs a VMM may save and restore per vCPU. */
  msrIndexList(): number[] {
    return readMsrIndexList(this.fd, 'KVM_GET_MSR_INDEX_LIST');
  }

  /** KVM_GET_MSR_FEATURE_INDEX_LIST: feature MSRs readable from the system fd (empty if unsupported). */
  featureMsrIndexList(): number[] {
    if (!this.checkExtension('KVM_CAP_GET_MSR_FEATURES')) return [];
    return readMsrIndexList(this.fd, 'KVM_GET_MSR_FEATURE_INDEX_LIST');
  }

  /**
   * Reads feature MSRs through the system fd (KVM_GET_MSRS on /dev/kvm). The kernel stops at
   * the first MSR it cannot read; the map holds only the MSRs it returned.
   */
  featureMsrs(indices: readonly number[]): Map<number, bigint> {
    const out = new Map<number, bigint>();
    if (indices.length === 0 || !this.checkExtension('KVM_CAP_GET_MSR_FEATURES')) return out;
    // Read one at a time: a batch stops at the first unreadable index.
    for (const index of indices) {
      const bytes = encodeMsrs([{ index, data: 0n }]);
      const n = ioctlPtr(this.fd, 'KVM_GET_MSRS', bytes);
      if (n === 1) {
        const [entry] = decodeMsrs(bytes, 1);
        if (entry) out.set(index, entry.data);
      }
    }
    return out;
  }

  /** Creates a VM (KVM_CREATE_VM). The VM owns its fd; close it with `vm.close()`. */
  createVm(options: VmOptions = {}): Vm {
    const fd = ioctlInt(this.fd, 'KVM_CREATE_VM', options.type ?? 0);
    return Vm.fromFd(this, fd, options);
  }

  /**
   * A handle on a VM whose fd another handle owns — e.g. in a vCPU worker thread, which must
   * create its vCPU itself. Closing it closes only the vCPUs it created.
   */
  attachVm(vmFd: number): Vm {
    return new Vm(this, vmFd, false);
  }

  /** Closes the system fd. VMs made from it keep their own fds. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    sysClose(this.#fd);
    this.#fd = -1;
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
