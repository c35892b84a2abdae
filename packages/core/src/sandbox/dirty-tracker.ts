/**
 * Which pages of a sandbox VM a reset must put back, from KVM's dirty log, with the pages a
 * guest writes on every call kept out of the write protection.
 *
 * Why: with the plain dirty log (KVM_GET_DIRTY_LOG clears it and write-protects the pages
 * again), the first write of every call to each page the guest uses takes a write-protection
 * fault. On kvm_pvm, a fault plus its share of the log costs ~12 µs a page (measured: an OUT
 * loop that writes 16 pages a call, 32.9 µs a call without the log, 222.5 µs with it). A QuickJS
 * or musl program writes 30–40 pages a call, so faults make most of a call's time.
 *
 * How: with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on (`Vm.enableManualDirtyProtect`), reading
 * the log changes nothing, and KVM_CLEAR_DIRTY_LOG re-protects only the pages it names. A page
 * found dirty in two resets in a row becomes *hot*. It is never cleared from the log, so it
 * stays writable (no fault) and is reported at every reset, which puts it back: a 4 KiB copy,
 * ~0.3 µs here. Every SWEEP_EVERY-th reset compares the hot pages with their pristine copies
 * instead (~1.3 µs a page). Those the call left unchanged are cleared (protected again), so a
 * page the guest stopped writing goes cold. Every other dirty page is cleared at once, as before.
 *
 * Why no write is missed:
 * - A cold page is write-protected, so the guest's first write to it sets its bit in the log.
 *   This holds from the last clear on, and the reset reads the log before it clears anything.
 * - A hot page's bit is never cleared, so every reset sees it and compares its contents.
 * Both cases are the reset's own single-threaded work. The guest does not run during a
 * reset, so no write can slip in between the read of the log and a clear.
 * Where the host lacks the capability, the tracker falls back to the plain log.
 */
import type { MemorySlot } from '../memory.js';
import type { Vm } from '../vm.js';

/** What the tracker needs of a VM (a `Vm`; the unit tests pass a model of KVM's log). */
export type DirtyLogVm = Pick<Vm, 'dirtyPages' | 'dirtyBitmap' | 'clearDirtyLog' | 'enableManualDirtyProtect'>;

/** The most hot pages a VM keeps by default (1 MiB of compares a reset at worst). */
export const HOT_PAGES_MAX = 256;
/** How often (in resets) the hot pages are compared, and the unchanged ones protected again. */
export const SWEEP_EVERY = 16;

export class DirtyTracker {
  readonly #vm: DirtyLogVm;
  readonly #slot: MemorySlot | number;
  readonly #hotMax: number;
  /** Manual protection is on: hot pages are kept. */
  readonly manual: boolean;
  /** The hot pages. */
  readonly #hot = new Set<number>();
  /** Resets since the last sweep of the hot pages. */
  #sinceSweep = 0;
  /** Cold pages found dirty at the last reset (a second time makes them hot). */
  #prev = new Set<number>();
  /** The pages to clear, as a bitmap shaped like the log's (made at the first take). */
  #clear: BigUint64Array | undefined;

  constructor(vm: DirtyLogVm, slot: MemorySlot | number, options: { hotMax?: number } = {}) {
    this.#vm = vm;
    this.#slot = slot;
    this.#hotMax = options.hotMax ?? HOT_PAGES_MAX;
    this.manual = this.#hotMax > 0 && vm.enableManualDirtyProtect();
  }

  /** Hot pages now (writable, compared at each reset). */
  get hotPages(): number {
    return this.#hot.size;
  }

  /**
   * Empties the log and returns the pages that were in it: from here on it holds what the guest
   * writes. Every page is protected again; no page stays hot. Call this when the pristine
   * copy is (re)taken.
   */
  restart(): number[] {
    this.#hot.clear();
    this.#prev.clear();
    this.#sinceSweep = 0;
    return this.#vm.dirtyPages(this.#slot);
  }

  /**
   * The pages to put back after a call: each page written since the last reset, and every hot
   * page — but at a sweep, the hot pages `pristine(page)` finds unchanged are protected again
   * instead. Re-protects the cold ones. Call this before the pages are put back, so that
   * `pristine` sees what the call left.
   */
  take(pristine: (page: number) => boolean): number[] {
    if (!this.manual) return this.#vm.dirtyPages(this.#slot);
    const vm = this.#vm;
    const words = vm.dirtyBitmap(this.#slot);
    // 32-bit views of the two bitmaps (little-endian: page i is bit i % 32 of half i / 32).
    const bits = new Uint32Array(words.buffer, words.byteOffset, words.length * 2);
    const clearWords = (this.#clear ??= new BigUint64Array(words.length));
    const clear = new Uint32Array(clearWords.buffer, clearWords.byteOffset, clearWords.length * 2);
    clear.fill(0);
    let clearing = false;
    const out: number[] = [];
    const prev = this.#prev;
    const next = new Set<number>();
    const hot = this.#hot;
    const sweep = ++this.#sinceSweep >= SWEEP_EVERY;
    if (sweep) this.#sinceSweep = 0;
    for (let half = 0; half < bits.length; half++) {
      let v = bits[half]!;
      for (let bit = 0; v !== 0; bit++, v >>>= 1) {
        if ((v & 1) === 0) continue;
        const page = half * 32 + bit;
        if (hot.has(page)) {
          if (sweep && pristine(page)) {
            hot.delete(page);
            clear[half] = (clear[half]! | (1 << bit)) >>> 0;
            clearing = true;
          } else {
            out.push(page);
          }
          continue;
        }
        out.push(page);
        if (prev.has(page) && hot.size < this.#hotMax) {
          hot.add(page);
        } else {
          next.add(page);
          clear[half] = (clear[half]! | (1 << bit)) >>> 0;
          clearing = true;
        }
      }
    }
    this.#prev = next;
    if (clearing) vm.clearDirtyLog(this.#slot, clearWords);
    return out;
  }
}
