/** Messages between the `exit-bus` probes (main thread) and their worker (exit-bus-probe-worker.ts). */

export type ProbeRequest =
  | { op: 'init'; vmFd: number }
  | { op: 'direct'; k: number }
  /** Runs k exits; after each, bumps word 0 of `bell` and notifies it (a doorbell). */
  | { op: 'notify'; k: number; bell: SharedArrayBuffer }
  /** n times, 1 ms apart: stamps hrtime into `bell` (BigInt64 at byte 8), bumps word 0, notifies. */
  | { op: 'wake'; n: number; bell: SharedArrayBuffer }
  /**
   * Runs k exits; after each, a read round trip with the main thread through `words` (see
   * RT): the request is published and the main thread notified only if it said it sleeps;
   * the reply is awaited with Atomics.wait (`spin` false) or by spinning on it (`spin` true,
   * and the main thread is told so, to skip its notify).
   */
  | { op: 'roundtrip'; k: number; words: SharedArrayBuffer; spin: boolean }
  | { op: 'close' };

/** Int32 words of the round-trip probe. */
export const RT = { REQ: 0, REP: 1, MAIN_SLEEPING: 2, WORKER_SPINNING: 3, DONE: 4, WORDS: 8 } as const;

export interface ProbeAnswer {
  /** Total ns of the timed part. */
  ns: number;
  /** ns spent inside Atomics.notify (notify op). */
  notifyNs?: number;
}
