/**
 * The call channel between a SandboxPool and one of its worker threads: a SharedArrayBuffer
 * holding one request and its reply, made fresh for every worker (a replaced worker's late
 * writes land in a buffer nobody reads). Calls travel through it as a store and a futex wake
 * each way instead of a message per call.
 *
 *   [ header: 32 Int32 words | name 256 B | reply 64 KiB (reply-codec.ts) | input | output ]
 *
 * Ordering: the main thread fills name, input and the request words, then `Atomics.store`s
 * REQUEST; the worker `Atomics.load`s REQUEST before reading them. The worker fills output,
 * reply and the reply words, then `Atomics.store`s DONE; the main thread reads them after
 * loading DONE. Each side touches the plain areas only between those two synchronising
 * accesses. The worker's start follows the same rule with STATE in place of DONE.
 *
 * CANCEL and TID are the running call's control words (CALL_CONTROL of sandbox-vm.ts), see
 * pool-seat.ts for the cancel protocol.
 */
export const CH = {
  /** Sequence of the last request posted (main thread). */
  REQUEST: 0,
  /** Sequence of the last request finished (worker). */
  DONE: 1,
  /** Non-zero: the worker's serve loop returns after the call it runs. */
  STOP: 2,
  NAME_LEN: 3,
  INPUT_LEN: 4,
  TIMEOUT_MS: 5,
  /** The call's control words: cancel flag (main thread), running thread id (worker). */
  CANCEL: 6,
  TID: 7,
  /** 1 when the call succeeded. */
  OK: 8,
  OUTPUT_LEN: 9,
  RESET_PAGES: 10,
  MICROS: 11,
  /** The host-call slot this call may use (-1: none). */
  REMOTE_SLOT: 12,
  /** Set by the worker when it gave up waiting for a host call on REMOTE_SLOT. */
  REMOTE_ABANDONED: 13,
  /** The worker thread's id, published once KICK_SIGNAL is blocked in it (0 before). */
  WORKER_TID: 14,
  REPLY_LEN: 15,
  /** The worker's start: WORKER_STATE. */
  STATE: 16,
  /**
   * Where the worker's time stamps of the last call start (Float64 index into the header, see
   * `CALL_STAMP`): wall-clock ms (performance.timeOrigin + performance.now(), comparable across
   * threads to a few µs), for the per-call breakdown of `npm run bench -- sandbox --profile`.
   */
  STAMPS_F64: 10,
  WORDS: 32,
} as const;

/** The worker's stamps of a call, Float64 indices from CH.STAMPS_F64. */
export const CALL_STAMP = {
  /** The worker saw the request. */
  SEEN: 0,
  /** The VM's call (run + reset) returned. */
  CALLED: 1,
  /** The reply was written, just before DONE. */
  DONE: 2,
  COUNT: 3,
} as const;

/** A clock every thread of the process reads alike (ms, µs resolution): for cross-thread stamps. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The header's stamp area as Float64s (words 20–25). */
export function stampView(channel: SharedArrayBuffer): Float64Array {
  return new Float64Array(channel, CH.STAMPS_F64 * 8, CALL_STAMP.COUNT);
}

export const WORKER_STATE = { STARTING: 0, READY: 1, FAILED: 2 } as const;

const HEADER = CH.WORDS * 4;
const NAME_BYTES = 256;
const REPLY_BYTES = 64 * 1024;

export interface ChannelLayout {
  name: number;
  reply: number;
  input: number;
  output: number;
  bytes: number;
}

export function channelLayout(inputSize: number, outputSize: number): ChannelLayout {
  const name = HEADER;
  const reply = name + NAME_BYTES;
  const input = reply + REPLY_BYTES;
  const output = input + inputSize;
  return { name, reply, input, output, bytes: output + outputSize };
}

export const CHANNEL_NAME_BYTES = NAME_BYTES;
export const CHANNEL_REPLY_BYTES = REPLY_BYTES;
