/**
 * The sparse pristine image (sandbox/pristine-image.ts): it keeps only the pages that were not
 * all zeros, restores every page exactly as captured, and holds host memory for the kept pages
 * only — not for the whole guest memory.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PristineImage } from '../../packages/core/src/sandbox/pristine-image.js';

const PAGE = 4096;

describe('pristine image', () => {
  it('keeps only non-zero pages and restores every page as it was captured', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(63), fc.nat(PAGE - 1), fc.integer({ min: 1, max: 255 })), { maxLength: 40 }), (writes) => {
      const mem = new Uint8Array(64 * PAGE);
      for (const [page, at, v] of writes) mem[page * PAGE + at] = v;
      const original = mem.slice();
      const image = new PristineImage(mem);
      expect(image.storedPages).toBe(new Set(writes.map(([p]) => p)).size);
      // Scribble over everything, then restore page by page.
      mem.fill(0xa5);
      for (let p = 0; p < 64; p++) image.restorePage(mem, p);
      expect(Buffer.from(mem.buffer).equals(Buffer.from(original.buffer))).toBe(true);
      expect(Buffer.from(image.read(PAGE - 3, 10)).equals(Buffer.from(original.subarray(PAGE - 3, PAGE + 7)))).toBe(true);
    }), { numRuns: 50 });
  });

  it('an 8 MiB guest memory with a few touched pages costs a few pages, not 8 MiB', () => {
    const mem = new Uint8Array(new SharedArrayBuffer(8 << 20, { maxByteLength: 8 << 20 }));
    for (const p of [0, 1, 256, 2047]) mem[p * PAGE + 17] = 1;
    const image = new PristineImage(mem);
    expect(image.storedPages).toBe(4);
    expect(image.bytes).toBeLessThan(4 * PAGE + 2048 * 4 + 1);
  });

  it('refuses a view that is not whole pages', () => {
    expect(() => new PristineImage(new Uint8Array(PAGE + 1))).toThrow(RangeError);
  });
});
