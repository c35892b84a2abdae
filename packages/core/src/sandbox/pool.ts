/**
 * SandboxPool: many short-lived, hardware-isolated calls in parallel. Each piscina worker keeps
 * one warm sandbox VM; every call runs on a pristine copy of the guest's initialised state.
 *
 *   const pool = new SandboxPool({ guest: 'sha.elf', memory: '8 MiB', timeoutMs: 100 });
 *   const out = await pool.call('sha256', input, { signal });
 *   await pool.close();
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { Bus, Dispatcher, createDoorbell, createRingBuffer, type Device } from '@kvmpool/devices';
import { parseElf, type ElfImage } from '../loader/elf.js';
import { KICK_SIGNAL } from '../machine/protocol.js';
import { signalThread } from '../signals.js';
import { parseSize, type Size } from '../util/size.js';
import { CALL_CONTROL, asBytes, sandboxLayout } from './sandbox-vm.js';
import type { PoolWorkerData, ServeTask } from './pool-worker.js';
import { CH, CHANNEL_NAME_BYTES, channelLayout, type ChannelLayout } from './call-channel.js';
import { CALL_BUFFER_BYTES, CB, REMOTE_CALL_PORT, REMOTE_STATUS, type RemoteSlot } from './remote-call.js';
import { AbortError, decodeError, type EncodedError } from '../errors.js';
import { LatencyHistogram, type LatencySummary } from './histogram.js';

type Reply =
  | { ok: true; output: Uint8Array; prints: string[]; resetPages: number }
  | { ok: false; error: EncodedError; prints: string[]; ran: boolean };

interface Job {
  fn: string;
  input: Uint8Array;
  timeoutMs: number;
  slot: number;
  resolve: (r: Reply) => void;
}

/** Calls queued or running at once (each holds a slot of control words). */
const MAX_IN_FLIGHT = 65_536;

export type AsyncHostFunction = (arg: Uint8Array) => Promise<Uint8Array | ArrayBufferView | string | void> | Uint8Array | ArrayBufferView | string | void;

export interface SandboxPoolOptions {
  /** The guest: a path to a static x86-64 ELF built with the SDK, or its bytes. */
  guest: string | Uint8Array;
  /** Guest memory per VM. Default '8 MiB'. */
  memory?: Size;
  /** Input region size. Default '1 MiB'. */
  inputSize?: Size;
  /** Output region size. Default '1 MiB'. */
  outputSize?: Size;
  /** Worker threads (one warm VM each). Default os.availableParallelism(). */
  threads?: number;
  /** Per-call time limit in ms (0: none). Default 0. */
  timeoutMs?: number;
  /** A module whose exported functions are host functions run in the worker, synchronously. */
  hostFunctions?: string | URL;
  /** Host functions run on the main thread (they may be async); the vCPU waits for them. */
  asyncHostFunctions?: Record<string, AsyncHostFunction>;
  /** Text the guest prints (kvmpool_print). */
  onPrint?: (text: string, fn: string) => void;
  kvmPath?: string;
}

export interface CallOptionsPublic {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface SandboxPoolStats {
  calls: number;
  completed: number;
  failed: number;
  resets: number;
  /** Pages copied back by resets. */
  resetPages: number;
  crashes: number;
  timeouts: number;
  aborted: number;
  hostFunctionErrors: number;
  /** Per-call latency on the main thread, from call() to result. */
  latency: LatencySummary;
}

function abortError(fn: string, reason: unknown): Error {
  return new AbortError(`sandbox call ${fn} was aborted${reason instanceof Error ? `: ${reason.message}` : ''}`, reason);
}

export class SandboxPool implements AsyncDisposable {
  readonly image: ElfImage;
  readonly threads: number;
  readonly #piscina: Piscina<ServeTask, void>;
  #channels: SharedArrayBuffer[] = [];
  #layout!: ChannelLayout;
  #inputSize = 0;
  #idle: number[] = [];
  #queue: Job[] = [];
  /** Per channel: settles with 'worker-ended' when its serve task ends. */
  #serving: Promise<'worker-ended'>[] = [];
  readonly #timeoutMs: number;
  readonly #onPrint: SandboxPoolOptions['onPrint'];
  readonly #dispatcher: Dispatcher | undefined;
  readonly #running = new Set<Promise<Reply>>();
  readonly #latency = new LatencyHistogram();
  #closed = false;
  /** Per-call control words (cancel flag, running thread), one slot per call in flight. */
  #controls!: SharedArrayBuffer;
  #freeControls: number[] = [];
  readonly #stats = { calls: 0, completed: 0, failed: 0, resets: 0, resetPages: 0, crashes: 0, timeouts: 0, aborted: 0, hostFunctionErrors: 0 };

