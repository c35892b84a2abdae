import { describe, expect, it } from 'vitest';
import { CR0, CR4, EFER, GuestMemory, MemorySlot, walkPageTables, writeModeTables } from '@kvmpool/core/internal';

function memory(): GuestMemory {
  const m = new GuestMemory();
  m.insert(new MemorySlot(0, 0n, 1 << 20, { readOnly: false, dirtyLog: false }));
  return m;
}
const TOP = 0x5000n; // the system area's first table (systemArea 0x1000 + 0x4000)

describe('page-table walk', () => {
  it('long mode: kvmpool identity tables with 2 MiB pages, user bit per mode', () => {
    const m = memory();
    writeModeTables(m, 'user', { mapSize: 1 << 30 });
    const sregs = { cr0: CR0.PE | CR0.PG, cr3: TOP, cr4: CR4.PAE, efer: EFER.LME | EFER.LMA };
    expect(walkPageTables(m, sregs, 0x12345n)).toEqual({ physicalAddress: 0x12345n, writable: true, user: true });
    expect(walkPageTables(m, sregs, 0x3fff_ffffn)).toEqual({ physicalAddress: 0x3fff_ffffn, writable: true, user: true });
    expect(walkPageTables(m, sregs, 0x4000_0000n)).toBeNull(); // past the mapped GiB
    writeModeTables(m, 'long', { mapSize: 1 << 30 });
    expect(walkPageTables(m, sregs, 0x1000n)?.user).toBe(false);
  });

  it('user mode with protectSystemArea: the system area read-only to CPL 3, the rest of low memory writable', () => {
    const m = memory();
    writeModeTables(m, 'user', { mapSize: 2 << 20, protectSystemArea: true });
    const sregs = { cr0: CR0.PE | CR0.PG, cr3: TOP, cr4: CR4.PAE, efer: EFER.LME | EFER.LMA };
    for (const gva of [0x1000n, 0x5008n, 0xa000n, 0xafffn]) {
      expect(walkPageTables(m, sregs, gva)).toEqual({ physicalAddress: gva, writable: false, user: true });
    }
    for (const gva of [0x0n, 0xb000n, 0xc040n, 0x10_0000n, 0xf_ffffn]) {
      expect(walkPageTables(m, sregs, gva)).toEqual({ physicalAddress: gva, writable: true, user: true });
    }
    expect(walkPageTables(m, sregs, 0x20_0000n)).toBeNull(); // past mapSize
    expect(() => writeModeTables(m, 'user', { mapSize: 4 * 2 ** 30, protectSystemArea: true })).toThrow(/at most 3 GiB/);
  });

  it('long mode with a 4 KiB page remapped by hand', () => {
    const m = memory();
    writeModeTables(m, 'long', { mapSize: 1 << 30 });
    // Point the first 2 MiB region at a page table that maps 0x3000 → 0x9000.
    const pd = m.readU64(m.readU64(TOP) & ~0xfffn) & ~0xfffn; // PML4[0] → PDPT, PDPT[0] → PD
    m.writeU64(pd, 0x60000n | 3n);
    m.fill(0x60000, 4096, 0);
    m.writeU64(0x60000n + 3n * 8n, 0x9000n | 3n);
    const sregs = { cr0: CR0.PE | CR0.PG, cr3: TOP, cr4: CR4.PAE, efer: EFER.LMA };
    expect(walkPageTables(m, sregs, 0x3abcn)).toEqual({ physicalAddress: 0x9abcn, writable: true, user: false });
    expect(walkPageTables(m, sregs, 0x4000n)).toBeNull();
  });

  it('32-bit PAE and legacy PSE tables, and no paging', () => {
    const m = memory();
    writeModeTables(m, 'paged', { paging: 'pae', mapSize: 1 << 30 });
    expect(walkPageTables(m, { cr0: CR0.PE | CR0.PG, cr3: TOP, cr4: CR4.PAE, efer: 0n }, 0x2345678n)?.physicalAddress).toBe(0x2345678n);
    writeModeTables(m, 'paged', { paging: 'legacy', mapSize: 1 << 30 });
    expect(walkPageTables(m, { cr0: CR0.PE | CR0.PG, cr3: TOP, cr4: CR4.PSE, efer: 0n }, 0x2345678n)?.physicalAddress).toBe(0x2345678n);
    expect(walkPageTables(m, { cr0: CR0.PE, cr3: 0n, cr4: 0n, efer: 0n }, 0xdeadn)?.physicalAddress).toBe(0xdeadn);
  });
});
