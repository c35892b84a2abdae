/**
 * The process: exit, identity, limits, the system's description, TLS (arch_prctl) and the
 * single-threaded futex. There is one process with one thread: clone, fork, vfork and execve
 * return ENOSYS (programs that try fall back or report it), wait4 ECHILD.
 */
import type { SyscallFn, SyscallLayer } from '../syscall-layer.js';
import { PID } from '../syscall-layer.js';
import { GuestError } from '../../errors.js';
import { E } from '../errno.js';
import { MAX_FDS } from '../process-state.js';
import { NR } from './numbers.js';

const ARCH = { SET_GS: 0x1001, SET_FS: 0x1002, GET_FS: 0x1003, GET_GS: 0x1004 } as const;
const FUTEX = { WAIT: 0, WAKE: 1, WAIT_BITSET: 9, WAKE_BITSET: 10, CMD_MASK: 0x7f } as const;
const PR = { SET_NAME: 15, GET_NAME: 16 } as const;
const RLIM_INFINITY = (1n << 64n) - 1n;
const RLIMIT = { STACK: 3, NOFILE: 7, AS: 9, NLIMITS: 16 } as const;
/** Canonical user addresses: below 2^47. */
const USER_TOP = 2n ** 47n;

const enc = new TextEncoder();

function utsField(out: Uint8Array, n: number, s: string): void {
  out.set(enc.encode(s).subarray(0, 64), n * 65);
}

function rlimit(k: SyscallLayer, resource: number): [bigint, bigint] | undefined {
  if (resource < 0 || resource >= RLIMIT.NLIMITS) return undefined;
  const L = k.layout;
  if (resource === RLIMIT.STACK) return [BigInt(L.memory - L.stackBottom), BigInt(L.memory - L.stackBottom)];
  if (resource === RLIMIT.NOFILE) return [BigInt(MAX_FDS), BigInt(MAX_FDS)];
  if (resource === RLIMIT.AS) return [BigInt(L.memory), BigInt(L.memory)];
  return [RLIM_INFINITY, RLIM_INFINITY];
}

const self = (pid: number): boolean => pid === 0 || pid === PID;

function archPrctl(k: SyscallLayer, code: number, addr: number): number {
  switch (code) {
    case ARCH.SET_FS:
    case ARCH.SET_GS:
      if (BigInt(addr) >= USER_TOP) return -E.PERM;
      return k.host.setSegmentBase(code === ARCH.SET_FS ? 'fs' : 'gs', BigInt(addr)) ? 0 : -E.PERM;
    case ARCH.GET_FS:
    case ARCH.GET_GS:
      return k.putWords(addr, [k.host.getSegmentBase(code === ARCH.GET_FS ? 'fs' : 'gs')]) ? 0 : -E.FAULT;
    default:
      return -E.INVAL;
  }
}

function futex(k: SyscallLayer, a: Float64Array, i: Int32Array): number {
  const op = i[1]! & FUTEX.CMD_MASK;
  if (op === FUTEX.WAKE || op === FUTEX.WAKE_BITSET) return 0; // nobody else waits
  if (op !== FUTEX.WAIT && op !== FUTEX.WAIT_BITSET) return -E.NOSYS;
  if (a[0]! % 4 !== 0) return -E.INVAL;
  const word = k.u32(a[0]!);
  if (word === undefined) return -E.FAULT;
  if ((word | 0) !== i[2]) return -E.AGAIN;
  // The only thread would wait for a wake nobody can send: with a timeout that is ETIMEDOUT,
  // without one the program has deadlocked itself.
  if (a[3] !== 0) return -E.TIMEDOUT;
  k.end = { kind: 'error', error: new GuestError('the program waits on a futex with no other thread to wake it (a deadlock)', -E.DEADLK) };
  return -E.INTR;
}

