/**
 * The call channel between a SandboxPool and one of its worker threads: a SharedArrayBuffer
 * holding SLOTS requests and their replies, made fresh for every worker (a replaced worker's
 * late writes land in a buffer nobody reads). Calls travel through it as a store and a futex
 * wake each way instead of a message per call.
 *
 *   [ header: CH.WORDS words | SLOTS × SLOT.WORDS words | SLOTS × (name 256 B | reply 64 KiB | input | output) ]
 *
 * Requests are numbered (REQUEST, DONE; int32, compared modulo 2^32) and request `seq` uses
 * slot `seq % SLOTS`. The main thread may post requests seq+1… while the worker runs seq
 * (pipelined calls, pool.ts): the worker then starts the next without waiting for the main thread
 * to wake, read seq's reply and post again. The worker serves requests strictly in order, one at
 * a time.
 *
 * Ordering: the main thread fills a slot's name, input and words, then `Atomics.store`s
 * REQUEST; the worker `Atomics.load`s REQUEST before reading them. The worker fills the slot's
 * output, reply and words, then `Atomics.store`s DONE; the main thread reads them after loading
 * DONE. A slot is written again only for request seq+SLOTS, which the main thread posts after it
 * has read seq's reply: each side touches a slot's plain areas only between those synchronising
 * accesses. The worker's start follows the same rule with STATE in place of DONE (slot 0's reply
 * carries a start error).
 *
 * CLAIM decides who has a posted, not yet started request: the worker `compareExchange`s it 0→1
 * before it starts; the main thread may take a pipelined request back for an idle worker
 * (work stealing) by `compareExchange` 0→2. Exactly one of them wins; a request taken back is
 * answered with STOLEN and not run.
 *
 * CANCEL and TID of a slot are its call's control words (CALL_CONTROL of sandbox-vm.ts), see
 * pool-seat.ts for the cancel protocol.
 */
export const CH = {
  /** Sequence of the last request posted (main thread). */
  REQUEST: 0,
  /** Sequence of the last request finished (worker). */
  DONE: 1,
  /** Non-zero: the worker's serve loop returns after the call it runs. */
  STOP: 2,
  /** The worker thread's id, published once KICK_SIGNAL is blocked in it (0 before). */
  WORKER_TID: 3,
  /** The worker's start: WORKER_STATE. */
  STATE: 4,
  /**
   * Where the worker's time stamps of the last call start (Float64 index into the header, words
   * 6–11, see `CALL_STAMP`): wall-clock ms (performance.timeOrigin + performance.now(), comparable
   * across threads to a few µs), for the per-call breakdown of `npm run bench -- sandbox --profile`.
   */
  STAMPS_F64: 3,
  WORDS: 16,
} as const;

/**
 * Requests a channel holds at once: the one running and up to three pipelined behind it (a power
 * of two: `slotOf`). One behind is not always enough: the main thread's wake-up and turn take
 * about as long as a warm call, so the worker would often wait for the next post.
 */
export const SLOTS = 4;

/** The words of one slot, from `slotWord(slot, 0)`. */
export const SLOT = {
  NAME_LEN: 0,
  INPUT_LEN: 1,
  TIMEOUT_MS: 2,
  /** The call's control words (CALL_CONTROL order): cancel flag (main thread), running thread id (worker). */
  CANCEL: 3,
  TID: 4,
  /** 1 when the call succeeded. */
  OK: 5,
  OUTPUT_LEN: 6,
  RESET_PAGES: 7,
  MICROS: 8,
  /** The host-call slot this call may use (-1: none). */
  REMOTE_SLOT: 9,
  /** Set by the worker when it gave up waiting for a host call on REMOTE_SLOT. */
  REMOTE_ABANDONED: 10,
  REPLY_LEN: 11,
  /** 0 posted, CLAIMED by the worker, STOLEN back by the main thread (see above). */
  CLAIM: 12,
  WORDS: 16,
} as const;

export const CLAIM = { POSTED: 0, CLAIMED: 1, STOLEN: 2 } as const;

/** The slot of request `seq`. */
export function slotOf(seq: number): number {
  return seq & (SLOTS - 1);
}

/** Int32 index of word `field` (SLOT) of slot `slot`. */
export function slotWord(slot: number, field: number): number {
  return CH.WORDS + slot * SLOT.WORDS + field;
}

/** Whether request `seq` is finished when DONE is `done` (modulo 2^32). */
export function isDone(done: number, seq: number): boolean {
  return ((done - seq) | 0) >= 0;
}

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

/** The header's stamp area as Float64s (words 6–11). */
export function stampView(channel: SharedArrayBuffer): Float64Array {
  return new Float64Array(channel, CH.STAMPS_F64 * 8, CALL_STAMP.COUNT);
}

export const WORKER_STATE = { STARTING: 0, READY: 1, FAILED: 2 } as const;

/** Int32 words of the header and the slots' words: the length of an Int32Array over them. */
export const HEADER_WORDS = CH.WORDS + SLOTS * SLOT.WORDS;
const HEADER = HEADER_WORDS * 4;
const NAME_BYTES = 256;
const REPLY_BYTES = 64 * 1024;

/** Byte offsets of one slot's areas. */
export interface SlotLayout {
  name: number;
  reply: number;
  input: number;
  output: number;
}

export interface ChannelLayout {
  slots: readonly SlotLayout[];
  bytes: number;
}

export function channelLayout(inputSize: number, outputSize: number): ChannelLayout {
  const slots: SlotLayout[] = [];
  let at = HEADER;
  for (let i = 0; i < SLOTS; i++) {
    const name = at;
    const reply = name + NAME_BYTES;
    const input = reply + REPLY_BYTES;
    const output = input + inputSize;
    slots.push({ name, reply, input, output });
    at = output + outputSize;
  }
  return { slots, bytes: at };
}

export const CHANNEL_NAME_BYTES = NAME_BYTES;
export const CHANNEL_REPLY_BYTES = REPLY_BYTES;
