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

/**
 * What a program wrote to stdout or stderr, up to a limit (the config's maxOutput): one buffer
 * that doubles as it fills, never past the limit, so a million one-byte writes cost a few
 * copies, not a million objects.
 */
export class OutputStream {
  #buf: Uint8Array = new Uint8Array(0);
  length = 0;
  /** Bytes past the limit that were dropped. */
  dropped = 0;

  append(bytes: Uint8Array, limit: number): void {
    const take = Math.min(Math.max(0, limit - this.length), bytes.length);
    if (take > 0) {
      if (this.length + take > this.#buf.length) {
        const grown = new Uint8Array(Math.min(limit, Math.max(4096, 2 * this.#buf.length, this.length + take)));
        grown.set(this.#buf.subarray(0, this.length));
        this.#buf = grown;
      }
      this.#buf.set(bytes.subarray(0, take), this.length);
      this.length += take;
    }
    this.dropped += bytes.length - take;
  }

  /** A copy of what was written. */
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }

  clone(): OutputStream {
    const o = new OutputStream();
    o.#buf = this.bytes();
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
