/**
 * What the syscall layer keeps of a Linux process beside its memory and registers: the program
 * break, the mmap allocator, the open files, the signal mask and actions, and what it wrote to
 * stdout and stderr. It is part of the pristine state a sandbox is reset to (`clone`), so that a
 * warm start captured after the program's own start-up resumes with exactly the state it had.
 */

/** A read-only file, stdin, or one of the two output streams. */
export interface OpenFile {
  readonly kind: 'stdin' | 'stdout' | 'stderr' | 'file';
  readonly path: string;
  /** The bytes of a file or of stdin (empty for the outputs). */
  data: Uint8Array;
  /** The file offset, shared by every descriptor dup'ed from the same open (as in Linux). */
  pos: number;
}

/** Most bytes one call may write to stdout (and, apart, to stderr) is the config's maxOutput. */
export class OutputStream {
  #chunks: Uint8Array[] = [];
  length = 0;
  /** Bytes past the limit that were dropped. */
  dropped = 0;

  append(bytes: Uint8Array, limit: number): void {
    const room = Math.max(0, limit - this.length);
    const take = Math.min(room, bytes.length);
    if (take > 0) {
      this.#chunks.push(bytes.slice(0, take));
      this.length += take;
    }
    this.dropped += bytes.length - take;
  }

  bytes(): Uint8Array {
    if (this.#chunks.length === 1) return this.#chunks[0]!;
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.#chunks = this.length > 0 ? [out] : [];
    return out;
  }

  clone(): OutputStream {
    const o = new OutputStream();
    if (this.length > 0) o.#chunks = [this.bytes()]; // immutable once written: sharing is safe
    o.length = this.length;
    o.dropped = this.dropped;
    return o;
  }
}

/** Where the program's memory areas are (guest addresses as numbers: all below 4 GiB). */
export interface ProcessLayout {
  /** Lowest address a syscall may read or write (below: system tables, stub, scratch page). */
  userMin: number;
  /** Guest memory size. */
  memory: number;
  /** The program break starts here (page after the image's last segment). */
  brkStart: number;
  /** mmap allocates down from here (the stack's lowest page, less a guard page). */
  mmapTop: number;
  /** The stack: [stackBottom, memory). */
  stackBottom: number;
}

export const MAX_FDS = 256;

export class ProcessState {
  brk: number;
  /** Highest break of this call: pages between the break and it may hold old bytes. */
  brkHigh: number;
  /** Lowest address mmap has handed out (it bumps down from layout.mmapTop). */
  mmapLow: number;
  /** Freed mmap ranges below mmapTop, as sorted disjoint [start, end) pairs. */
  free: [number, number][] = [];
  fds: (OpenFile | undefined)[];
  /** FD_CLOEXEC per descriptor (recorded, for fcntl F_GETFD). */
  cloexec = new Set<number>();
  sigmask = 0n;
  /** Installed struct sigaction bytes (32 each), by signal. */
  sigactions = new Map<number, Uint8Array>();
  umask = 0o022;
  stdout = new OutputStream();
  stderr = new OutputStream();

  constructor(readonly layout: ProcessLayout) {
    this.brk = layout.brkStart;
    this.brkHigh = layout.brkStart;
    this.mmapLow = layout.mmapTop;
    this.fds = [
      { kind: 'stdin', path: '<stdin>', data: new Uint8Array(0), pos: 0 },
      { kind: 'stdout', path: '<stdout>', data: new Uint8Array(0), pos: 0 },
      { kind: 'stderr', path: '<stderr>', data: new Uint8Array(0), pos: 0 },
    ];
  }

  /** A copy that shares nothing mutable with this one (dup'ed descriptors stay shared with each other). */
  clone(): ProcessState {
    const s = new ProcessState(this.layout);
    s.brk = this.brk;
    s.brkHigh = this.brkHigh;
    s.mmapLow = this.mmapLow;
    s.free = this.free.map(([a, b]) => [a, b]);
    const copies = new Map<OpenFile, OpenFile>();
    s.fds = this.fds.map((f) => {
      if (!f) return undefined;
      let c = copies.get(f);
      if (!c) copies.set(f, (c = { ...f }));
      return c;
    });
    s.cloexec = new Set(this.cloexec);
    s.sigmask = this.sigmask;
    s.sigactions = new Map([...this.sigactions].map(([k, v]) => [k, v.slice()]));
    s.umask = this.umask;
    s.stdout = this.stdout.clone();
    s.stderr = this.stderr.clone();
    return s;
  }

  /** The lowest free descriptor ≥ `min`, or -1 when MAX_FDS are open. */
  freeFd(min = 0): number {
    for (let fd = min; fd < MAX_FDS; fd++) if (!this.fds[fd]) return fd;
    return -1;
  }
}
