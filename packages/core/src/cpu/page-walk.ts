/**
 * A software page-table walk: guest-virtual → guest-physical through the tables in guest
 * memory, for hosts or states where KVM_TRANSLATE is not available. Handles no paging,
 * 32-bit legacy paging (4 KiB and 4 MiB pages), PAE and 4-level long-mode paging.
 */
import type { KvmSregs } from '../ffi/index.js';
import type { GuestMemory } from '../memory.js';
import { CR0, CR4, EFER, PTE } from './descriptors.js';

export interface WalkResult {
  physicalAddress: bigint;
  writable: boolean;
  user: boolean;
}

const ADDR_MASK = 0x000f_ffff_ffff_f000n;

/** Translates `gva`, or returns null when a level is not present (or unreadable). */
export function walkPageTables(memory: GuestMemory, sregs: Pick<KvmSregs, 'cr0' | 'cr3' | 'cr4' | 'efer'>, gva: bigint): WalkResult | null {
  if ((sregs.cr0 & CR0.PG) === 0n) return { physicalAddress: gva, writable: true, user: true };
  try {
    if ((sregs.efer & EFER.LMA) !== 0n) return walk64(memory, sregs.cr3 & ADDR_MASK, gva);
    if ((sregs.cr4 & CR4.PAE) !== 0n) return walkPae(memory, sregs.cr3 & 0xffff_ffe0n, gva);
    return walkLegacy(memory, sregs.cr3 & 0xffff_f000n, gva, (sregs.cr4 & CR4.PSE) !== 0n);
  } catch {
    return null; // a table outside guest memory
  }
}

function walk64(memory: GuestMemory, pml4: bigint, gva: bigint): WalkResult | null {
  let table = pml4;
  let writable = true;
  let user = true;
  for (const [level, shift] of [[4, 39n], [3, 30n], [2, 21n], [1, 12n]] as const) {
    const e = memory.readU64(table + ((gva >> shift) & 0x1ffn) * 8n);
    if ((e & PTE.P) === 0n) return null;
    writable &&= (e & PTE.RW) !== 0n;
    user &&= (e & PTE.US) !== 0n;
    if ((level === 3 || level === 2) && (e & PTE.PS) !== 0n) {
      const pageMask = (1n << shift) - 1n;
      return { physicalAddress: (e & ADDR_MASK & ~pageMask) | (gva & pageMask), writable, user };
    }
    table = e & ADDR_MASK;
  }
  return { physicalAddress: table | (gva & 0xfffn), writable, user };
}

function walkPae(memory: GuestMemory, pdpt: bigint, gva: bigint): WalkResult | null {
  const pdpte = memory.readU64(pdpt + ((gva >> 30n) & 3n) * 8n);
  if ((pdpte & PTE.P) === 0n) return null;
  const pde = memory.readU64((pdpte & ADDR_MASK) + ((gva >> 21n) & 0x1ffn) * 8n);
  if ((pde & PTE.P) === 0n) return null;
  if ((pde & PTE.PS) !== 0n) {
    return { physicalAddress: (pde & ADDR_MASK & ~0x1f_ffffn) | (gva & 0x1f_ffffn), writable: (pde & PTE.RW) !== 0n, user: (pde & PTE.US) !== 0n };
  }
  const pte = memory.readU64((pde & ADDR_MASK) + ((gva >> 12n) & 0x1ffn) * 8n);
  if ((pte & PTE.P) === 0n) return null;
  return { physicalAddress: (pte & ADDR_MASK) | (gva & 0xfffn), writable: (pde & pte & PTE.RW) !== 0n, user: (pde & pte & PTE.US) !== 0n };
}

function walkLegacy(memory: GuestMemory, pd: bigint, gva: bigint, pse: boolean): WalkResult | null {
  const pde = BigInt(memory.readU32(pd + ((gva >> 22n) & 0x3ffn) * 4n));
  if ((pde & PTE.P) === 0n) return null;
  if (pse && (pde & PTE.PS) !== 0n) {
    return { physicalAddress: (pde & 0xffc0_0000n) | (gva & 0x3f_ffffn), writable: (pde & PTE.RW) !== 0n, user: (pde & PTE.US) !== 0n };
  }
  const pte = BigInt(memory.readU32((pde & 0xffff_f000n) + ((gva >> 12n) & 0x3ffn) * 4n));
  if ((pte & PTE.P) === 0n) return null;
  return { physicalAddress: (pte & 0xffff_f000n) | (gva & 0xfffn), writable: (pde & pte & PTE.RW) !== 0n, user: (pde & pte & PTE.US) !== 0n };
}
