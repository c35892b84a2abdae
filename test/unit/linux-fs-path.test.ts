// Paths in the syscall layer (syscalls/fs.ts): normalizePath resolves ".", ".." and repeated
// slashes against "/"; resolvePath walks like Linux, so a provided file used as a directory is
// ENOTDIR, and otherwise agrees with normalizePath.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERRNO, normalizePath, resolvePath } from '@kvmpool/core/internal';

const component = fc.constantFrom('', '.', '..', 'etc', 'words', 'a', 'f', 'é', '...');
const path = fc.tuple(fc.boolean(), fc.array(component, { maxLength: 8 })).map(([abs, parts]) => `${abs ? '/' : ''}${parts.join('/')}`);

describe('normalizePath', () => {
  it('examples', () => {
    expect(normalizePath('/a/./b//c/../d')).toBe('/a/b/d');
    expect(normalizePath('relative/x')).toBe('/relative/x');
    expect(normalizePath('/../../etc/words')).toBe('/etc/words');
    expect(normalizePath('')).toBe('/');
    expect(normalizePath('//')).toBe('/');
    expect(normalizePath('/etc/words/')).toBe('/etc/words');
    expect(normalizePath('/a/.../b')).toBe('/a/.../b');
  });

  it('gives an absolute path without empty, "." or ".." components, and is idempotent', () => {
    fc.assert(
      fc.property(path, (p) => {
        const n = normalizePath(p);
        expect(n.startsWith('/')).toBe(true);
        if (n !== '/') expect(n.slice(1).split('/').every((c) => c !== '' && c !== '.' && c !== '..')).toBe(true);
        expect(normalizePath(n)).toBe(n);
      }),
    );
  });
});

describe('resolvePath', () => {
  const files = new Set(['/etc/words', '/f']);
  const isFile = (p: string): boolean => files.has(p);

  it('a provided file followed by more of the path is ENOTDIR', () => {
    for (const p of ['/etc/words/', '/etc/words/.', '/etc/words/..', '/etc/words/x', '/etc/words/../words', '/f/', 'f/a', '/f//']) {
      expect(resolvePath(p, isFile), p).toBe(-ERRNO.NOTDIR);
    }
    for (const [p, want] of [['/etc/words', '/etc/words'], ['/etc/../etc/./words', '/etc/words'], ['f', '/f'], ['/etc/', '/etc'], ['/x/../f', '/f']]) {
      expect(resolvePath(p!, isFile), p).toBe(want);
    }
  });

  it('when it resolves, it agrees with normalizePath; with no files at all, always', () => {
    fc.assert(
      fc.property(path, (p) => {
        const r = resolvePath(p, isFile);
        if (typeof r === 'string') expect(r).toBe(normalizePath(p));
        else expect(r).toBe(-ERRNO.NOTDIR);
        expect(resolvePath(p, () => false)).toBe(normalizePath(p));
      }),
    );
  });
});
