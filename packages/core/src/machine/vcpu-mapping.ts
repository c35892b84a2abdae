/**
 * The main thread's own mapping of a vCPU's kvm_run area (the vCPU itself lives in a worker).
 * It lets the kicker set `immediate_exit`, and gives the VM-wide coalesced-MMIO/PIO ring,
 * which KVM maps at page KVM_COALESCED_MMIO_PAGE_OFFSET of every vCPU fd.
 */
import {
  KVM_COALESCED_MMIO, KVM_COALESCED_MMIO_RING, KVM_RUN_STRUCT, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE,
  errorFor, lastErrno, sysMmap, sysMunmap, viewOf,
} from '../ffi/index.js';

const PAGE = 4096;
const KVM_COALESCED_MMIO_PAGE_OFFSET = 2;
const RING_ENTRIES = Math.floor((PAGE - KVM_COALESCED_MMIO_RING.size) / KVM_COALESCED_MMIO.size);

export interface CoalescedWrite {
  pio: boolean;
  address: bigint;
  data: Uint8Array;
}

export class VcpuMapping {
  #address: bigint;
  readonly #size: number;
  readonly #run: Uint8Array;
  readonly #ring: DataView | undefined;
  readonly #ringBytes: Uint8Array | undefined;

  constructor(vcpuFd: number, mmapSize: number) {
    const address = sysMmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFd);
    if (address === MAP_FAILED) throw errorFor(`mmap(vcpu fd ${vcpuFd})`, lastErrno());
    this.#address = address;
    this.#size = mmapSize;
    const ab = viewOf(address, mmapSize);
    this.#run = new Uint8Array(ab);
    if (mmapSize >= (KVM_COALESCED_MMIO_PAGE_OFFSET + 1) * PAGE) {
      this.#ring = new DataView(ab, KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE, PAGE);
      this.#ringBytes = new Uint8Array(ab, KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE, PAGE);
    }
  }

  /** Sets kvm_run.immediate_exit: the vCPU's next KVM_RUN returns EINTR at once. */
  requestImmediateExit(): void {
    if (this.#address !== 0n) this.#run[KVM_RUN_STRUCT.offsets.immediate_exit] = 1;
  }

  /** Whether KVM has queued coalesced writes. */
  hasCoalesced(): boolean {
    const r = this.#ring;
    if (!r || this.#address === 0n) return false;
    return r.getUint32(KVM_COALESCED_MMIO_RING.offsets.first, true) !== r.getUint32(KVM_COALESCED_MMIO_RING.offsets.last, true);
  }

  /**
   * Takes every queued coalesced write, oldest first. The ring is VM-wide: call this from one
   * thread only (the dispatcher), before handling any exit-ring record, so that a vCPU's
   * batched writes are seen before the exit that followed them.
   */
  drainCoalesced(handle: (w: CoalescedWrite) => void): number {
    const r = this.#ring;
    const bytes = this.#ringBytes;
    if (!r || !bytes || this.#address === 0n) return 0;
    const o = KVM_COALESCED_MMIO.offsets;
    let first = r.getUint32(KVM_COALESCED_MMIO_RING.offsets.first, true);
    const last = r.getUint32(KVM_COALESCED_MMIO_RING.offsets.last, true);
    let n = 0;
    while (first !== last) {
      const at = KVM_COALESCED_MMIO_RING.size + first * KVM_COALESCED_MMIO.size;
      const len = Math.min(r.getUint32(at + o.len, true), 8);
      handle({
        pio: r.getUint32(at + o.pio, true) !== 0,
        address: r.getBigUint64(at + o.phys_addr, true),
        data: bytes.subarray(at + o.data, at + o.data + len),
      });
      first = (first + 1) % RING_ENTRIES;
      // The kernel reads `first` to see free space; publish each slot as soon as it is consumed.
      r.setUint32(KVM_COALESCED_MMIO_RING.offsets.first, first, true);
      n++;
    }
    return n;
  }

  close(): void {
    if (this.#address === 0n) return;
    sysMunmap(this.#address, this.#size);
    this.#address = 0n;
  }
}
