/**
 * Signals: actions and the mask are recorded (and read back) but no signal is ever delivered.
 * A signal a program sends itself ends the call as a kill by that signal when its default
 * action would (abort() → "killed by SIGABRT"), is ignored when the default is to ignore it,
 * and is ignored for the stop signals (nothing could continue the program).
 */
import type { SyscallFn, SyscallLayer } from '../syscall-layer.js';
import { PID } from '../syscall-layer.js';
import { E, IGNORED_BY_DEFAULT, SIGNALS, STOP_SIGNALS } from '../errno.js';
import { NR } from './numbers.js';

const SIGSET_SIZE = 8;
const SIGACTION_SIZE = 32;
const SIG_BLOCK = 0;
const SIG_UNBLOCK = 1;
const SIG_SETMASK = 2;
const SS_DISABLE = 2;
/** SIGKILL and SIGSTOP can be neither caught nor blocked. */
const UNBLOCKABLE = (1n << BigInt(SIGNALS.SIGKILL - 1)) | (1n << BigInt(SIGNALS.SIGSTOP - 1));

function send(k: SyscallLayer, sig: number): number {
  if (sig < 0 || sig > 64) return -E.INVAL;
  if (sig === 0 || IGNORED_BY_DEFAULT.has(sig) || STOP_SIGNALS.has(sig)) return 0;
  return k.killedBy(sig);
}

export const SIGNAL_SYSCALLS: Record<number, SyscallFn> = {
  [NR.rt_sigaction]: (k, a, i) => {
    const sig = i[0]!;
    if (a[3] !== SIGSET_SIZE || sig < 1 || sig > 64) return -E.INVAL;
    if (a[1] !== 0 && (sig === SIGNALS.SIGKILL || sig === SIGNALS.SIGSTOP)) return -E.INVAL;
    const act = a[1] !== 0 ? k.readable(a[1]!, SIGACTION_SIZE) : undefined;
    if (a[1] !== 0 && !act) return -E.FAULT;
    if (a[2] !== 0) {
      const old = k.writable(a[2]!, SIGACTION_SIZE);
      if (!old) return -E.FAULT;
      old.set(k.state.sigactions.get(sig) ?? new Uint8Array(SIGACTION_SIZE));
    }
    if (act) k.state.sigactions.set(sig, act.slice());
    return 0;
  },
  [NR.rt_sigprocmask]: (k, a, i) => {
    if (a[3] !== SIGSET_SIZE) return -E.INVAL;
    const s = k.state;
    let next: bigint | undefined;
    if (a[1] !== 0) {
      const set = k.i64(a[1]!);
      if (set === undefined) return -E.FAULT;
      const bits = BigInt.asUintN(64, set) & ~UNBLOCKABLE;
      if (i[0] === SIG_BLOCK) next = s.sigmask | bits;
      else if (i[0] === SIG_UNBLOCK) next = s.sigmask & ~bits;
      else if (i[0] === SIG_SETMASK) next = bits;
      else return -E.INVAL;
    }
    if (a[2] !== 0 && !k.putWords(a[2]!, [s.sigmask])) return -E.FAULT;
    if (next !== undefined) s.sigmask = next;
    return 0;
  },
  [NR.sigaltstack]: (k, a) => {
    if (a[1] !== 0 && !k.putWords(a[1]!, [0, SS_DISABLE, 0])) return -E.FAULT;
    return 0;
  },
  [NR.kill]: (k, _a, i) => (i[0] === PID || i[0] === 0 || i[0] === -1 ? send(k, i[1]!) : -E.SRCH),
  [NR.tkill]: (k, _a, i) => (i[0] === PID ? send(k, i[1]!) : -E.SRCH),
  [NR.tgkill]: (k, _a, i) => (i[0] === PID && i[1] === PID ? send(k, i[2]!) : -E.SRCH),
};
