/**
 * Time and randomness. Clocks read the host's (there is no vDSO: with no AT_SYSINFO_EHDR libc
 * makes these syscalls). Sleeps really sleep, in steps that end at the call's deadline or when it
 * is cancelled. getrandom gives fresh bytes from the host's CSPRNG every time, so clones of one
 * pristine snapshot never share random state.
 */
import { getRandomValues } from 'node:crypto';
import type { SyscallFn, SyscallLayer } from '../syscall-layer.js';
import { E } from '../errno.js';
import { NR } from './numbers.js';

const CLOCK = { REALTIME: 0, MONOTONIC: 1, PROCESS_CPUTIME: 2, THREAD_CPUTIME: 3, MONOTONIC_RAW: 4, REALTIME_COARSE: 5, MONOTONIC_COARSE: 6, BOOTTIME: 7 } as const;
const TIMER_ABSTIME = 1;
/** Most bytes one getrandom returns (a short read, as Linux allows). */
const MAX_RANDOM = 1 << 20;
const NS = 1_000_000_000n;

/** The clock's time in ns, or undefined for an unknown clock. */
function clockNs(id: number): bigint | undefined {
  switch (id) {
    case CLOCK.REALTIME:
    case CLOCK.REALTIME_COARSE:
      return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
    case CLOCK.MONOTONIC:
    case CLOCK.MONOTONIC_RAW:
    case CLOCK.MONOTONIC_COARSE:
    case CLOCK.BOOTTIME:
      return process.hrtime.bigint();
    case CLOCK.PROCESS_CPUTIME:
    case CLOCK.THREAD_CPUTIME:
      return BigInt(Math.round(process.cpuUsage().user * 1000));
    default:
      return undefined;
  }
}

/** A struct timespec at ptr, in ns; or -errno. */
function timespec(k: SyscallLayer, ptr: number): bigint | number {
  const sec = k.i64(ptr);
  const nsec = k.i64(ptr + 8);
  if (sec === undefined || nsec === undefined) return -E.FAULT;
  if (sec < 0n || nsec < 0n || nsec >= NS) return -E.INVAL;
  return sec * NS + nsec;
}

function sleepFor(k: SyscallLayer, ns: bigint, rem: number): number {
  if (rem !== 0 && !k.inRange(rem, 16)) return -E.FAULT;
  k.host.sleep(Number(ns / 1_000_000n) + (ns % 1_000_000n > 0n ? 1 : 0));
  if (rem !== 0) k.putWords(rem, [0, 0]);
  return 0;
}

export const TIME_SYSCALLS: Record<number, SyscallFn> = {
  [NR.clock_gettime]: (k, a, i) => {
    const t = clockNs(i[0]!);
    if (t === undefined) return -E.INVAL;
    return k.putWords(a[1]!, [t / NS, t % NS]) ? 0 : -E.FAULT;
  },
  [NR.clock_getres]: (k, a, i) => {
    if (clockNs(i[0]!) === undefined) return -E.INVAL;
    return a[1] === 0 || k.putWords(a[1]!, [0, 1]) ? 0 : -E.FAULT;
  },
  [NR.gettimeofday]: (k, a) => {
    const t = clockNs(CLOCK.REALTIME)!;
    if (a[0] !== 0 && !k.putWords(a[0]!, [t / NS, (t % NS) / 1000n])) return -E.FAULT;
    if (a[1] !== 0 && !k.putWords(a[1]!, [0])) return -E.FAULT;
    return 0;
  },
  [NR.time]: (k, a) => {
    const s = clockNs(CLOCK.REALTIME)! / NS;
    if (a[0] !== 0 && !k.putWords(a[0]!, [s])) return -E.FAULT;
    return Number(s);
  },
  [NR.nanosleep]: (k, a) => {
    const ns = timespec(k, a[0]!);
    return typeof ns === 'number' ? ns : sleepFor(k, ns, a[1]!);
  },
  [NR.clock_nanosleep]: (k, a, i) => {
    const now = clockNs(i[0]!);
    if (now === undefined) return -E.INVAL;
    const ns = timespec(k, a[2]!);
    if (typeof ns === 'number') return ns;
    const rel = i[1]! & TIMER_ABSTIME ? (ns > now ? ns - now : 0n) : ns;
    return sleepFor(k, rel, i[1]! & TIMER_ABSTIME ? 0 : a[3]!);
  },
  [NR.getrandom]: (k, a) => {
    const len = Math.min(a[1]!, MAX_RANDOM);
    const out = k.writable(a[0]!, len);
    if (!out) return -E.FAULT;
    for (let at = 0; at < len; at += 65536) getRandomValues(out.subarray(at, Math.min(len, at + 65536)));
    return len;
  },
};
