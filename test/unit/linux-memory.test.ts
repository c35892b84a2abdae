// The mmap allocator's free list (syscalls/memory.ts freeRange / takeRange): after any sequence
// of frees and takes it covers exactly what a page-set model covers, sorted, disjoint, merged.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { freeRange, takeRange } from '@kvmpool/core/internal';

const N = 64;
const range = fc.tuple(fc.integer({ min: 0, max: N }), fc.integer({ min: 0, max: N })).map(([a, b]) => (a <= b ? [a, b] : [b, a]) as [number, number]);
const op = fc.tuple(fc.constantFrom('free', 'take'), range);

function covered(list: [number, number][]): boolean[] {
  const out = new Array<boolean>(N).fill(false);
  for (const [a, b] of list) for (let p = a; p < b; p++) out[p] = true;
  return out;
}

describe('mmap free list', () => {
  it('matches a page-set model and stays sorted, disjoint and merged (no two ranges touch)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const list: [number, number][] = [];
        const model = new Array<boolean>(N).fill(false);
        for (const [kind, [a, b]] of ops) {
          if (kind === 'free') {
            freeRange(list, a, b);
            for (let p = a; p < b; p++) model[p] = true;
          } else if (a < b) {
            // takeRange is only called with a non-empty range (allocate and MAP_FIXED take size > 0)
            takeRange(list, a, b);
            for (let p = a; p < b; p++) model[p] = false;
          }
          expect(covered(list)).toEqual(model);
          for (const [n, [x, y]] of list.entries()) {
            expect(x).toBeLessThan(y);
            if (n > 0) expect(list[n - 1]![1]).toBeLessThan(x);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('freeRange of an empty or reversed range changes nothing; takeRange of what is not free changes nothing', () => {
    const list: [number, number][] = [[10, 20]];
    freeRange(list, 5, 5);
    freeRange(list, 9, 3);
    takeRange(list, 30, 40);
    takeRange(list, 0, 10);
    expect(list).toEqual([[10, 20]]);
    freeRange(list, 20, 25); // touching: merged
    freeRange(list, 0, 10);
    expect(list).toEqual([[0, 25]]);
    takeRange(list, 5, 7);
    expect(list).toEqual([[0, 5], [7, 25]]);
  });
});
