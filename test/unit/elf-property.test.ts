/**
 * Property tests of the ELF parser: whatever the bytes — arbitrary, or a valid SDK image with
 * fields and bytes mutated, or cut short — parseElf returns an image or throws ElfError, never
 * another exception, and in time linear in the input (a hang fails the test's time limit).
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ElfError, parseElf, symbolize } from '@kvmpool/core/internal';
import { buildSandboxGuest } from '../support/build-c.js';

const good = new Uint8Array(readFileSync(buildSandboxGuest('hostile-guest.c')));
const header = new DataView(good.buffer, good.byteOffset);
const phoff = Number(header.getBigUint64(32, true));
const shoff = Number(header.getBigUint64(40, true));

/** Runs parseElf; returns 'ok' or 'ElfError', and rethrows anything else (which fails the property). */
function outcome(bytes: Uint8Array): 'ok' | 'ElfError' {
  try {
    const img = parseElf(bytes, 'fuzz');
    symbolize(img, img.entry);
    return 'ok';
  } catch (e) {
    if (e instanceof ElfError) return 'ElfError';
    throw e;
  }
}

/** Interesting values for a header or table field. */
const field = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.constantFrom(0n, 1n, 0x7fn, 0xffn, 0xffffn, 0xffff_ffffn, 1n << 63n, (1n << 64n) - 1n, BigInt(good.length), BigInt(good.length - 1)),
);

/** One edit of a valid image: a u8/u16/u32/u64 write near a header, a table or anywhere. */
const mutation = fc.record({
  at: fc.oneof(
    fc.integer({ min: 0, max: 63 }),
    fc.integer({ min: phoff, max: phoff + 56 * 4 }),
    fc.integer({ min: Math.max(0, shoff - 64), max: good.length - 1 }),
    fc.integer({ min: 0, max: good.length - 1 }),
  ),
  width: fc.constantFrom(1, 2, 4, 8),
  value: field,
});

describe('ELF parser properties', () => {
  it('arbitrary bytes: an image or ElfError, nothing else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), (b) => {
      outcome(b);
    }), { numRuns: 2000 });
  });

  it('arbitrary bytes behind a valid ELF magic and header prefix: an image or ElfError', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 64 }), fc.uint8Array({ minLength: 64, maxLength: 4096 }), (keep, b) => {
      b.set(good.subarray(0, Math.min(keep, b.length)));
      outcome(b);
    }), { numRuns: 2000 });
  });

  it('a valid image with mutated fields, or cut short: an image or ElfError', () => {
    expect(outcome(good)).toBe('ok');
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.option(fc.integer({ min: 0, max: good.length })), (edits, cut) => {
      const b = good.slice(0, cut ?? good.length);
      const v = new DataView(b.buffer);
      for (const { at, width, value } of edits) {
        if (at + width > b.length) continue;
        if (width === 1) v.setUint8(at, Number(value & 0xffn));
        else if (width === 2) v.setUint16(at, Number(value & 0xffffn), true);
        else if (width === 4) v.setUint32(at, Number(value & 0xffff_ffffn), true);
        else v.setBigUint64(at, value, true);
      }
      outcome(b);
    }), { numRuns: 3000 });
  });

  it('20,000 symbols whose names run into a 1 MiB string table without NUL: parsed in bounded time', () => {
    const n = 20_000;
    const strSize = 1 << 20;
    const b = new Uint8Array(good.length + n * 24 + strSize);
    b.set(good);
    const v = new DataView(b.buffer);
    const shnum = v.getUint16(60, true);
    const sh = (i: number, f: number): number => shoff + 64 * i + f;
    const symtab = [...Array(shnum).keys()].find((i) => v.getUint32(sh(i, 4), true) === 2)!;
    const strtab = v.getUint32(sh(symtab, 40), true);
    v.setBigUint64(sh(symtab, 24), BigInt(good.length), true);
    v.setBigUint64(sh(symtab, 32), BigInt(n * 24), true);
    v.setBigUint64(sh(strtab, 24), BigInt(good.length + n * 24), true);
    v.setBigUint64(sh(strtab, 32), BigInt(strSize), true);
    for (let k = 0; k < n; k++) {
      const at = good.length + 24 * k;
      v.setUint32(at, 0, true); // every name starts at the table's first byte
      v.setUint8(at + 4, 0x12); // global function
      v.setBigUint64(at + 8, 0x100000n + BigInt(k), true);
      v.setBigUint64(at + 16, 1n, true);
    }
    b.fill(0x41, good.length + n * 24);
    const img = parseElf(b, 'long-names');
    expect(img.symbols.length).toBe(0); // names longer than the limit are skipped
  });
});
