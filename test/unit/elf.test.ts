import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ElfError, GuestMemory, MemorySlot, loadElf, parseElf } from '@kvmpool/core/internal';
import { buildSandboxGuest } from '../support/build-c.js';

const good = new Uint8Array(readFileSync(buildSandboxGuest('sandbox-guest.c', 'none')));
const patched = (edit: (v: DataView) => void): Uint8Array => {
  const copy = good.slice();
  edit(new DataView(copy.buffer));
  return copy;
};
const phoff = Number(new DataView(good.buffer, good.byteOffset).getBigUint64(32, true));
const ph = (i: number, field: number): number => phoff + 56 * i + field;

describe('ELF loader', () => {
  it('reads entry, loadable segments and exported functions of an SDK guest', () => {
    const img = parseElf(good, 'guest.elf');
    expect(img.entry).toBe(img.functions.get('_kvmpool_entry'));
    expect(img.functions.has('echo')).toBe(true);
    expect(img.segments.some((s) => s.executable && s.vaddr === 0x100000n)).toBe(true);
  });

  it('an SDK guest built with musl enters at musl’s _start, above 1 MiB, and exports only its own functions', () => {
    const img = parseElf(new Uint8Array(readFileSync(buildSandboxGuest('sandbox-guest.c'))), 'guest.elf');
    expect(img.entry).not.toBe(img.functions.get('_kvmpool_entry'));
    expect(img.segments.every((s) => s.vaddr >= 0x100000n)).toBe(true);
    expect(img.functions.has('echo')).toBe(true);
    expect(['printf', 'malloc', 'main', '__libc_start_main'].filter((n) => img.functions.has(n))).toEqual([]);
  });

  it('rejects what is not a static x86-64 executable, naming the problem', () => {
    expect(() => parseElf(new Uint8Array(10), 'tiny')).toThrow('tiny: not an ELF file (10 bytes, shorter than an ELF header)');
    expect(() => parseElf(patched((v) => v.setUint8(0, 0)), 'x')).toThrow('x: not an ELF file (bad magic)');
    expect(() => parseElf(patched((v) => v.setUint8(4, 1)), 'x')).toThrow('x: not a 64-bit ELF file (class 1)');
    expect(() => parseElf(patched((v) => v.setUint16(18, 183, true)), 'x')).toThrow('x: not an x86-64 executable (e_machine 183)');
    expect(() => parseElf(patched((v) => v.setUint16(16, 3, true)), 'x')).toThrow(/not a static executable \(e_type 3/);
    expect(() => parseElf(good.subarray(0, 100), 'cut')).toThrow('cut: program headers run past the end of the file');
  });

  it('rejects segments that overlap or claim more file than there is', () => {
    const img = parseElf(good);
    expect(img.segments.length).toBeGreaterThan(1);
    // Move the second PT_LOAD onto the first.
    const loads: number[] = [];
    const v = new DataView(good.buffer, good.byteOffset);
    for (let i = 0; i < v.getUint16(56, true); i++) if (v.getUint32(ph(i, 0), true) === 1) loads.push(i);
    const overlapping = patched((w) => w.setBigUint64(ph(loads[1]!, 16), w.getBigUint64(ph(loads[0]!, 16), true), true));
    expect(() => parseElf(overlapping, 'o')).toThrow(/o: segments overlap/);
    const tooLong = patched((w) => {
      w.setBigUint64(ph(loads[0]!, 32), 1n << 30n, true);
      w.setBigUint64(ph(loads[0]!, 40), 1n << 30n, true);
    });
    expect(() => parseElf(tooLong, 't')).toThrow(/runs past the end of the file/);
    const fileBigger = patched((w) => w.setBigUint64(ph(loads[0]!, 40), 1n, true));
    expect(() => parseElf(fileBigger, 'f')).toThrow(/file size \d+ exceeds memory size 1/);
  });

  it('loads into guest memory, and refuses segments outside it or in reserved ranges', () => {
    const img = parseElf(good, 'g');
    const mem = new GuestMemory();
    mem.insert(new MemorySlot(0, 0n, 4 << 20, { readOnly: false, dirtyLog: false }));
    loadElf(img, mem);
    const text = img.segments.find((s) => s.executable)!;
    expect([...mem.read(text.vaddr, 16)]).toEqual([...good.subarray(text.offset, text.offset + 16)]);
    expect(() => loadElf(img, mem, [{ start: 0x100000n, end: 0x101000n, what: 'test range' }])).toThrow(/overlaps the test range/);
    const small = new GuestMemory();
    small.insert(new MemorySlot(0, 0n, 1 << 20, { readOnly: false, dirtyLog: false }));
    expect(() => loadElf(img, small)).toThrow(ElfError);
    expect(() => loadElf(img, small)).toThrow(/is outside guest memory/);
  });
});
