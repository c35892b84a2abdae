// Hostile syscall arguments: NULL and system-area pointers, ranges past the top of memory,
// huge lengths and counts, unterminated and over-long paths, impossible mmaps and breaks. Each
// syscall returns its errno (as Linux would, or kvmpool's documented cap), the program's own
// memory and the VM's system area are untouched, and the next calls run the same.
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool } from '@kvmpool/core';
import { buildMusl, report, text } from '../support/linux.js';

const E = { BADF: 9, NOMEM: 12, FAULT: 14, INVAL: 22, SPIPE: 29, NAMETOOLONG: 36, NOSYS: 38, PERM: 1, NODEV: 19 } as const;
const MEMORY = 16 * 1024 * 1024;
const program = buildMusl('hostile.c');
const input = Buffer.concat([Buffer.from(String(MEMORY).padEnd(32, ' ')), Buffer.from('12345678')]);

const EXPECTED: Record<string, number> = {
  'write-null': -E.FAULT,
  'write-null-0': 0,
  'write-system': -E.FAULT,
  'write-past-top': -E.FAULT,
  'write-huge': -E.FAULT,
  'read-system': -E.FAULT,
  'read-stub': -E.FAULT,
  'read-scratch': -E.FAULT,
  'read-past-top': -E.FAULT,
  'read-negative-ptr': -E.FAULT,
  'readv-huge-count': -E.INVAL,
  'readv-negative-count': -E.INVAL,
  'writev-iov-past-top': -E.FAULT,
  'writev-iov-system': -E.FAULT,
  'writev-base-system': -E.FAULT,
  'writev-len-huge': -E.INVAL,
  'writev-len-sum': -E.INVAL,
  'mmap-1TiB': -E.NOMEM,
  'mmap-minus-page': -E.NOMEM,
  'mmap-all-memory': -E.NOMEM,
  'mmap-fixed-system': -E.NOMEM,
  'mmap-fixed-past-top': -E.NOMEM,
  'mmap-fixed-unaligned': -E.INVAL,
  'mmap-zero': -E.INVAL,
  'mmap-bad-fd': -E.BADF,
  'mmap-stdin': -E.NODEV,
  // An impossible break leaves it where it was (Linux's brk returns the old break).
  'brk-far-moved': 0,
  'brk-top-moved': 0,
  'brk-low-moved': 0,
  'brk-negative-moved': 0,
  'openat-unterminated': -E.FAULT,
  'openat-too-long': -E.NAMETOOLONG,
  'openat-null': -E.FAULT,
  'openat-system': -E.FAULT,
  'stat-unterminated': -E.FAULT,
  'getrandom-null': -E.FAULT,
  'getrandom-past-top': -E.FAULT,
  'getrandom-huge': 1024 * 1024, // a short read of kvmpool's cap, as Linux allows
  'fstat-system': -E.FAULT,
  'fstat-past-top': -E.FAULT,
  'clock-gettime-system': -E.FAULT,
  'clock-gettime-past-top': -E.FAULT,
  'uname-stub': -E.FAULT,
  'uname-past-top': -E.FAULT,
  'sigaction-system': -E.FAULT,
  'sigaction-old-system': -E.FAULT,
  'sigprocmask-system': -E.FAULT,
  'arch-prctl-noncanonical': -E.PERM,
  'arch-prctl-get-system': -E.FAULT,
  'futex-system': -E.FAULT,
  'futex-unaligned': -E.INVAL,
  'madvise-system': -E.NOMEM,
  'mprotect-system': -E.NOMEM,
  'mprotect-unaligned': -E.INVAL,
  'munmap-system': 0,
  'nanosleep-bad-ns': -E.INVAL,
  'nanosleep-system': -E.FAULT,
  'getcwd-system': -E.FAULT,
  'prlimit-old-system': -E.FAULT,
  'affinity-system': -E.FAULT,
  'readlink-system': -E.FAULT,
  'sysinfo-system': -E.FAULT,
  'getresuid-system': -E.FAULT,
  'pread-stdin': -E.SPIPE,
  'lseek-stdin': -E.SPIPE,
  'read-bad-fd': -E.BADF,
  'read-negative-fd': -E.BADF,
  'dup2-huge-fd': -E.BADF,
  'nr-high-bits': -E.NOSYS,
  'nr-negative': -E.NOSYS,
  'read-huge-len': 8, // what stdin still held
};

const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

describe('LinuxPool: hostile syscall arguments', () => {
  it('each bad pointer, length and count gets its errno; the program, the host and the next calls are fine', async () => {
    const pool = new LinuxPool({ program, memory: MEMORY, threads: 1, timeoutMs: 10_000 });
    pools.push(pool);
    const rss0 = process.memoryUsage().rss;
    for (let call = 0; call < 3; call++) {
      const r = await pool.run(input);
      expect(r.exitCode, text(r.stdout)).toBe(0);
      const got = report(r.stdout);
      const results = Object.fromEntries(Object.keys(EXPECTED).map((k) => [k, Number(got[k])]));
      expect(results, `call ${call}`).toEqual(EXPECTED);
      expect(got.canary, `call ${call}`).toBe('ok');
      expect(text(r.stdout).endsWith('alive\n')).toBe(true);
      // A syscall number with high bits set is no syscall: named by its whole value.
      expect(r.stats.unknownSyscalls).toEqual({ syscall_0x100000027: 1, syscall_0xffffffffffffffff: 1 });
    }
    // The 1 TiB mmap, the huge lengths and counts allocated nothing on the host.
    expect(process.memoryUsage().rss - rss0).toBeLessThan(256 * 1024 * 1024);
  });
});
