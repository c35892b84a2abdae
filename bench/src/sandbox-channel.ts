/**
 * The main-thread end of the SharedArrayBuffer channel of sandbox-channel-worker.ts (used by
 * the `sandbox` benchmark's --profile breakdown).
 */
import { Worker } from 'node:worker_threads';

/** Int32 word indices of the control block, then byte offsets of the data. */
export const CHANNEL = { REQUEST: 0, REPLY: 1, LENGTH: 2, STOP: 3, WORDS: 16, INPUT: 64, INPUT_CAP: 4096, OUTPUT: 64 + 4096, BYTES: 64 + 4096 + 64 } as const;

export interface ChannelWorkerData {
  sab: SharedArrayBuffer;
  /** Run SandboxVm.call('sum') on this guest in the worker, instead of summing in JS. */
  vm?: { elf: Uint8Array; memory: number; inputSize: number; outputSize: number };
}

export class SabChannel {
  readonly #worker: Worker;
  readonly #ctl: Int32Array;
  readonly #bytes: Uint8Array;
  #seq = 0;

  /** Time the last request's work took in the worker, ns. */
  lastWorkNs = 0;

  constructor(vm?: ChannelWorkerData['vm']) {
    const sab = new SharedArrayBuffer(CHANNEL.BYTES);
    this.#ctl = new Int32Array(sab, 0, CHANNEL.WORDS);
    this.#bytes = new Uint8Array(sab);
    const workerData: ChannelWorkerData = vm ? { sab, vm } : { sab };
    this.#worker = new Worker(new URL('./sandbox-channel-worker.js', import.meta.url), { workerData });
  }

  /** Sends `input`, waits for the reply, returns the 8 output bytes. */
  async call(input: Uint8Array): Promise<Uint8Array> {
    if (input.length > CHANNEL.INPUT_CAP) throw new RangeError(`SabChannel: input of ${input.length} bytes is too long`);
    this.#bytes.set(input, CHANNEL.INPUT);
    Atomics.store(this.#ctl, CHANNEL.LENGTH, input.length);
    const seq = ++this.#seq;
    Atomics.store(this.#ctl, CHANNEL.REQUEST, seq);
    Atomics.notify(this.#ctl, CHANNEL.REQUEST);
    while (Atomics.load(this.#ctl, CHANNEL.REPLY) !== seq) {
      const w = Atomics.waitAsync(this.#ctl, CHANNEL.REPLY, seq - 1);
      if (w.async) await w.value;
    }
    this.lastWorkNs = new DataView(this.#bytes.buffer, CHANNEL.OUTPUT + 8, 8).getFloat64(0, true) * 1000;
    return this.#bytes.slice(CHANNEL.OUTPUT, CHANNEL.OUTPUT + 8);
  }

  async close(): Promise<void> {
    Atomics.store(this.#ctl, CHANNEL.STOP, 1);
    Atomics.add(this.#ctl, CHANNEL.REQUEST, 1);
    Atomics.notify(this.#ctl, CHANNEL.REQUEST);
    await new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
  }
}
