/**
 * The reset's dirty-page tracker (core/src/sandbox/dirty-tracker.ts) against a model of KVM's
 * dirty log: whatever pages start-up and then a sequence of calls write, with whatever values,
 * the pages the tracker hands back make memory pristine again — hot pages included, with
 * manual protection and without, with a hot set that fills up — and every call starts with
 * the same pages writable, whatever the calls before it wrote.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DirtyTracker, type DirtyLogVm } from '@kvmpool/core/internal';

const PAGES = 192; // three bitmap words

/**
 * KVM's log for one slot. A write to a protected page faults: KVM marks the page dirty and makes
 * it writable. Later writes to it are not seen. Without manual protection, reading the log clears
 * it and protects the pages again; with it, only KVM_CLEAR_DIRTY_LOG does.
 */
class LogModel implements DirtyLogVm {
  readonly dirty = new Array<boolean>(PAGES).fill(false);
  readonly writable = new Array<boolean>(PAGES).fill(false);
  manual = false;
  constructor(readonly canManual: boolean) {}
  write(page: number): void {
    if (!this.writable[page]) {
      this.dirty[page] = true;
      this.writable[page] = true;
    }
  }
  enableManualDirtyProtect(): boolean {
    this.manual = this.canManual;
    return this.manual;
  }
  dirtyBitmap(): BigUint64Array {
    const words = new BigUint64Array(PAGES / 64);
    for (let p = 0; p < PAGES; p++) if (this.dirty[p]) words[p >> 6] = words[p >> 6]! | (1n << BigInt(p & 63));
    if (!this.manual) this.#clear(words);
    return words;
  }
  clearDirtyLog(_slot: unknown, words: BigUint64Array): void {
    if (!this.manual) throw new Error('clearDirtyLog without manual protection');
    this.#clear(words);
  }
  dirtyPages(): number[] {
    const words = this.dirtyBitmap();
    const out: number[] = [];
    for (let p = 0; p < PAGES; p++) if ((words[p >> 6]! >> BigInt(p & 63)) & 1n) out.push(p);
    if (this.manual) this.#clear(words);
    return out;
  }
  /** As the kernel does: only pages named in `words` whose bit is set are cleared and protected. */
  #clear(words: BigUint64Array): void {
    for (let p = 0; p < PAGES; p++) {
      if ((words[p >> 6]! >> BigInt(p & 63)) & 1n && this.dirty[p]) {
        this.dirty[p] = false;
        this.writable[p] = false;
      }
    }
  }
}

/** One call: the pages it writes and the values (small, so a write often puts back the pristine value). */
const call = fc.array(fc.record({ page: fc.nat(PAGES - 1), value: fc.nat(3) }), { maxLength: 12 });
/** Start-up's writes (which decide the hot set), then the calls. */
const run = fc.tuple(call, fc.array(call, { minLength: 1, maxLength: 40 }));

function replay(startUp: { page: number; value: number }[], seq: { page: number; value: number }[][], canManual: boolean, hotMax: number): void {
  const vm = new LogModel(canManual);
  const tracker = new DirtyTracker(vm, 0, { hotMax });
  const mem = Array.from({ length: PAGES }, (_, p) => p % 3);
  tracker.restart();
  for (const w of startUp) {
    vm.write(w.page);
    mem[w.page] = w.value;
  }
  tracker.capture();
  const pristine = [...mem]; // the capture: what start-up left is the pristine state
  const hot = tracker.hotPages;
  expect(hot).toBeLessThanOrEqual(Math.min(hotMax, new Set(startUp.map((w) => w.page)).size));
  // What every call starts with: which pages are writable (a later call must not see earlier ones).
  const writableAtStart = [...vm.writable];
  for (const [i, writes] of seq.entries()) {
    for (const w of writes) {
      vm.write(w.page);
      mem[w.page] = w.value;
    }
    for (const p of tracker.take()) mem[p] = pristine[p]!;
    expect(mem, `after call ${i}`).toEqual(pristine);
    expect(vm.writable, `protection after call ${i}`).toEqual(writableAtStart);
    expect(tracker.hotPages).toBe(hot);
  }
}

describe('dirty tracker', () => {
  it('with manual protection: memory pristine after every reset, and every call starts with the same pages writable', () => {
    fc.assert(fc.property(run, fc.integer({ min: 1, max: 8 }), ([startUp, seq], hotMax) => replay(startUp, seq, true, hotMax)), { numRuns: 300 });
  });

  it('without it (or with no hot pages allowed), the plain log does the same', () => {
    fc.assert(fc.property(run, ([startUp, seq]) => {
      replay(startUp, seq, false, 8);
      replay(startUp, seq, true, 0);
    }), { numRuns: 100 });
  });

  it('the pages start-up wrote are hot (writable, reported at every reset); the others are protected again at once', () => {
    const vm = new LogModel(true);
    const tracker = new DirtyTracker(vm, 0);
    tracker.restart();
    vm.write(5);
    vm.write(70);
    expect(tracker.capture()).toEqual([5, 70]);
    expect(tracker.hotPages).toBe(2);
    expect([vm.writable[5], vm.writable[70]]).toEqual([true, true]);
    expect(tracker.take()).toEqual([5, 70]); // not written since, still put back
    vm.write(9);
    expect(tracker.take()).toEqual([5, 9, 70]);
    expect(vm.writable[9]).toBe(false); // cold: protected again
    vm.write(9);
    expect(tracker.take()).toEqual([5, 9, 70]); // and still cold: no call makes a page hot
    expect(tracker.hotPages).toBe(2);
  });
});
