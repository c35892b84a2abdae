/**
 * Files: stdin (the call's input), stdout and stderr (bounded, syscall-layer.ts `output`), and
 * the read-only in-memory files the user provides (`files`); every other path is ENOENT, and
 * opening a provided file for writing is EROFS. Paths resolve against `/` (the only directory).
 */
import type { SyscallFn, SyscallLayer } from '../syscall-layer.js';
import { MAX_FDS, type OpenFile } from '../process-state.js';
import { E } from '../errno.js';
import { NR } from './numbers.js';

const AT_FDCWD = -100;
const AT_EMPTY_PATH = 0x1000;
const O_ACCMODE = 3;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const IOV_MAX = 1024;
/** Most bytes one read/write moves (Linux's MAX_RW_COUNT). */
const MAX_RW = 0x7fff_f000;
const S_IFIFO = 0o010000;
const S_IFREG = 0o100000;
const STAT_SIZE = 144;
const F = { DUPFD: 0, GETFD: 1, SETFD: 2, GETFL: 3, SETFL: 4, DUPFD_CLOEXEC: 1030 } as const;

function fileOf(k: SyscallLayer, fd: number): OpenFile | undefined {
  return fd >= 0 ? k.state.fds[fd] : undefined;
}

/** "/a/./b//c/../d" → "/a/b/d"; relative paths start at "/". */
export function normalizePath(path: string): string {
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return `/${parts.join('/')}`;
}

/**
 * `path` resolved against "/" one component at a time, as Linux walks it: a provided file with
 * more of the path after it ("/f/", "/f/.", "/f/..", "/f/x") is used as a directory: -ENOTDIR.
 */
export function resolvePath(path: string, isFile: (path: string) => boolean): string | number {
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '') continue;
    if (parts.length > 0 && isFile(`/${parts.join('/')}`)) return -E.NOTDIR;
    if (p === '..') parts.pop();
    else if (p !== '.') parts.push(p);
  }
  const norm = `/${parts.join('/')}`;
  return path.endsWith('/') && isFile(norm) ? -E.NOTDIR : norm;
}

/** The provided file at `pathPtr` (relative to dirfd), or -errno. */
function lookup(k: SyscallLayer, dirfd: number, pathPtr: number): { path: string; data: Uint8Array } | number {
  const path = k.cstring(pathPtr);
  if (typeof path === 'number') return path;
  if (path === '') return -E.NOENT;
  if (!path.startsWith('/') && dirfd !== AT_FDCWD) return fileOf(k, dirfd) ? -E.NOTDIR : -E.BADF;
  const files = k.config.files;
  const norm = resolvePath(path, (p) => files.has(p));
  if (typeof norm === 'number') return norm;
  const data = files.get(norm);
  return data ? { path: norm, data } : -E.NOENT;
}

/** Reads from `f` into [buf, buf+len): stdin or a file. */
function readInto(k: SyscallLayer, f: OpenFile, buf: number, len: number, at = f.pos): number {
  if (f.kind === 'stdout' || f.kind === 'stderr') return -E.BADF;
  const n = Math.max(0, Math.min(len, MAX_RW, f.data.length - at));
  const out = k.writable(buf, n);
  if (!out) return -E.FAULT;
  out.set(f.data.subarray(at, at + n));
  return n;
}

function read(k: SyscallLayer, fd: number, buf: number, len: number): number {
  const f = fileOf(k, fd);
  if (!f) return -E.BADF;
  if (f.kind === 'stdin' && k.captureAtFirstRead) {
    k.captureAtFirstRead = false;
    k.end = { kind: 'capture' };
    return 0;
  }
  const n = readInto(k, f, buf, len);
  if (n > 0) f.pos += n;
  return n;
}

function write(k: SyscallLayer, fd: number, bytes: Uint8Array): number {
  const f = fileOf(k, fd);
  if (!f) return -E.BADF;
  if (f.kind !== 'stdout' && f.kind !== 'stderr') return -E.BADF;
  k.output(f.kind, bytes);
  return bytes.length;
}

/** The iovec array at [iov, iov + 16 * cnt), checked; or -errno. */
function iovecs(k: SyscallLayer, iov: number, cnt: number): [number, number][] | number {
  if (cnt < 0 || cnt > IOV_MAX) return -E.INVAL;
  const raw = k.readable(iov, cnt * 16);
  if (!raw) return -E.FAULT;
  const out: [number, number][] = [];
  let total = 0;
  for (let n = 0; n < cnt; n++) {
    const base = k.u64(iov + 16 * n)!;
    const len = k.u64(iov + 16 * n + 8)!;
    if (len > MAX_RW) return -E.INVAL;
    total += len;
    if (total > MAX_RW) return -E.INVAL;
    out.push([base, len]);
  }
  return out;
}

