/**
 * The call channel between a SandboxPool and one of its workers: a SharedArrayBuffer holding
 * one request and its reply. Piscina starts the workers and runs one long-lived `serve` task
 * in each; calls then travel through the channel (a store and a futex wake each way) instead
 * of a message per call, which costs an order of magnitude less.
 *
 *   [ header: 16 Int32 words | name 256 B | meta (JSON: error, prints) 64 KiB | input | output ]
 *
 * Ordering: the main thread fills name, input and the header fields, then `Atomics.store`s
 * REQUEST; the worker `Atomics.load`s REQUEST before reading them. The worker fills output and
 * meta, then `Atomics.store`s DONE; the main thread reads them after loading DONE. Each side
 * touches the plain areas only between those two synchronising accesses.
 */
export const CH = {
  /** Sequence of the last request posted (main thread). */
  REQUEST: 0,
  /** Sequence of the last request finished (worker). */
  DONE: 1,
  /** Non-zero: the worker's serve loop returns. */
  STOP: 2,
  NAME_LEN: 3,
  INPUT_LEN: 4,
  TIMEOUT_MS: 5,
  CONTROL_SLOT: 6,
  /** 1 when the call succeeded. */
  OK: 7,
  OUTPUT_LEN: 8,
  META_LEN: 9,
  RESET_PAGES: 10,
  MICROS: 11,
  WORDS: 16,
} as const;

const HEADER = CH.WORDS * 4;
const NAME_BYTES = 256;
const META_BYTES = 64 * 1024;

export interface ChannelLayout {
  name: number;
  meta: number;
  input: number;
  output: number;
  bytes: number;
}

export function channelLayout(inputSize: number, outputSize: number): ChannelLayout {
  const name = HEADER;
  const meta = name + NAME_BYTES;
  const input = meta + META_BYTES;
  const output = input + inputSize;
  return { name, meta, input, output, bytes: output + outputSize };
}

export const CHANNEL_NAME_BYTES = NAME_BYTES;
export const CHANNEL_META_BYTES = META_BYTES;
