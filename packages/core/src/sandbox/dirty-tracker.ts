/**
 * Which pages of a sandbox VM a reset must put back, from KVM's dirty log, with the pages the
 * guest wrote while it started up kept out of the write protection.
 *
 * Why: with the plain dirty log (KVM_GET_DIRTY_LOG clears it and write-protects the pages
 * again), the first write of every call to each page the guest uses takes a write-protection
 * fault. On kvm_pvm, a fault plus its share of the log costs ~12 µs a page (measured: an OUT
 * loop that writes 16 pages a call, 32.9 µs a call without the log, 222.5 µs with it). A QuickJS
 * or musl program writes 30–40 pages a call, so faults make most of a call's time.
 *
 * How: with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on (`Vm.enableManualDirtyProtect`), reading the
 * log changes nothing, and KVM_CLEAR_DIRTY_LOG re-protects only the pages it names. The pages
 * one warm-up call of the host's choosing writes are *hot* (`capture()` at its reset), or, for a
 * Linux program without one, the pages its start-up wrote up to the capture: libc's and the
 * program's stack, data and heap, which its calls write again. A hot page is never cleared from the log,
 * so it stays writable (no fault) and is reported at every reset, which copies it back (a
 * 4 KiB copy, ~0.3 µs here). Every other page a call dirties is cleared at once, as before.
 *
 * The hot set is fixed when the pristine state is captured and never follows what calls do.
 * A set that adapted to the calls' writes would tell the next caller which pages the callers
 * before it wrote: by timing its own first writes (a hot page takes no fault), or by counting
 * its reset's pages. Here every call starts with the same pages protected and the same pages
 * writable.
 *
 * Why no write is missed:
 * - A cold page is write-protected, so the guest's first write to it sets its bit in the log.
 *   This holds from the last clear on, and the reset reads the log before it clears anything.
 * - A hot page's bit is never cleared, so every reset sees it and puts it back.
 * Both cases are the reset's own single-threaded work. The guest does not run during a
 * reset, so no write can slip in between the read of the log and a clear.
 * Where the host lacks the capability, the tracker falls back to the plain log.
 */
import type { MemorySlot } from '../memory.js';
import type { Vm } from '../vm.js';

/** What the tracker needs of a VM (a `Vm`; the unit tests pass a model of KVM's log). */
export type DirtyLogVm = Pick<Vm, 'dirtyPages' | 'dirtyBitmap' | 'clearDirtyLog' | 'enableManualDirtyProtect'>;

/** The most hot pages a VM keeps by default (1 MiB of copies a reset at most). */
export const HOT_PAGES_MAX = 256;

export class DirtyTracker {
  readonly #vm: DirtyLogVm;
  readonly #slot: MemorySlot | number;
  readonly #hotMax: number;
  /** Manual protection is on: hot pages are kept. */
  readonly manual: boolean;
  /** The hot pages, as a bitmap shaped like the log's (32-bit halves; empty until `capture()`). */
  #hot: Uint32Array | undefined;
  #hotCount = 0;
  /** The pages to clear, a bitmap shaped like the log's (made at the first use). */
  #clear: BigUint64Array | undefined;

  constructor(vm: DirtyLogVm, slot: MemorySlot | number, options: { hotMax?: number } = {}) {
    this.#vm = vm;
    this.#slot = slot;
    this.#hotMax = options.hotMax ?? HOT_PAGES_MAX;
    this.manual = this.#hotMax > 0 && vm.enableManualDirtyProtect();
  }

  /** Hot pages (writable, put back at each reset). */
  get hotPages(): number {
    return this.#hotCount;
  }

  /**
   * Empties the log and returns the pages that were in it: from here on it holds what the guest
   * writes. Every page is protected again; no page is hot.
   */
  restart(): number[] {
    this.#hot = undefined;
    this.#hotCount = 0;
    return this.#vm.dirtyPages(this.#slot);
  }

  /**
   * Returns the pages written since the last `restart()` (or since the slot was made), and makes
   * them the hot set (at most `hotMax`, lowest first); the rest are cleared and protected again.
   * Called at the capture of the pristine state (the pages start-up wrote), or, after a
   * `restart()`, at the reset of a warm-up call whose input the host chose (LinuxVmOptions.warmUp):
   * either way nothing a caller did decides the set.
   */
  capture(): number[] {
    if (!this.manual) return this.restart();
    const words = this.#vm.dirtyBitmap(this.#slot);
    const bits = halves(words);
    const hot = new Uint32Array(bits.length);
    const clear = halves((this.#clear ??= new BigUint64Array(words.length)));
    clear.fill(0);
    const out: number[] = [];
    let count = 0;
    for (let half = 0; half < bits.length; half++) {
      let v = bits[half]!;
      for (let bit = 0; v !== 0; bit++, v >>>= 1) {
        if ((v & 1) === 0) continue;
        out.push(half * 32 + bit);
        if (count < this.#hotMax) {
          hot[half] = (hot[half]! | (1 << bit)) >>> 0;
          count++;
        } else {
          clear[half] = (clear[half]! | (1 << bit)) >>> 0;
        }
      }
    }
    if (out.length > count) this.#vm.clearDirtyLog(this.#slot, this.#clear);
    this.#hot = hot;
    this.#hotCount = count;
    return out;
  }

  /**
   * The pages to put back after a call: each page written since the last reset, and every hot
   * page. Re-protects the others. Call it before the pages are put back.
   */
  take(): number[] {
    const hot = this.#hot;
    if (!this.manual || !hot) return this.#vm.dirtyPages(this.#slot);
    const words = this.#vm.dirtyBitmap(this.#slot);
    const bits = halves(words);
    const clear = halves((this.#clear ??= new BigUint64Array(words.length)));
    let clearing = false;
    const out: number[] = [];
    for (let half = 0; half < bits.length; half++) {
      const all = bits[half]!;
      const cold = (all & ~hot[half]!) >>> 0;
      clear[half] = cold;
      if (cold !== 0) clearing = true;
      let v = all;
      for (let bit = 0; v !== 0; bit++, v >>>= 1) if (v & 1) out.push(half * 32 + bit);
    }
    if (clearing) this.#vm.clearDirtyLog(this.#slot, this.#clear);
    return out;
  }
}

/** A bitmap of u64 words as 32-bit halves (little-endian: page i is bit i % 32 of half i / 32). */
function halves(words: BigUint64Array): Uint32Array {
  return new Uint32Array(words.buffer, words.byteOffset, words.length * 2);
}
