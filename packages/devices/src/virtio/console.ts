/**
 * virtio-console (virtio 1.2 §5.3), a single port without MULTIPORT: queue 0 receiveq0 (host →
 * guest), queue 1 transmitq0 (guest → host). The host end is `stream`, a Duplex like the UART's.
 *
 * - Guest output: each transmit chain's readable bytes are copied out of guest RAM in slices of
 *   at most 64 KiB and pushed to the stream's readable side. When `push()` returns false (the
 *   host reader is `txHighWater` behind) the device stops taking transmit chains, keeping its
 *   place inside the current one, and resumes when the stream's `_read` says the reader took
 *   some: the guest's queue fills up and its writes wait, nothing is dropped and the host buffer
 *   stays within `txHighWater` plus one slice. Once the stream is destroyed, output is consumed
 *   and discarded (counted in `stats().txDropped`), so the guest never blocks on a dead reader.
 * - Guest input: what the host writes into the stream is queued and handed to receive buffers as
 *   the guest posts them. The write callback is held back while more than `rxLimit` bytes wait,
 *   so a fast writer waits for the guest; the writer's chunk is only referenced while its
 *   callback is held, and copied (at most `rxLimit` bytes left of it) when the callback is called.
 * - Host input survives a driver reset (it was written for whoever reads the console); a
 *   transmit chain in flight does not (the driver dropped its queues).
 */
import { Duplex } from 'node:stream';
import { VIRTIO_DEVICE_ID, gather, type VirtioActivation, type VirtioDevice, type VirtqueueChain } from './types.js';

/** Options of `new VirtioConsole()`. */
export interface VirtioConsoleOptions {
  /** Device name; default "console". */
  name?: string;
  /** Host input bytes queued before the stream's write callback waits; default 64 KiB. */
  rxLimit?: number;
  /** The stream's readable high-water mark: guest output held for the reader before the device stops taking more; default 64 KiB. */
  txHighWater?: number;
}

/** Counters of a `VirtioConsole`. */
export interface VirtioConsoleStats {
  /** Guest output bytes pushed to the stream. */
  txBytes: number;
  /** Guest output bytes discarded because the stream was destroyed. */
  txDropped: number;
  /** Host input bytes handed to the guest. */
  rxBytes: number;
  /** Host input bytes waiting for receive buffers. */
  rxPending: number;
}

/** The console's state for a snapshot. */
export interface VirtioConsoleState {
  /** Host input not yet handed to the guest, base64. */
  input: string;
  /** The transmit chain in flight (popped, partly pushed to the stream), if any. */
  tx: {
    /** The chain's head descriptor. */
    head: number;
    /** Readable bytes of it already pushed to the stream. */
    offset: number;
  } | null;
}

const RECEIVEQ = 0;
const TRANSMITQ = 1;
const QUEUE_SIZE = 256;
const SLICE = 64 << 10;
const EMPTY = Buffer.alloc(0);

type WriteCallback = (error?: Error | null) => void;

interface ConsoleHooks {
  input(chunk: Buffer, done: WriteCallback): void;
  pulled(): void;
  closed(): void;
}

class ConsoleStream extends Duplex {
  readonly #hooks: ConsoleHooks;
  constructor(hooks: ConsoleHooks, highWater: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: highWater });
    this.#hooks = hooks;
  }
  override _read(): void {
    this.#hooks.pulled();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.#hooks.input(chunk, callback);
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#hooks.closed();
    callback(error);
  }
}

/** A virtio console with one port; `stream` is its host end (see the file's notes). */
export class VirtioConsole implements VirtioDevice {
  readonly deviceId = VIRTIO_DEVICE_ID.CONSOLE;
  readonly name: string;
  readonly features = 0n;
  readonly queueCount = 2;
  readonly queueMaxSize = QUEUE_SIZE;
  /** The host end: readable = guest output (transmitq), writable = guest input (receiveq). */
  readonly stream: Duplex;
  readonly #rxLimit: number;
  #ctx: VirtioActivation | undefined;
  /** Host input, oldest first from `#inputHead`; chunks from `#unowned` on are the writer's own buffers (callback held). */
  #input: Buffer[] = [];
  #inputHead = 0;
  #unowned = 0;
  #inputBytes = 0;
  #inputOffset = 0; // bytes of #input[#inputHead] already delivered
  #waiting: WriteCallback | undefined;
  #tx: { chain: VirtqueueChain | undefined; head: number; offset: number } | undefined;
  #txPaused = false;
  #closed = false;
  readonly #stats = { txBytes: 0, txDropped: 0, rxBytes: 0 };

