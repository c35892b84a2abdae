// The read-only files a LinuxPool provides (`files`): a program opens, fstats, reads, seeks,
// preads, dups and mmaps them like real files; every other path is ENOENT, and any write
// access is EROFS.
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool } from '@kvmpool/core';
import { buildMusl, report, text } from '../support/linux.js';

const E = { NOENT: 2, BADF: 9, NOTDIR: 20, INVAL: 22, ROFS: 30 } as const;
const program = buildMusl('files.c');
const words = new TextEncoder().encode('alpha\nbeta\ngamma\n'.repeat(500) + 'omega');
const binary = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 131 + 7) & 0xff);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));
const pool = (): LinuxPool => {
  const p = new LinuxPool({ program, files: { '/etc/words': words, '/data/bin': binary, '/empty': new Uint8Array(0) }, threads: 1, timeoutMs: 5000 });
  pools.push(p);
  return p;
};

describe('LinuxPool files', () => {
  it('a provided file reads back whole; fstat, lseek, pread, dup and mmap agree with it; write access is EROFS', async () => {
    const p = pool();
    for (const [path, data] of [['/etc/words', words], ['/data/bin', binary]] as const) {
      const r = await p.run(`${path}\n`);
      expect(r.exitCode, text(r.stderr)).toBe(0);
      expect(Buffer.from(r.stdout).equals(Buffer.from(data)), path).toBe(true);
      const got = report(r.stderr);
      expect(got, path).toMatchObject({
        open: '3',
        fstat: '0',
        size: String(data.length),
        regular: '1',
        mode: '444',
        cloexec: '1',
        'read-total': String(data.length),
        'read-eof': '0',
        'seek-end': String(data.length),
        'seek-end-4': String(data.length - 4),
        tail: hex(data.subarray(-4)),
        'seek-negative': String(-E.INVAL),
        'seek-past-end': String(data.length + 100),
        'read-past-end': '0',
        pread: '3',
        'pread-bytes': hex(data.subarray(1, 4)),
        'pos-after-pread': String(data.length + 100), // pread leaves the offset alone
        'dup-pos': '2',
        mmap: 'ok',
        'mmap-head': hex(data.subarray(0, 4)),
        close: '0',
        'close-again': String(-E.BADF),
        'read-closed': String(-E.BADF),
        'open-wronly': String(-E.ROFS),
        'open-rdwr': String(-E.ROFS),
        'open-trunc': String(-E.ROFS),
        'access-w': String(-E.ROFS),
        'access-r': '0',
        'open-dotted': '3',
        'open-dotdot': '4',
        'stat-size': String(data.length),
        'open-missing': String(-E.NOENT),
        'open-creat-missing': String(-E.ROFS),
        'open-empty': String(-E.NOENT),
        'fopen-w': 'Read-only file system',
      });
      if (path === '/etc/words') expect(got['fopen-first-line']).toBe('alpha');
    }
  });

  it('an empty provided file opens and reads as empty', async () => {
    const r = await pool().run('/empty\n');
    expect(r.stdout.length).toBe(0);
    expect(report(r.stderr)).toMatchObject({ open: '3', size: '0', 'read-total': '0', 'seek-end': '0', 'seek-end-4': String(-E.INVAL), pread: '0' });
  });

  it('a path that was not provided is ENOENT (host files are not visible), creating it is EROFS', async () => {
    const p = pool();
    for (const path of ['/etc/passwd', '/etc', '/', '/proc/self/maps', '/bin/busybox', `/${'x'.repeat(300)}`]) {
      const r = await p.run(`${path}\n`);
      expect(r.exitCode, path).toBe(1);
      const got = report(r.stderr);
      // A provided file's directories and the root are no files either.
      expect(got.open, path).toBe(String(-E.NOENT));
      expect(got['open-creat'], path).toBe(String(-E.ROFS));
      expect(got.stat, path).toBe(String(-E.NOENT));
    }
  });

  it('a provided file used as a directory is ENOTDIR, as Linux walks a path ("/etc/words/", "/etc/words/..", "/etc/words/x")', async () => {
    const p = pool();
    for (const path of ['/etc/words/', '/etc/words/.', '/etc/words/..', '/etc/words/x', '/etc/words/../words']) {
      const got = report((await p.run(`${path}\n`)).stderr);
      expect(got.open, path).toBe(String(-E.NOTDIR));
      expect(got.stat, path).toBe(String(-E.NOTDIR));
    }
  });

  it("the file table is part of the pristine state: a descriptor a call leaves open is gone in the next call", async () => {
    const p = pool();
    // Each call opens the file and leaves descriptors 5 and 6 open (open-dotted, open-dotdot): if they leaked, the next open would not be 3.
    for (let i = 0; i < 3; i++) expect(report((await p.run('/etc/words\n')).stderr).open).toBe('3');
  });
});
