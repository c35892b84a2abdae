/**
 * The main thread's own mapping of a vCPU's kvm_run area (the vCPU itself lives in a worker).
 * It lets the kicker set `immediate_exit`, and gives the VM-wide coalesced-MMIO/PIO ring,
 * which KVM maps at page KVM_COALESCED_MMIO_PAGE_OFFSET of every vCPU fd.
 */
import { CoalescedRing, KVM_COALESCED_MMIO_PAGE_OFFSET } from '../coalesced-ring.js';
import {
  KVM_RUN_STRUCT, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, errorFor, lastErrno, sysMmap, sysMunmap, viewOf,
} from '../ffi/index.js';

const PAGE = 4096;

export class VcpuMapping {
  #address: bigint;
  readonly #size: number;
  readonly #run: Uint8Array;
  readonly #ring: CoalescedRing | undefined;

  constructor(vcpuFd: number, mmapSize: number) {
    const address = sysMmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFd);
    if (address === MAP_FAILED) throw errorFor(`mmap(vcpu fd ${vcpuFd})`, lastErrno());
    this.#address = address;
    this.#size = mmapSize;
    const ab = viewOf(address, mmapSize);
    this.#run = new Uint8Array(ab);
    if (mmapSize >= (KVM_COALESCED_MMIO_PAGE_OFFSET + 1) * PAGE) {
      this.#ring = new CoalescedRing(new Uint8Array(ab, KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE, PAGE));
    }
  }

  /** Sets kvm_run.immediate_exit: the vCPU's next KVM_RUN returns EINTR at once. */
  requestImmediateExit(): void {
    if (this.#address !== 0n) this.#run[KVM_RUN_STRUCT.offsets.immediate_exit] = 1;
  }

  /**
   * The VM-wide coalesced ring through this mapping (undefined once closed, or if the mapping
   * is too small to hold it). Read it only under the coalesced lock.
   */
  get coalesced(): CoalescedRing | undefined {
    return this.#address === 0n ? undefined : this.#ring;
  }

  close(): void {
    if (this.#address === 0n) return;
    sysMunmap(this.#address, this.#size);
    this.#address = 0n;
  }
}