  /** Creates the console and its stream. */
  constructor(options: VirtioConsoleOptions = {}) {
    this.name = options.name ?? 'console';
    this.#rxLimit = Math.max(1, options.rxLimit ?? 64 << 10);
    this.stream = new ConsoleStream({
      input: (chunk, done) => this.#hostInput(chunk, done),
      pulled: () => {
        if (!this.#txPaused) return;
        this.#txPaused = false;
        this.#ctx?.kick(TRANSMITQ);
      },
      closed: () => {
        this.#closed = true;
        this.#txPaused = false;
        this.#release();
        this.#ctx?.kick(TRANSMITQ);
      },
    }, Math.max(1, options.txHighWater ?? 64 << 10));
  }

  /** Byte counters. */
  stats(): VirtioConsoleStats {
    return { ...this.#stats, rxPending: this.#inputBytes };
  }

  readConfig(_offset: number, data: Uint8Array): void {
    // cols, rows, max_nr_ports, emerg_wr: none is offered (no SIZE, MULTIPORT, EMERG_WRITE), all read 0.
    data.fill(0);
  }

  writeConfig(): void {
    // emerg_wr is not offered (no VIRTIO_CONSOLE_F_EMERG_WRITE).
  }

  activate(ctx: VirtioActivation): void {
    this.#ctx = ctx;
  }

  reset(): void {
    this.#ctx = undefined;
    this.#tx = undefined;
  }

  process(index: number): void {
    if (index === RECEIVEQ) this.#receive();
    else if (index === TRANSMITQ) this.#transmit();
  }

  #hostInput(chunk: Buffer, done: WriteCallback): void {
    if (chunk.length > 0) {
      this.#input.push(chunk);
      this.#inputBytes += chunk.length;
    }
    this.#waiting = done;
    if (this.#inputBytes <= this.#rxLimit) this.#release();
    this.#ctx?.kick(RECEIVEQ);
  }

  /**
   * Takes copies of the writer's chunks still queued (at most `rxLimit` bytes once the guest has
   * taken the rest, or the stream is gone) and calls the held write callback: after it, a
   * writer may reuse its buffer.
   */
  #release(): void {
    for (let i = Math.max(this.#unowned, this.#inputHead); i < this.#input.length; i++) {
      const b = this.#input[i]!;
      this.#input[i] = Buffer.from(i === this.#inputHead ? b.subarray(this.#inputOffset) : b);
      if (i === this.#inputHead) this.#inputOffset = 0;
    }
    this.#unowned = this.#input.length;
    const cb = this.#waiting;
    this.#waiting = undefined;
    cb?.();
  }

  #receive(): void {
    const q = this.#ctx?.queues[RECEIVEQ];
    if (!q) return;
    while (this.#inputBytes > 0) {
      const c = q.pop();
      if (!c) break;
      let n = 0;
      for (const w of c.writable) {
        let at = 0;
        while (at < w.length && this.#inputBytes > 0) {
          const head = this.#input[this.#inputHead]!;
          const k = Math.min(w.length - at, head.length - this.#inputOffset);
          w.set(head.subarray(this.#inputOffset, this.#inputOffset + k), at);
          at += k;
          this.#inputOffset += k;
          this.#inputBytes -= k;
          if (this.#inputOffset === head.length) {
            this.#input[this.#inputHead++] = EMPTY;
            this.#inputOffset = 0;
          }
        }
        n += at;
        if (this.#inputBytes === 0) break;
      }
      this.#stats.rxBytes += n;
      q.push(c.head, n);
    }
    // Drop delivered chunks now and then (not per chunk: shifting a long array each time is quadratic).
    if (this.#inputHead > 64 && this.#inputHead * 2 > this.#input.length) {
      this.#input = this.#input.slice(this.#inputHead);
      this.#unowned = Math.max(0, this.#unowned - this.#inputHead);
      this.#inputHead = 0;
    }
    if (this.#waiting && this.#inputBytes <= this.#rxLimit) this.#release();
  }

  #transmit(): void {
    const q = this.#ctx?.queues[TRANSMITQ];
    if (!q) return;
    while (!this.#txPaused) {
      if (this.#tx && !this.#tx.chain) this.#tx.chain = q.chain(this.#tx.head); // resumed after a snapshot
      if (!this.#tx) {
        const c = q.pop();
        if (!c) return;
        this.#tx = { chain: c, head: c.head, offset: 0 };
      }
      const tx = this.#tx;
      const c = tx.chain!;
      while (tx.offset < c.readableLength) {
        const n = Math.min(SLICE, c.readableLength - tx.offset);
        const slice = Buffer.allocUnsafe(n);
        gather(c.readable, tx.offset, slice);
        tx.offset += n;
        if (this.#closed || this.stream.destroyed) {
          this.#stats.txDropped += n;
          continue;
        }
        this.#stats.txBytes += n;
        if (!this.stream.push(slice)) {
          this.#txPaused = true;
          break;
        }
      }
      if (tx.offset >= c.readableLength) {
        this.#tx = undefined;
        q.push(c.head, 0);
      }
    }
  }

  exportState(): VirtioConsoleState {
    const pending = Buffer.concat(this.#input.slice(this.#inputHead)).subarray(this.#inputOffset);
    return { input: pending.toString('base64'), tx: this.#tx ? { head: this.#tx.head, offset: this.#tx.offset } : null };
  }

  importState(state: unknown): void {
    const s = state as VirtioConsoleState | null;
    if (!s || typeof s.input !== 'string' || (s.tx !== null && (typeof s.tx !== 'object' || !Number.isInteger(s.tx.head) || !Number.isInteger(s.tx.offset) || s.tx.offset < 0))) {
      throw new TypeError(`${this.name}: importState: not a virtio-console state`);
    }
    const input = Buffer.from(s.input, 'base64');
    this.#release(); // the writer's buffers are no longer needed (they are replaced)
    this.#input = input.length > 0 ? [input] : [];
    this.#inputHead = 0;
    this.#unowned = this.#input.length;
    this.#inputBytes = input.length;
    this.#inputOffset = 0;
    this.#tx = s.tx ? { chain: undefined, head: s.tx.head, offset: s.tx.offset } : undefined;
  }
}