export const PROCESS_SYSCALLS: Record<number, SyscallFn> = {
  [NR.exit]: (k, _a, i) => k.exit(i[0]!),
  [NR.exit_group]: (k, _a, i) => k.exit(i[0]!),
  [NR.getpid]: () => PID,
  [NR.gettid]: () => PID,
  [NR.getppid]: () => 1,
  [NR.getpgrp]: () => PID,
  [NR.getpgid]: (_k, _a, i) => (self(i[0]!) ? PID : -E.SRCH),
  [NR.getsid]: (_k, _a, i) => (self(i[0]!) ? PID : -E.SRCH),
  [NR.setsid]: () => -E.PERM,
  [NR.setpgid]: () => -E.PERM,
  [NR.getuid]: (k) => k.config.ids.uid,
  [NR.geteuid]: (k) => k.config.ids.uid,
  [NR.getgid]: (k) => k.config.ids.gid,
  [NR.getegid]: (k) => k.config.ids.gid,
  [NR.getresuid]: (k, a) => putIds(k, [a[0]!, a[1]!, a[2]!], k.config.ids.uid),
  [NR.getresgid]: (k, a) => putIds(k, [a[0]!, a[1]!, a[2]!], k.config.ids.gid),
  [NR.getgroups]: () => 0,
  [NR.setuid]: () => -E.PERM,
  [NR.setgid]: () => -E.PERM,
  [NR.set_tid_address]: () => PID,
  [NR.set_robust_list]: () => 0,
  [NR.get_robust_list]: () => -E.NOSYS,
  // glibc registers rseq when the kernel offers it and carries on without it otherwise.
  [NR.rseq]: () => -E.NOSYS,
  [NR.arch_prctl]: (k, a, i) => archPrctl(k, i[0]!, a[1]!),
  [NR.prctl]: (k, a, i) => {
    if (i[0] === PR.SET_NAME) return 0;
    if (i[0] === PR.GET_NAME) {
      const out = k.writable(a[1]!, 16);
      if (!out) return -E.FAULT;
      out.fill(0);
      out.set(enc.encode('program'));
      return 0;
    }
    return -E.INVAL;
  },
  [NR.uname]: (k, a) => {
    const out = k.writable(a[0]!, 6 * 65);
    if (!out) return -E.FAULT;
    out.fill(0);
    ['Linux', 'kvmpool', '6.1.0-kvmpool', '#1 SMP', 'x86_64', '(none)'].forEach((s, n) => utsField(out, n, s));
    return 0;
  },
  [NR.sysinfo]: (k, a) => {
    const out = k.writable(a[0]!, 112);
    if (!out) return -E.FAULT;
    out.fill(0);
    const v = new DataView(out.buffer, out.byteOffset, 112);
    v.setBigUint64(0, BigInt(Math.floor(performance.now() / 1000)), true); // uptime
    v.setBigUint64(32, BigInt(k.size), true); // totalram
    v.setBigUint64(40, BigInt(Math.max(0, k.state.mmapLow - k.state.brk)), true); // freeram
    v.setUint16(80, 1, true); // procs
    v.setUint32(104, 1, true); // mem_unit
    return 0;
  },
  [NR.prlimit64]: (k, a, i) => {
    if (!self(i[0]!)) return -E.SRCH;
    const lim = rlimit(k, i[1]!);
    if (!lim) return -E.INVAL;
    if (a[3] !== 0 && !k.putWords(a[3]!, lim)) return -E.FAULT;
    return 0;
  },
  [NR.getrlimit]: (k, a, i) => {
    const lim = rlimit(k, i[0]!);
    if (!lim) return -E.INVAL;
    return k.putWords(a[1]!, lim) ? 0 : -E.FAULT;
  },
  [NR.setrlimit]: (k, _a, i) => (rlimit(k, i[0]!) ? 0 : -E.INVAL),
  [NR.getrusage]: (k, a) => {
    const out = k.writable(a[1]!, 144);
    if (!out) return -E.FAULT;
    out.fill(0);
    return 0;
  },
  [NR.times]: (k, a) => {
    if (a[0] !== 0 && !k.putWords(a[0]!, [0, 0, 0, 0])) return -E.FAULT;
    return Math.floor(performance.now() / 10);
  },
  [NR.sched_getaffinity]: (k, a, i) => {
    const len = a[1]!;
    if (!self(i[0]!)) return -E.SRCH;
    if (len < 8 || len % 8 !== 0) return -E.INVAL;
    return k.putWords(a[2]!, [1]) ? 8 : -E.FAULT;
  },
  [NR.sched_setaffinity]: () => 0,
  [NR.sched_yield]: () => 0,
  [NR.futex]: futex,
  [NR.clone]: () => -E.NOSYS,
  [NR.clone3]: () => -E.NOSYS,
  [NR.fork]: () => -E.NOSYS,
  [NR.vfork]: () => -E.NOSYS,
  [NR.execve]: () => -E.NOSYS,
  [NR.execveat]: () => -E.NOSYS,
  [NR.wait4]: () => -E.CHILD,
};

/** Writes `id` as a u32 at each pointer (getresuid: real, effective, saved). */
function putIds(k: SyscallLayer, ptrs: number[], id: number): number {
  for (const p of ptrs) {
    if (!k.inRange(p, 4)) return -E.FAULT;
    k.writable(p, 4);
    k.view.setUint32(p, id, true);
  }
  return 0;
}