function writeStat(k: SyscallLayer, ptr: number, f: { kind: OpenFile['kind']; size: number; ino: number }): number {
  const out = k.writable(ptr, STAT_SIZE);
  if (!out) return -E.FAULT;
  out.fill(0);
  const v = new DataView(out.buffer, out.byteOffset, STAT_SIZE);
  const file = f.kind === 'file';
  v.setBigUint64(0, 1n, true); // st_dev
  v.setBigUint64(8, BigInt(f.ino), true); // st_ino
  v.setBigUint64(16, 1n, true); // st_nlink
  v.setUint32(24, file ? S_IFREG | 0o444 : S_IFIFO | 0o600, true); // st_mode
  v.setUint32(28, k.config.ids.uid, true);
  v.setUint32(32, k.config.ids.gid, true);
  v.setBigInt64(48, BigInt(file ? f.size : 0), true); // st_size
  v.setBigInt64(56, 4096n, true); // st_blksize
  v.setBigInt64(64, BigInt(Math.ceil((file ? f.size : 0) / 512)), true); // st_blocks
  return 0;
}

const inode = (k: SyscallLayer, path: string): number => 100 + [...k.config.files.keys()].indexOf(path);

function fstat(k: SyscallLayer, fd: number, buf: number): number {
  const f = fileOf(k, fd);
  if (!f) return -E.BADF;
  return writeStat(k, buf, { kind: f.kind, size: f.data.length, ino: f.kind === 'file' ? inode(k, f.path) : 10 + fd });
}

function statPath(k: SyscallLayer, dirfd: number, path: number, buf: number, flags: number): number {
  if (flags & AT_EMPTY_PATH) {
    const p = k.cstring(path);
    if (p === '') return dirfd === AT_FDCWD ? -E.NOENT : fstat(k, dirfd, buf);
  }
  const found = lookup(k, dirfd, path);
  if (typeof found === 'number') return found;
  return writeStat(k, buf, { kind: 'file', size: found.data.length, ino: inode(k, found.path) });
}

function openat(k: SyscallLayer, dirfd: number, path: number, flags: number): number {
  const found = lookup(k, dirfd, path);
  if (typeof found === 'number') return found === -E.NOENT && flags & O_CREAT ? -E.ROFS : found;
  if ((flags & O_ACCMODE) !== 0 || flags & (O_CREAT | O_TRUNC)) return -E.ROFS;
  if (flags & O_DIRECTORY) return -E.NOTDIR;
  const fd = k.state.freeFd();
  if (fd < 0) return -E.MFILE;
  k.state.fds[fd] = { kind: 'file', path: found.path, data: found.data, pos: 0 };
  if (flags & O_CLOEXEC) k.state.cloexec.add(fd);
  return fd;
}

function dupTo(k: SyscallLayer, oldfd: number, newfd: number, cloexec: boolean): number {
  const f = fileOf(k, oldfd);
  if (!f) return -E.BADF;
  if (newfd < 0 || newfd >= MAX_FDS) return -E.BADF;
  k.state.fds[newfd] = f;
  if (cloexec) k.state.cloexec.add(newfd);
  else k.state.cloexec.delete(newfd);
  return newfd;
}

const readlink = (k: SyscallLayer, dirfd: number, path: number): number => {
  const found = lookup(k, dirfd, path);
  return typeof found === 'number' ? found : -E.INVAL; // provided files are no symlinks
};

