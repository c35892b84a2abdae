/**
 * What a worker thread opens for a VM that the main thread must close if the thread is ended
 * (terminated, or dead of an uncaught error) before it closes them itself: a /dev/kvm fd, a VM
 * fd, a vCPU fd with its kvm_run mapping, a POSIX timer. Used by the Machine's vCPU threads
 * (machine/vcpu-handle.ts) and the SandboxPool's workers (sandbox/pool-seat.ts).
 *
 * The handshake, one word of OWNED bits in shared memory:
 * - the thread reports the numbers (fds, the mapping's address and size, the timer id), then
 *   sets the bits of what it holds;
 * - the thread clears a resource's bit *before* it closes that resource (`closeOwned`);
 * - the main thread takes the bits that are left (`reclaimOwned`, an Atomics.exchange to 0)
 *   only after the thread has ended (its `exit` event: nothing of it runs any more), and
 *   closes those.
 * Clearing before closing means a thread ended between the two leaks that one resource, while
 * clearing after would let the main thread close a number the thread had already closed — and
 * that another thread of the process may have been given meanwhile (closing a stranger's fd or
 * unmapping a stranger's pages). The window is a few JavaScript instructions on a clean stop.
 * While a bit is set, its fd stays open (so its number cannot be reused) and its mapping stays
 * mapped, so what the main thread closes is exactly what the thread opened.
 *
 * Memory ordering: the thread's plain stores of the numbers come before its Atomics.store of
 * the bits; the main thread reads the bits with Atomics.exchange before the numbers, and reads
 * them after the thread has been joined anyway.
 *
 * POSIX timers (timer_create with SIGEV_THREAD_ID) belong to the process, not to the thread
 * they signal: Linux frees them only when the whole process exits (exit_itimers runs for the
 * last thread of the group), so a timer of an ended thread stays in /proc/self/timers until
 * someone calls timer_delete on it — the main thread does here.
 */
import { sysClose, sysMunmap, sysTimerDelete } from './ffi/index.js';

/** One bit per resource a thread may hold. */
export const OWNED = { vcpu: 1, kvm: 2, vm: 4, timer: 8 } as const;

/** What a thread holds, reported once it has them (numbers and addresses in this process). */
export interface OwnedResources {
  vcpuFd: number;
  kvmFd: number;
  /** The thread's kvm_run mapping (closing the vCPU unmaps it). */
  runAddress: bigint;
  runSize: number;
  /** The VM fd, where the thread owns it (a Machine's vCPU thread only attaches to it). */
  vmFd?: number;
  /** The thread's POSIX timer id, if it has one. */
  timerId?: bigint;
}

/** The thread's side: clears `bit` in `words[index]`, then closes the resource. */
export function closeOwned(words: Int32Array, index: number, bit: number, close: () => void): void {
  Atomics.and(words, index, ~bit);
  close();
}

/**
 * The main thread's side, once the thread has ended: closes whatever `words[index]` still marks
 * as owned (timer, kvm_run mapping and vCPU fd, VM fd, /dev/kvm fd, in that order) and clears
 * the word, so a second call closes nothing. Returns the bits it found.
 */
export function reclaimOwned(words: Int32Array, index: number, r: OwnedResources): number {
  const bits = Atomics.exchange(words, index, 0);
  if (bits & OWNED.timer && r.timerId !== undefined) sysTimerDelete(r.timerId);
  if (bits & OWNED.vcpu) {
    sysMunmap(r.runAddress, r.runSize);
    sysClose(r.vcpuFd);
  }
  if (bits & OWNED.vm && r.vmFd !== undefined) sysClose(r.vmFd);
  if (bits & OWNED.kvm) sysClose(r.kvmFd);
  return bits;
}

/** Where an OwnedBlock keeps each number (BigInt64 slots after the bits word). */
const SLOT = { kvmFd: 0, vmFd: 1, vcpuFd: 2, runAddress: 3, runSize: 4, timerId: 5 } as const;
const SLOTS_AT = 8;

/**
 * A small shared block for a thread that reports its resources one by one as it makes them:
 *   [ bits: Int32 | pad | kvmFd, vmFd, vcpuFd, runAddress, runSize, timerId: BigInt64 ]
 * Made by the main thread (`OwnedBlock.create()`), passed to the thread as its buffer.
 */
export class OwnedBlock {
  static readonly BYTES = SLOTS_AT + 8 * Object.keys(SLOT).length;
  readonly buffer: SharedArrayBuffer;
  readonly #bits: Int32Array;
  readonly #n: BigInt64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.#bits = new Int32Array(buffer, 0, 1);
    this.#n = new BigInt64Array(buffer, SLOTS_AT, Object.keys(SLOT).length);
  }

  static create(): OwnedBlock {
    return new OwnedBlock(new SharedArrayBuffer(OwnedBlock.BYTES));
  }

  /** The thread's side: records the numbers of resource `bit` (just made), then marks it owned. */
  own(bit: number, r: Partial<OwnedResources>): void {
    for (const [k, v] of Object.entries(r) as [keyof typeof SLOT, number | bigint][]) Atomics.store(this.#n, SLOT[k], BigInt(v));
    Atomics.or(this.#bits, 0, bit);
  }

  /** The thread's side: clears `bit`, then closes the resource (see the handshake above). */
  release(bit: number, close: () => void): void {
    closeOwned(this.#bits, 0, bit, close);
  }

  /** What is still marked as owned. */
  get bits(): number {
    return Atomics.load(this.#bits, 0);
  }

  /** The main thread's side, only once the thread has ended: closes what it still owned. */
  reclaim(): number {
    const n = (k: keyof typeof SLOT): bigint => Atomics.load(this.#n, SLOT[k]);
    return reclaimOwned(this.#bits, 0, {
      kvmFd: Number(n('kvmFd')), vmFd: Number(n('vmFd')), vcpuFd: Number(n('vcpuFd')),
      runAddress: n('runAddress'), runSize: Number(n('runSize')), timerId: n('timerId'),
    });
  }
}

/** Closes a resource through `owned` when there is one (clearing its bit first), else just closes it. */
export function releaseVia(owned: OwnedBlock | undefined, bit: number, close: () => void): void {
  if (owned) owned.release(bit, close);
  else close();
}

/**
 * Closes what a sandbox VM's create() made before it failed, innermost first: the vCPU (and its
 * mapping), the VM, the KVM fd — each marked released in `owned` before it is closed.
 */
export function releaseMade(owned: OwnedBlock | undefined, made: { kvm: { close(): void }; vm?: { close(): void } | undefined; vcpu?: { close(): void } | undefined }): void {
  const { kvm, vm, vcpu } = made;
  if (vcpu) releaseVia(owned, OWNED.vcpu, () => vcpu.close());
  if (vm) releaseVia(owned, OWNED.vm, () => vm.close());
  releaseVia(owned, OWNED.kvm, () => kvm.close());
}
