/** Linux errno values (asm-generic/errno-base.h, errno.h) the syscall layer returns, negated. */
export const E = {
  PERM: 1, NOENT: 2, SRCH: 3, INTR: 4, IO: 5, BADF: 9, CHILD: 10, AGAIN: 11, NOMEM: 12, ACCES: 13, FAULT: 14,
  EXIST: 17, NOTDIR: 20, ISDIR: 21, INVAL: 22, MFILE: 24, NOTTY: 25, SPIPE: 29, ROFS: 30, RANGE: 34,
  DEADLK: 35, NAMETOOLONG: 36, NOSYS: 38, OVERFLOW: 75, TIMEDOUT: 110,
} as const;

/** Linux signal numbers (x86-64), by name. */
export const SIGNALS = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9, SIGUSR1: 10,
  SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17, SIGCONT: 18, SIGSTOP: 19,
  SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26, SIGPROF: 27, SIGWINCH: 28,
  SIGIO: 29, SIGPWR: 30, SIGSYS: 31,
} as const;

export type SignalName = keyof typeof SIGNALS;

const BY_NUMBER = new Map<number, SignalName>(Object.entries(SIGNALS).map(([k, v]) => [v, k as SignalName]));

/** `SIGABRT` for 6; `SIG34` for a real-time signal. */
export function signalName(n: number): string {
  return BY_NUMBER.get(n) ?? `SIG${n}`;
}

/** Signals whose default action is to do nothing (the rest end the process, or stop it). */
export const IGNORED_BY_DEFAULT: ReadonlySet<number> = new Set([SIGNALS.SIGCHLD, SIGNALS.SIGCONT, SIGNALS.SIGURG, SIGNALS.SIGWINCH]);
/** Stop signals: with no other process to continue it, kvmpool treats a stop as ignored. */
export const STOP_SIGNALS: ReadonlySet<number> = new Set([SIGNALS.SIGSTOP, SIGNALS.SIGTSTP, SIGNALS.SIGTTIN, SIGNALS.SIGTTOU]);