export const FS_SYSCALLS: Record<number, SyscallFn> = {
  [NR.read]: (k, a, i) => read(k, i[0]!, a[1]!, a[2]!),
  [NR.write]: (k, a, i) => {
    const bytes = k.readable(a[1]!, Math.min(a[2]!, MAX_RW));
    return bytes ? write(k, i[0]!, bytes) : -E.FAULT;
  },
  [NR.pread64]: (k, a, i) => {
    const f = fileOf(k, i[0]!);
    if (!f) return -E.BADF;
    if (f.kind !== 'file') return -E.SPIPE;
    const off = k.argI64(3);
    if (off < 0n) return -E.INVAL;
    return readInto(k, f, a[1]!, a[2]!, off > BigInt(f.data.length) ? f.data.length : Number(off));
  },
  [NR.readv]: (k, a, i) => {
    const f = fileOf(k, i[0]!);
    if (!f) return -E.BADF;
    const v = iovecs(k, a[1]!, i[2]!);
    if (typeof v === 'number') return v;
    let total = 0;
    for (const [base, len] of v) {
      const n = read(k, i[0]!, base, len);
      if (k.end) return total; // a capture on stdin's first read
      if (n < 0) return total > 0 ? total : n;
      total += n;
      if (n < len) break;
    }
    return total;
  },
  [NR.writev]: (k, a, i) => {
    const f = fileOf(k, i[0]!);
    if (!f) return -E.BADF;
    const v = iovecs(k, a[1]!, i[2]!);
    if (typeof v === 'number') return v;
    let total = 0;
    for (const [base, len] of v) {
      const bytes = k.readable(base, len);
      if (!bytes) return total > 0 ? total : -E.FAULT;
      const n = write(k, i[0]!, bytes);
      if (n < 0) return total > 0 ? total : n;
      total += n;
    }
    return total;
  },
  [NR.lseek]: (k, _a, i) => {
    const f = fileOf(k, i[0]!);
    if (!f) return -E.BADF;
    if (f.kind !== 'file') return -E.SPIPE;
    const base = [0, f.pos, f.data.length][i[2]!];
    if (base === undefined) return -E.INVAL;
    const pos = BigInt(base) + k.argI64(1);
    if (pos < 0n || pos > BigInt(Number.MAX_SAFE_INTEGER)) return -E.INVAL;
    f.pos = Number(pos);
    return f.pos;
  },
  [NR.open]: (k, a, i) => openat(k, AT_FDCWD, a[0]!, i[1]!),
  [NR.openat]: (k, a, i) => openat(k, i[0]!, a[1]!, i[2]!),
  [NR.close]: (k, _a, i) => {
    if (!fileOf(k, i[0]!)) return -E.BADF;
    k.state.fds[i[0]!] = undefined;
    k.state.cloexec.delete(i[0]!);
    return 0;
  },
  [NR.fstat]: (k, a, i) => fstat(k, i[0]!, a[1]!),
  [NR.stat]: (k, a) => statPath(k, AT_FDCWD, a[0]!, a[1]!, 0),
  [NR.lstat]: (k, a) => statPath(k, AT_FDCWD, a[0]!, a[1]!, 0),
  [NR.newfstatat]: (k, a, i) => statPath(k, i[0]!, a[1]!, a[2]!, i[3]!),
  [NR.access]: (k, a, i) => {
    const found = lookup(k, AT_FDCWD, a[0]!);
    return typeof found === 'number' ? found : i[1]! & 2 ? -E.ROFS : 0;
  },
  [NR.faccessat]: (k, a, i) => {
    const found = lookup(k, i[0]!, a[1]!);
    return typeof found === 'number' ? found : i[2]! & 2 ? -E.ROFS : 0;
  },
  [NR.faccessat2]: (k, a, i) => {
    const found = lookup(k, i[0]!, a[1]!);
    return typeof found === 'number' ? found : i[2]! & 2 ? -E.ROFS : 0;
  },
  [NR.readlink]: (k, a) => readlink(k, AT_FDCWD, a[0]!),
  [NR.readlinkat]: (k, a, i) => readlink(k, i[0]!, a[1]!),
  // No terminal: TCGETS, TIOCGWINSZ and every other request on a valid descriptor.
  [NR.ioctl]: (k, _a, i) => (fileOf(k, i[0]!) ? -E.NOTTY : -E.BADF),
  [NR.fcntl]: (k, a, i) => {
    const fd = i[0]!;
    const f = fileOf(k, fd);
    if (!f) return -E.BADF;
    switch (i[1]!) {
      case F.DUPFD:
      case F.DUPFD_CLOEXEC: {
        const to = k.state.freeFd(Math.max(0, i[2]!));
        return to < 0 ? -E.MFILE : dupTo(k, fd, to, i[1] === F.DUPFD_CLOEXEC);
      }
      case F.GETFD:
        return k.state.cloexec.has(fd) ? 1 : 0;
      case F.SETFD:
        if (a[2]! & 1) k.state.cloexec.add(fd);
        else k.state.cloexec.delete(fd);
        return 0;
      case F.GETFL:
        return f.kind === 'stdout' || f.kind === 'stderr' ? 1 : 0;
      case F.SETFL:
        return 0;
      default:
        return -E.INVAL;
    }
  },
  [NR.dup]: (k, _a, i) => {
    const to = k.state.freeFd();
    return to < 0 ? -E.MFILE : dupTo(k, i[0]!, to, false);
  },
  [NR.dup2]: (k, _a, i) => (i[0] === i[1] ? (fileOf(k, i[0]!) ? i[0]! : -E.BADF) : dupTo(k, i[0]!, i[1]!, false)),
  [NR.dup3]: (k, _a, i) => (i[0] === i[1] ? -E.INVAL : dupTo(k, i[0]!, i[1]!, (i[2]! & O_CLOEXEC) !== 0)),
  [NR.getcwd]: (k, a) => {
    if (a[1]! < 2) return -E.RANGE;
    const out = k.writable(a[0]!, 2);
    if (!out) return -E.FAULT;
    out.set([0x2f, 0]);
    return 2;
  },
  [NR.chdir]: (k, a) => {
    const p = k.cstring(a[0]!);
    return typeof p === 'number' ? p : normalizePath(p) === '/' ? 0 : -E.NOENT;
  },
  [NR.umask]: (k, _a, i) => {
    const old = k.state.umask;
    k.state.umask = i[0]! & 0o777;
    return old;
  },
  [NR.getdents64]: (k, _a, i) => (fileOf(k, i[0]!) ? -E.NOTDIR : -E.BADF),
  [NR.fadvise64]: (k, _a, i) => (fileOf(k, i[0]!) ? 0 : -E.BADF),
  [NR.fsync]: (k, _a, i) => (fileOf(k, i[0]!) ? 0 : -E.BADF),
};
