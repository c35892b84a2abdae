/**
 * Memory: the program break and anonymous (or file-copy) mmap, both carved out of the sandbox's
 * own guest memory. The break grows up from the image; mmap hands out pages down from below
 * the stack; where the two would meet, brk fails and mmap returns ENOMEM — the program sees an
 * ordinary allocation failure, the host allocates nothing.
 *
 * Pages handed out read as zero, as on Linux: a page is zeroed when it is handed out unless it
 * is zero already (checked without writing, so untouched host memory stays uncommitted).
 * Protections are recorded nowhere: every page of the sandbox stays readable and writable to
 * the program (mprotect succeeds and changes nothing; isolation is the VM's, not the page's).
 */
import { PAGE_SIZE } from '../../util/size.js';
import type { SyscallFn, SyscallLayer } from '../syscall-layer.js';
import { E } from '../errno.js';
import { NR } from './numbers.js';

const MAP_SHARED = 0x1;
const MAP_PRIVATE = 0x2;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_FIXED_NOREPLACE = 0x10_0000;
const MADV_DONTNEED = 4;
const ENODEV = 19;
const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

const pageUp = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;

/** Zeroes the pages of [from, to) that are not zero already. */
export function zeroPages(k: SyscallLayer, from: number, to: number): void {
  const buf = k.mem.buffer;
  const base = k.mem.byteOffset;
  for (let p = from; p < to; p += PAGE_SIZE) {
    if (!Buffer.from(buf, base + p, PAGE_SIZE).equals(ZERO_PAGE)) k.zero(p, PAGE_SIZE);
  }
}

/** The index of the first range in `free` (sorted, disjoint) that ends after `a`. */
function firstEndingAfter(free: [number, number][], a: number): number {
  let lo = 0;
  let hi = free.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (free[mid]![1] <= a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Adds [a, b) to the free list (sorted, disjoint, touching ranges merged). A binary search and
 * one splice: a program that frees every other page cannot make a syscall sort the whole list.
 */
export function freeRange(free: [number, number][], a: number, b: number): void {
  if (a >= b) return;
  const i = firstEndingAfter(free, a - 1); // a range ending at a touches it and merges
  let j = i;
  let lo = a;
  let hi = b;
  while (j < free.length && free[j]![0] <= b) {
    lo = Math.min(lo, free[j]![0]);
    hi = Math.max(hi, free[j]![1]);
    j++;
  }
  free.splice(i, j - i, [lo, hi]);
}

/** Removes [a, b) from the free list. */
export function takeRange(free: [number, number][], a: number, b: number): void {
  if (a >= b) return;
  const i = firstEndingAfter(free, a);
  let j = i;
  const keep: [number, number][] = [];
  while (j < free.length && free[j]![0] < b) {
    const [x, y] = free[j]!;
    if (x < a) keep.push([x, a]);
    if (y > b) keep.push([b, y]);
    j++;
  }
  free.splice(i, j - i, ...keep);
}

/** Hands out `len` (page-multiple) bytes: first fit among freed ranges, else down from mmapLow. */
function allocate(k: SyscallLayer, len: number): number {
  const s = k.state;
  for (const r of s.free) {
    if (r[1] - r[0] >= len) {
      const at = r[0];
      takeRange(s.free, at, at + len);
      return at;
    }
  }
  const low = s.mmapLow - len;
  if (low < pageUp(s.brkHigh) + PAGE_SIZE) return -E.NOMEM;
  s.mmapLow = low;
  return low;
}

function mmap(k: SyscallLayer, a: Float64Array, i: Int32Array): number {
  const [addr, len] = [a[0]!, a[1]!];
  const flags = i[3]!;
  if (len === 0 || len > k.size) return len === 0 ? -E.INVAL : -E.NOMEM;
  const type = flags & 3;
  if (type !== MAP_SHARED && type !== MAP_PRIVATE && type !== 3) return -E.INVAL;
  const size = pageUp(len);
  let file: Uint8Array | undefined;
  if (!(flags & MAP_ANONYMOUS)) {
    const f = i[4]! >= 0 ? k.state.fds[i[4]!] : undefined;
    if (!f) return -E.BADF;
    if (f.kind !== 'file') return -ENODEV;
    if (a[5]! % PAGE_SIZE !== 0 || a[5]! > Number.MAX_SAFE_INTEGER) return -E.INVAL;
    file = f.data.subarray(Math.min(a[5]!, f.data.length), Math.min(a[5]! + len, f.data.length));
  }
  let at: number;
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
    if (addr % PAGE_SIZE !== 0) return -E.INVAL;
    if (!k.inRange(addr, size)) return -E.NOMEM;
    at = addr;
    const s = k.state;
    takeRange(s.free, at, at + size);
    // Below the bump pointer and above the break: keep mmap from handing it out again.
    if (at < s.mmapLow && at + size > pageUp(s.brkHigh)) {
      freeRange(s.free, at + size, s.mmapLow);
      s.mmapLow = Math.max(at, pageUp(s.brkHigh) + PAGE_SIZE);
    }
  } else {
    at = allocate(k, size);
    if (at < 0) return at;
  }
  zeroPages(k, at, at + size);
  if (file && file.length > 0) k.writable(at, file.length)!.set(file);
  return at;
}

export const MEMORY_SYSCALLS: Record<number, SyscallFn> = {
  [NR.brk]: (k, a) => {
    const s = k.state;
    const want = a[0]!;
    if (want < k.layout.brkStart) return s.brk;
    if (want > s.mmapLow - PAGE_SIZE) return s.brk; // no room: Linux returns the old break
    // Every page the break newly covers reads as zero, also one the program wrote past its break
    // (Linux would have faulted; here all of memory is mapped). Pages that are zero cost a compare.
    if (want > s.brk) zeroPages(k, pageUp(s.brk), pageUp(want));
    s.brk = want;
    s.brkHigh = Math.max(s.brkHigh, want);
    return want;
  },
  [NR.mmap]: mmap,
  [NR.munmap]: (k, a) => {
    const [addr, len] = [a[0]!, a[1]!];
    if (addr % PAGE_SIZE !== 0 || len === 0) return -E.INVAL;
    const s = k.state;
    const from = Math.max(addr, s.mmapLow);
    const to = Math.min(addr + pageUp(len), k.layout.mmapTop);
    freeRange(s.free, from, to);
    return 0;
  },
  // Growing in place is not offered; musl and glibc fall back to malloc, copy and free.
  [NR.mremap]: () => -E.NOMEM,
  [NR.mprotect]: (k, a) => (a[0]! % PAGE_SIZE !== 0 ? -E.INVAL : k.inRange(a[0]!, a[1]!) ? 0 : -E.NOMEM),
  [NR.madvise]: (k, a, i) => {
    const [addr, len] = [a[0]!, a[1]!];
    if (addr % PAGE_SIZE !== 0) return -E.INVAL;
    if (!k.inRange(addr, pageUp(len))) return -E.NOMEM;
    if (i[2] === MADV_DONTNEED) zeroPages(k, addr, addr + pageUp(len));
    return 0;
  },
  [NR.msync]: (k, a) => (k.inRange(a[0]!, a[1]!) ? 0 : -E.NOMEM),
  [NR.mlock]: () => 0,
  [NR.munlock]: () => 0,
  [NR.membarrier]: () => 0,
};