  /** Validates the guest (throws ElfError / RangeError at once) and starts the workers. */
  constructor(options: SandboxPoolOptions) {
    const source = typeof options.guest === 'string' ? options.guest : 'guest image';
    let elf: Uint8Array;
    try {
      elf = typeof options.guest === 'string' ? new Uint8Array(readFileSync(options.guest)) : options.guest;
    } catch (e) {
      throw new Error(`SandboxPool: cannot read guest ${source}: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.image = parseElf(elf, source);
    const memory = parseSize(options.memory ?? '8 MiB', 'memory');
    const inputSize = parseSize(options.inputSize ?? '1 MiB', 'inputSize');
    const outputSize = parseSize(options.outputSize ?? '1 MiB', 'outputSize');
    sandboxLayout({ image: this.image, memory, inputSize, outputSize });
    this.threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(this.threads) || this.threads < 1) throw new RangeError(`threads: ${this.threads} is not a positive whole number`);
    this.#timeoutMs = options.timeoutMs ?? 0;
    this.#onPrint = options.onPrint;

    const remote = options.asyncHostFunctions ?? {};
    const slots: RemoteSlot[] = [];
    const doorbell = createDoorbell();
    const remoteNames = Object.keys(remote);
    if (remoteNames.length > 0) {
      // Two slots per thread: a worker that piscina replaces takes a fresh one.
      for (let i = 0; i < this.threads * 2; i++) slots.push({ ring: createRingBuffer(), callBuffer: new SharedArrayBuffer(CALL_BUFFER_BYTES) });
      const pio = new Bus('pio');
      // The sandbox thread reads a 4-byte status at the port: the range must hold all of it.
      pio.register(REMOTE_CALL_PORT, 4, hostCallDevice(slots, remote, () => this.#stats.hostFunctionErrors++));
      this.#dispatcher = new Dispatcher(pio, new Bus('mmio'), doorbell);
      slots.forEach((s, i) => this.#dispatcher?.addRing(i, s.ring, doorbell));
      this.#dispatcher.start();
    }
    this.#controls = new SharedArrayBuffer(MAX_IN_FLIGHT * CALL_CONTROL.WORDS * 4);
    this.#freeControls = Array.from({ length: MAX_IN_FLIGHT }, (_, i) => MAX_IN_FLIGHT - 1 - i);
    this.#inputSize = inputSize;
    this.#layout = channelLayout(inputSize, outputSize);
    this.#channels = Array.from({ length: this.threads }, () => new SharedArrayBuffer(this.#layout.bytes));
    const workerData: PoolWorkerData = {
      elf,
      source,
      memory,
      inputSize,
      outputSize,
      remoteNames,
      slots,
      claims: new SharedArrayBuffer(4 * Math.max(slots.length, 1)),
      doorbell,
      controls: this.#controls,
      channels: this.#channels,
      ...(options.hostFunctions ? { hostModule: String(options.hostFunctions instanceof URL ? options.hostFunctions : new URL(options.hostFunctions, `file://${process.cwd()}/`)) } : {}),
      ...(options.kvmPath ? { kvmPath: options.kvmPath } : {}),
    };
    // Piscina runs the threads; each gets one long-lived serve task on its own call channel.
    this.#piscina = new Piscina<ServeTask, void>({
      filename: new URL('./pool-worker.js', import.meta.url).href,
      minThreads: this.threads,
      maxThreads: this.threads,
      idleTimeout: Infinity,
      workerData,
    });
    this.#serving = this.#channels.map((_, i) =>
      this.#piscina.run({ channel: i }).then(
        () => 'worker-ended' as const,
        () => 'worker-ended' as const,
      ),
    );
    this.#idle = this.#channels.map((_, i) => i).reverse();
  }

  /** Exported guest functions. */
  get exports(): string[] {
    return [...this.image.functions.keys()].filter((n) => !n.startsWith('_') && !n.startsWith('kvmpool_') && !['memcpy', 'memmove', 'memset', 'memcmp', 'strlen'].includes(n));
  }

  /**
   * Runs exported function `fn` on a fresh sandbox with `input`; resolves with its output.
   * Rejects with SandboxTimeoutError, GuestCrashError, GuestError, HostFunctionError or an
   * AbortError; the pool stays usable after each.
   */
  call(fn: string, input: Uint8Array, options: CallOptionsPublic = {}): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new Error('SandboxPool is closed'));
    if (!this.image.functions.has(fn)) return Promise.reject(new RangeError(`the guest exports no function ${JSON.stringify(fn)} (exports: ${this.exports.join(', ')})`));
    if (Buffer.byteLength(fn) > CHANNEL_NAME_BYTES) return Promise.reject(new RangeError(`function name ${JSON.stringify(fn)} is longer than ${CHANNEL_NAME_BYTES} bytes`));
    if (input.length > this.#inputSize) {
      return Promise.reject(new RangeError(`sandbox call ${fn}: input of ${input.length} bytes exceeds the ${this.#inputSize}-byte input region`));
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortError(fn, signal.reason));
    const slot = this.#freeControls.pop();
    if (slot === undefined) return Promise.reject(new RangeError(`SandboxPool: more than ${MAX_IN_FLIGHT} calls in flight`));
    this.#stats.calls++;
    const t0 = performance.now();
    const ctl = new Int32Array(this.#controls, slot * CALL_CONTROL.WORDS * 4, CALL_CONTROL.WORDS);
    ctl.fill(0);
    const job: Job = { fn, input, timeoutMs: options.timeoutMs ?? this.#timeoutMs, slot, resolve: () => {} };
    const task = new Promise<Reply>((resolve) => (job.resolve = resolve));
    this.#queue.push(job);
    this.#pump();
    this.#running.add(task);
    void task.finally(() => {
      this.#running.delete(task);
      this.#freeControls.push(slot);
    });

    const result = task.then((r) => {
      this.#latency.add((performance.now() - t0) * 1000);
      for (const text of r.prints) this.#onPrint?.(text, fn);
      if (r.ok) {
        this.#stats.completed++;
        this.#stats.resets++;
        this.#stats.resetPages += r.resetPages;
        return r.output;
      }
      if (r.error.name !== 'AbortError' || r.ran) this.#stats.resets++;
      this.#stats.failed++;
      const error = decodeError(r.error);
      if (error.name === 'SandboxTimeoutError') this.#stats.timeouts++;
      else if (error.name === 'GuestCrashError') this.#stats.crashes++;
      else if (error.name === 'HostFunctionError') this.#stats.hostFunctionErrors++;
      else if (error.name === 'AbortError') throw abortError(fn, signal?.reason);
      throw error;
    });
    if (!signal) return result;
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => {
        this.#stats.aborted++;
        // Queued: it leaves the queue. Running: kick its thread out of KVM_RUN until the call
        // ends (it checks CANCEL at every exit).
        Atomics.store(ctl, CALL_CONTROL.CANCEL, 1);
        const queued = this.#queue.indexOf(job);
        if (queued >= 0) {
          this.#queue.splice(queued, 1);
          job.resolve({ ok: false, error: { name: 'AbortError', message: 'aborted', fields: {} }, prints: [], ran: false });
        } else {
          void this.#kickUntilDone(ctl, task);
        }
        reject(abortError(fn, signal.reason));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      result.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** Sends queued calls to idle workers. */
  #pump(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const channel = this.#idle.pop()!;
      const job = this.#queue.shift()!;
      void this.#send(channel, job);
    }
  }

  /** One call through channel `ch`: fill the request, wake the worker, wait for its reply. */
  async #send(ch: number, job: Job): Promise<void> {
    const buf = this.#channels[ch]!;
    const h = new Int32Array(buf, 0, CH.WORDS);
    const bytes = new Uint8Array(buf);
    const at = this.#layout;
    const name = new TextEncoder().encode(job.fn);
    bytes.set(name, at.name);
    bytes.set(job.input, at.input);
    h[CH.NAME_LEN] = name.length;
    h[CH.INPUT_LEN] = job.input.length;
    h[CH.TIMEOUT_MS] = job.timeoutMs;
    h[CH.CONTROL_SLOT] = job.slot;
    const seq = (Atomics.load(h, CH.REQUEST) + 1) | 0;
    Atomics.store(h, CH.REQUEST, seq);
    Atomics.notify(h, CH.REQUEST);
    const ended = this.#serving[ch]!;
    while (Atomics.load(h, CH.DONE) !== seq) {
      const w = Atomics.waitAsync(h, CH.DONE, (seq - 1) | 0, 1000);
      if (w.async && (await Promise.race([w.value, ended])) === 'worker-ended') {
        job.resolve({ ok: false, error: { name: 'Error', message: 'the sandbox worker thread ended during the call', fields: {} }, prints: [], ran: true });
        return; // this channel is gone: not put back
      }
    }
    const meta = JSON.parse(new TextDecoder().decode(bytes.subarray(at.meta, at.meta + h[CH.META_LEN]!))) as { error?: EncodedError; prints: string[] };
    if (h[CH.OK] === 1) {
      const output = bytes.slice(at.output, at.output + h[CH.OUTPUT_LEN]!);
      job.resolve({ ok: true, output, prints: meta.prints, resetPages: h[CH.RESET_PAGES]! });
    } else {
      job.resolve({ ok: false, error: meta.error ?? { name: 'Error', message: 'sandbox call failed', fields: {} }, prints: meta.prints, ran: true });
    }
    this.#idle.push(ch);
    this.#pump();
  }

  async #kickUntilDone(ctl: Int32Array, task: Promise<unknown>): Promise<void> {
    let done = false;
    void task.finally(() => (done = true)).catch(() => {});
    while (!done) {
      const tid = Atomics.load(ctl, CALL_CONTROL.TID);
      if (tid !== 0) signalThread(tid, KICK_SIGNAL);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  stats(): SandboxPoolStats {
    return { ...this.#stats, latency: this.#latency.summary() };
  }

  /** Waits for running and queued calls, then ends every worker and VM. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#running]);
    for (const buf of this.#channels) {
      const h = new Int32Array(buf, 0, CH.WORDS);
      Atomics.store(h, CH.STOP, 1);
      Atomics.notify(h, CH.REQUEST);
    }
    await Promise.allSettled(this.#serving);
    await this.#piscina.close();
    await this.#dispatcher?.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The main-thread end of remote host calls: a device whose reads run the async function. */
function hostCallDevice(slots: RemoteSlot[], fns: Record<string, AsyncHostFunction>, onError: () => void): Device {
  const dec = new TextDecoder();
  const enc = new TextEncoder();
  return {
    name: 'sandbox-host-call',
    write: () => {},
    read: async (_offset, status, source) => {
      const slot = slots[source ?? -1];
      const st = new DataView(status.buffer, status.byteOffset, 4);
      if (!slot) {
        st.setInt32(0, REMOTE_STATUS.UNKNOWN, true);
        return;
      }
      const buf = new Uint8Array(slot.callBuffer);
      const view = new DataView(slot.callBuffer);
      const nameLen = view.getUint32(CB.NAME_LEN, true);
      const argLen = view.getUint32(CB.ARG_LEN, true);
      const cap = view.getUint32(CB.RESULT_CAP, true);
      const name = dec.decode(buf.subarray(CB.DATA, CB.DATA + nameLen));
      const arg = buf.slice(CB.DATA + nameLen, CB.DATA + nameLen + argLen);
      const fn = fns[name];
      const fail = (code: number, text: string): void => {
        const t = enc.encode(text).subarray(0, CALL_BUFFER_BYTES - CB.DATA);
        buf.set(t, CB.DATA);
        view.setUint32(CB.OUT_LEN, t.length, true);
        st.setInt32(0, code, true);
      };
      if (!fn) return fail(REMOTE_STATUS.UNKNOWN, 'no such host function');
      try {
        const out = asBytes(await fn(arg));
        if (out.length > cap) return fail(REMOTE_STATUS.TOO_LARGE, `returned ${out.length} bytes`);
        buf.set(out, CB.DATA);
        view.setUint32(CB.OUT_LEN, out.length, true);
        st.setInt32(0, out.length, true);
      } catch (e) {
        onError();
        fail(REMOTE_STATUS.THREW, e instanceof Error ? e.message : String(e));
      }
    },
  };
}
