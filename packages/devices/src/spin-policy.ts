/**
 * When a thread may spin instead of sleeping, and for how long — the policy the dispatcher
 * (dispatcher.ts) applies on the main thread before it sleeps on the doorbell.
 *
 * Waking the main thread from Atomics.waitAsync costs 36–58 µs here (plus the producer's
 * Atomics.notify, 7–21 µs); a main thread that polls the rings sees a record within a
 * microsecond and the producer needs no notify. But a spinning thread takes a core — on a
 * 2-core host the one the vCPU thread it waits for may need — and blocks the event loop. So:
 *  - Spin only while a core is free for it: `freeCores()` — the host's cores minus the threads
 *    runnable now other than this one (/proc/loadavg's "running" count, read at most every
 *    LOAD_SAMPLE_MS, REFUSED_SAMPLE_MS after a refusal) — must be at least 1. On this 2-core host that means: the main thread and
 *    one vCPU thread may run, nothing else; with any other load the dispatcher sleeps at once.
 *  - Spin only when the wait is expected to be short: each waiter keeps a moving average of
 *    how long its recent waits lasted (`AdaptiveSpin`; spun or slept, reported by `ended()`),
 *    and spins, for its whole bound, when that average is within twice the bound (a wait that
 *    slept is measured with its wake-up, 40–60 µs here, in it); when waits are longer
 *    (a guest that computes between exits, an idle VM) it sleeps at once, and it learns from
 *    every wait.
 *  - The bound: `maxUs` per waiter, at most MAX_SPIN_US = 100 µs — the longest the event loop
 *    is held for one wait (the dispatcher still yields to it every 4 ms of work).
 * Measured (bench exit-bus, bus-in vs bus-in-nospin, 2-core kvm_pvm host): with the host
 * otherwise idle a device read costs 63–65 µs with the spin against 129–134 µs without (c-in
 * 35 µs); with ~1 CPU of other load the check refuses nearly every spin and both cost the same.
 * `KVMPOOL_SPIN=0` in the environment turns spinning off; `KVMPOOL_SPIN=force` spins whatever
 * the free cores (for measuring what the check saves; not for production).
 */
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';

/** The longest a waiter spins before it sleeps (µs). */
export const MAX_SPIN_US = 100;
/** How often the host's runnable count is read again (ms) while it allows spinning. */
const LOAD_SAMPLE_MS = 10;
/**
 * … and while it refuses: a refusal often comes from a thread that was runnable for a moment
 * (a kernel worker) and costs every wait until the next look a sleep and a wake-up (40–60 µs
 * each here), so it is looked at again sooner. One look (readFileSync) costs ~12 µs here.
 */
const REFUSED_SAMPLE_MS = 1;

const CORES = availableParallelism();
const DISABLED = process.env.KVMPOOL_SPIN === '0';
const FORCED = process.env.KVMPOOL_SPIN === 'force';
let sampledAt = -Infinity;
let free = 0;

/** Cores free for this thread now: cores − threads runnable other than this one (cached, see LOAD_SAMPLE_MS). */
export function freeCores(now = performance.now()): number {
  if (now - sampledAt < (free >= 1 ? LOAD_SAMPLE_MS : REFUSED_SAMPLE_MS)) return free;
  sampledAt = now;
  try {
    // "0.52 0.58 0.59 3/512 12345": the fourth field is runnable/total scheduling entities (this thread counts as one).
    const f = readFileSync('/proc/loadavg', 'latin1').split(' ')[3] ?? '';
    const running = Number.parseInt(f, 10);
    free = Number.isFinite(running) ? CORES - Math.max(0, running - 1) : 0;
  } catch {
    free = 0;
  }
  return free;
}

/** One waiter's spin bound, adapted to how long its waits last. */
export class AdaptiveSpin {
  readonly #free: (now: number) => number;
  readonly #maxUs: number;
  /** Moving average of recent waits, µs. */
  #avgUs = MAX_SPIN_US / 2;
  #t0 = 0;
  /** Spins answered / run out, for stats and tests. */
  caught = 0;
  /** Spins that ended without the awaited change (the wait then slept). */
  missed = 0;

  /** `maxUs`: this waiter's bound (≤ MAX_SPIN_US; 0 never spins); `free`: the free-core measure (tests pass their own). */
  constructor(maxUs: number = MAX_SPIN_US, free: (now: number) => number = freeCores) {
    this.#maxUs = Math.max(0, Math.min(MAX_SPIN_US, maxUs));
    this.#free = free;
  }

  /** How long the next spin may last, µs (0: sleep at once). */
  get boundUs(): number {
    // A wait that slept is measured with the wake-up in it (~40–60 µs here), so the average
    // runs high: waits averaging up to twice the bound still spin, for the whole bound.
    return this.#avgUs <= 2 * this.#maxUs ? this.#maxUs : 0;
  }

  /**
   * Begins a wait: spins while `ready()` is false, at most `boundUs` and only with a core free;
   * returns true if `ready()` became true (else the caller sleeps). Call `ended()` when the
   * wait is over either way.
   */
  spin(ready: () => boolean): boolean {
    const t0 = (this.#t0 = performance.now());
    if (DISABLED) return false;
    const bound = FORCED ? this.#maxUs : this.boundUs;
    if (bound === 0 || (!FORCED && this.#free(t0) < 1)) return false;
    const end = t0 + bound / 1000;
    do {
      if (ready()) {
        this.caught++;
        return true;
      }
    } while (performance.now() < end);
    this.missed++;
    return false;
  }

  /** The wait begun by the last `spin()` is over: learn its length. */
  ended(): void {
    const us = (performance.now() - this.#t0) * 1000;
    this.#avgUs = this.#avgUs * 0.75 + Math.min(us, 100 * MAX_SPIN_US) * 0.25;
  }
}
