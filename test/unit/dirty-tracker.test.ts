/**
 * The reset's dirty-page tracker (core/src/sandbox/dirty-tracker.ts) against a model of KVM's
 * dirty log: whatever pages a sequence of calls writes, with whatever values, the pages the
 * tracker hands back are exactly enough to make memory pristine again — hot pages included,
 * with manual protection and without, with a hot set that fills up.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DirtyTracker, SWEEP_EVERY, type DirtyLogVm } from '@kvmpool/core/internal';

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
  #clear(words: BigUint64Array): void {
    for (let p = 0; p < PAGES; p++) {
      if ((words[p >> 6]! >> BigInt(p & 63)) & 1n) {
        this.dirty[p] = false;
        this.writable[p] = false;
      }
    }
  }
}

/** One call: the pages it writes and the values (small, so a write often puts back the pristine value). */
const call = fc.array(fc.record({ page: fc.nat(PAGES - 1), value: fc.nat(3) }), { maxLength: 12 });
/** Sequences that repeat a few calls, so that pages go hot, stay hot and go cold again. */
const calls = fc.tuple(fc.array(call, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(3), { minLength: SWEEP_EVERY + 2, maxLength: 3 * SWEEP_EVERY, size: 'max' }))
  .map(([pool, picks]) => picks.map((i) => pool[i % pool.length]!));

function replay(seq: { page: number; value: number }[][], canManual: boolean, hotMax: number): { hotSeen: number } {
  const vm = new LogModel(canManual);
  const tracker = new DirtyTracker(vm, 0, { hotMax });
  const pristine = Array.from({ length: PAGES }, (_, p) => p % 3);
  const mem = [...pristine];
  tracker.restart();
  let hotSeen = 0;
  for (const [i, writes] of seq.entries()) {
    for (const w of writes) {
      vm.write(w.page);
      mem[w.page] = w.value;
    }
    for (const p of tracker.take((page) => mem[page] === pristine[page])) mem[p] = pristine[p]!;
    expect(mem, `after call ${i}`).toEqual(pristine);
    hotSeen = Math.max(hotSeen, tracker.hotPages);
  }
  return { hotSeen };
}

describe('dirty tracker', () => {
  it('with manual protection, every reset leaves memory pristine (pages going hot, staying hot, going cold)', () => {
    fc.assert(fc.property(calls, fc.integer({ min: 1, max: 8 }), (seq, hotMax) => {
      const { hotSeen } = replay(seq, true, hotMax);
      expect(hotSeen).toBeLessThanOrEqual(hotMax);
    }), { numRuns: 300 });
  });

  it('without it (or with no hot pages allowed), the plain log does the same', () => {
    fc.assert(fc.property(calls, (seq) => {
      expect(replay(seq, false, 8).hotSeen).toBe(0);
      expect(replay(seq, true, 0).hotSeen).toBe(0);
    }), { numRuns: 100 });
  });

  it('a page written in two resets in a row goes hot; one left unchanged goes cold at the next sweep', () => {
    const vm = new LogModel(true);
    const tracker = new DirtyTracker(vm, 0);
    tracker.restart();
    vm.write(5);
    expect(tracker.take(() => false)).toEqual([5]);
    expect(vm.writable[5]).toBe(false); // cold: protected again
    vm.write(5);
    expect(tracker.take(() => false)).toEqual([5]);
    expect(tracker.hotPages).toBe(1);
    expect(vm.writable[5]).toBe(true); // hot: no fault next time, and still reported
    for (let i = 0; i < SWEEP_EVERY - 3; i++) expect(tracker.take(() => true)).toEqual([5]); // resets 3 to 15
    expect(tracker.take(() => true)).toEqual([]); // reset 16, the sweep: unchanged, so protected again
    expect(tracker.hotPages).toBe(0);
    expect(vm.writable[5]).toBe(false);
  });
});
