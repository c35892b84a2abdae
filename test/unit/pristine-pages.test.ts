/**
 * The sparse pristine memory (sandbox/pristine-pages.ts): it keeps only the pages that were not
 * all zeros, restores every page exactly as captured, and holds host memory for the kept pages
 * only — not for the whole guest memory.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PristinePages } from '../../packages/core/src/sandbox/pristine-pages.js';

const PAGE = 4096;

describe('pristine pages', () => {
  it('keeps only non-zero pages and restores every page as it was captured', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(63), fc.nat(PAGE - 1), fc.integer({ min: 1, max: 255 })), { maxLength: 40 }), (writes) => {
      const mem = new Uint8Array(64 * PAGE);
      for (const [page, at, v] of writes) mem[page * PAGE + at] = v;
      const original = mem.slice();
      const image = PristinePages.capture(mem);
      expect(image.size).toBe(new Set(writes.map(([p]) => p)).size);
      // Scribble over everything, then restore every page.
      mem.fill(0xa5);
      image.restore(mem, Array.from({ length: 64 }, (_, p) => p));
      expect(Buffer.from(mem.buffer).equals(Buffer.from(original.buffer))).toBe(true);
      // An update takes the named pages again and keeps the rest as captured.
      mem[5 * PAGE] = 9;
      mem[6 * PAGE] = 9;
      const next = image.updated(mem, [5]);
      mem.fill(0);
      next.restore(mem, [5, 6]);
      expect(mem[5 * PAGE]).toBe(9);
      expect(mem[6 * PAGE]).toBe(original[6 * PAGE]);
    }), { numRuns: 50 });
  });

  it('an 8 MiB guest memory with a few touched pages costs a few pages, not 8 MiB', () => {
    const mem = new Uint8Array(new SharedArrayBuffer(8 << 20, { maxByteLength: 8 << 20 }));
    for (const p of [0, 1, 256, 2047]) mem[p * PAGE + 17] = 1;
    const before = process.memoryUsage().arrayBuffers;
    const image = PristinePages.capture(mem);
    expect(image.size).toBe(4);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * PAGE);
  });

  it('refuses a view that is not whole pages', () => {
    expect(() => PristinePages.capture(new Uint8Array(PAGE + 1))).toThrow(RangeError);
  });
});
