/**
 * The producer: `sandboxQueue({ connection, name })` puts sandbox work on a BullMQ queue and
 * waits for its results.
 *
 *   const q = sandboxQueue({ connection: 'redis://127.0.0.1:6379', name: 'sha' });
 *   const digest = await q.call('sha256', bytes, { timeoutMs: 100, attempts: 3 });
 *   const id = await q.enqueue('sha256', bytes);   // later: await q.result(id)
 *   await q.close();
 *
 * Results come back through one `QueueEvents` reader per producer (a Redis stream read), which
 * starts from the stream's last entry as it was before the first job was added, so no job's
 * event is missed however fast a worker is; a job already finished (`result(id)` of an old job)
 * is read from its hash once.
 */
import { randomUUID } from 'node:crypto';
import { Job, Queue, QueueEvents, type JobsOptions } from 'bullmq';
import { ClosedError } from '@kvmpool/core';
import { decodeReturn, encodeRequest, inputBytes, reasonToError, type JsonValue, type QueueInput, type SandboxRequest, type SandboxResult } from './codec.js';
import { connectionOptions, type RedisConnection } from './connection.js';
import { QueueWaitError } from './errors.js';

/** Default largest input of one job (raw bytes, before base64), matching SandboxPool's default input region. */
export const DEFAULT_MAX_INPUT_BYTES = 1024 * 1024;
/** Largest `maxInputBytes` a producer accepts: job data lives in Redis, in memory, and crosses the network on every attempt. */
export const MAX_INPUT_BYTES_LIMIT = 64 * 1024 * 1024;

/** Options of `sandboxQueue()`. */
export interface SandboxQueueOptions {
  /** The Redis: a `redis://` URL or ioredis options. */
  connection: RedisConnection;
  /** The queue's name; workers started with the same name take its jobs. */
  name: string;
  /** BullMQ's key prefix. Default `bull`. */
  prefix?: string;
  /** Largest input per job in bytes (before base64). Default 1 MiB, at most 64 MiB. A larger input is a RangeError before anything is queued. */
  maxInputBytes?: number;
  /** How many events the queue's event stream keeps (BullMQ's `streams.events.maxLen`). Default 100,000. */
  eventsMaxLen?: number;
  /**
   * Keep finished jobs (BullMQ's `removeOnComplete` / `removeOnFail`): a count or `true` to remove at once. Default: keep all.
   * `call()` and friends wait from before the job is added, so they always get the result; but
   * `result(id)` of a job that finished and was removed before the wait began has nothing to read
   * and waits until its `waitMs`.
   */
  removeOnComplete?: boolean | number;
  /** As `removeOnComplete`, for failed jobs. Default: keep all. */
  removeOnFail?: boolean | number;
}

/** Options of one job. */
export interface QueueJobOptions {
  /** The sandbox time limit of each attempt in ms (0: the worker pool's own). Default 0. */
  timeoutMs?: number;
  /** Attempts in all, first included, when an attempt fails (a crash, a time-out, a dead sandbox worker, a lost worker). Default 1. */
  attempts?: number;
  /** Wait before a retry: ms, or BullMQ's `{ type: 'fixed' | 'exponential', delay }`. Default: none. */
  backoff?: number | {
    /** The same wait before every retry, or doubling from `delay` at each one. */
    type: 'fixed' | 'exponential';
    /** The (first) wait, ms. */
    delay: number;
  };
  /** A job id of your own: a second job with the same id is not added (BullMQ's de-duplication by id). */
  jobId?: string;
  /** BullMQ priority (1 highest … 2,097,152). Default: none (first in, first out). */
  priority?: number;
}

/** Options of waiting for a job. */
export interface QueueWaitOptions {
  /** Stop waiting after this many ms (0: wait for ever) with a `QueueWaitError`; the job itself goes on. Default 0. */
  waitMs?: number;
  /** Stop waiting when this signal fires (`QueueWaitError`); the job itself goes on. */
  signal?: AbortSignal;
}

/** Options of `call()`, `run()`, `eval()` and `apply()`: the job's and the wait's. */
export type QueueCallOptions = QueueJobOptions & QueueWaitOptions;

/** What `run()` resolves with: a Linux program's outcome. */
export type QueueRunResult = Extract<SandboxResult, {
  /** `run`: the member of `SandboxResult` a `run` job resolves with. */
  kind: 'run';
}>;

interface Waiter {
  resolve(r: SandboxResult): void;
  reject(e: unknown): void;
}

/** Makes a producer for queue `name`; it connects on first use. */
export function sandboxQueue(options: SandboxQueueOptions): SandboxQueue {
  return new SandboxQueue(options);
}

/**
 * A producer of sandbox jobs on one BullMQ queue: `enqueue` adds a job, `result` waits for one,
 * `call`/`run`/`eval`/`apply` do both. Jobs of every kind go on the same queue; a worker takes
 * the kinds its pool runs (a worker with another kind of pool fails the job at once, no retry).
 */
export class SandboxQueue implements AsyncDisposable {
  /** The queue's name. */
  readonly name: string;
  /** The BullMQ `Queue` underneath (for inspection: counts, job lists, clean-up). */
  readonly queue: Queue;
  readonly #maxInput: number;
  readonly #events: QueueEvents;
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #removeOnComplete: boolean | number | undefined;
  readonly #removeOnFail: boolean | number | undefined;
  #eventsStarted: Promise<void> | undefined;
  #closed = false;

  /** Checks the options (TypeError / RangeError) and makes the queue objects; nothing connects yet. */
  constructor(options: SandboxQueueOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options: expected { connection, name }');
    if (typeof options.name !== 'string' || options.name.length === 0 || options.name.includes(':')) throw new TypeError('name: expected a non-empty queue name without ":"');
    const max = options.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES;
    if (!Number.isInteger(max) || max < 0 || max > MAX_INPUT_BYTES_LIMIT) throw new RangeError(`maxInputBytes: expected a whole number of bytes up to ${MAX_INPUT_BYTES_LIMIT}`);
    const maxLen = options.eventsMaxLen ?? 100_000;
    if (!Number.isInteger(maxLen) || maxLen < 100) throw new RangeError('eventsMaxLen: expected a whole number ≥ 100');
    this.name = options.name;
    this.#maxInput = max;
    this.#removeOnComplete = options.removeOnComplete;
    this.#removeOnFail = options.removeOnFail;
    const prefix = options.prefix === undefined ? {} : { prefix: options.prefix };
    this.queue = new Queue(options.name, { connection: connectionOptions(options.connection, false), streams: { events: { maxLen: maxLen } }, ...prefix });
    this.#events = new QueueEvents(options.name, { connection: connectionOptions(options.connection, true), autorun: false, ...prefix });
    // Errors of the connections (a Redis restart) are ioredis's to retry; without a listener they would throw.
    this.queue.on('error', () => {});
    this.#events.on('error', () => {});
    this.#events.on('completed', ({ jobId, returnvalue }) => this.#finish(jobId, () => decodeReturn(jobId, returnvalue)));
    this.#events.on('failed', ({ jobId, failedReason }) => this.#finish(jobId, () => { throw reasonToError(jobId, failedReason); }));
  }

  /** Adds an SDK-function job (`fn` of the workers' guest, with `input`); resolves with its job id. */
  enqueue(fn: string, input?: QueueInput, options?: QueueJobOptions): Promise<string>;
  /** Adds a job of any kind; resolves with its job id. */
  enqueue(request: SandboxRequest, options?: QueueJobOptions): Promise<string>;
  enqueue(a: string | SandboxRequest, b?: QueueInput | QueueJobOptions, c?: QueueJobOptions): Promise<string> {
    if (typeof a === 'string') return this.#add({ kind: 'call', fn: a, ...(b === undefined ? {} : { input: b as QueueInput }) }, c ?? {});
    return this.#add(a, (b as QueueJobOptions | undefined) ?? {});
  }

  /**
   * Adds many jobs in one round trip (BullMQ's `addBulk`); resolves with their ids in order.
   * Every request is checked before any is added.
   */
  async enqueueMany(requests: readonly SandboxRequest[], options: QueueJobOptions = {}): Promise<string[]> {
    if (!Array.isArray(requests)) throw new TypeError('requests: expected an array');
    const jobs = requests.map((r) => ({ name: r.kind, data: encodeRequest(r, timeout(options), this.#maxInput), opts: this.#jobOptions(options) }));
    await this.#startEvents();
    const added = await this.queue.addBulk(jobs);
    return added.map((j) => String(j.id));
  }

  /**
   * Waits for job `jobId` and resolves with its result; rejects with the job's typed error
   * (e.g. `GuestCrashError` with its `code`), a `QueueJobError`, or a `QueueWaitError`.
   */
  async result(jobId: string, options: QueueWaitOptions = {}): Promise<SandboxResult> {
    if (typeof jobId !== 'string' || jobId.length === 0) throw new TypeError('jobId: expected a job id');
    const { waitMs, signal } = waitOptions(options);
    if (this.#closed) throw new ClosedError('SandboxQueue');
    await this.#startEvents();
    const settled = this.#wait(jobId, waitMs, signal);
    // It may settle while the job's hash is read below (the event can come first): marked as
    // handled now, so that is no unhandled rejection; the caller still gets it from the return.
    settled.catch(() => {});
    // A job that finished before anyone listened (an id from an earlier run) is read once from its hash.
    const job = await Job.fromId(this.queue, jobId);
    if (job?.finishedOn !== undefined) {
      if (job.failedReason && (job.returnvalue === null || job.returnvalue === undefined)) this.#finish(jobId, () => { throw reasonToError(jobId, job.failedReason); });
      else this.#finish(jobId, () => decodeReturn(jobId, job.returnvalue));
    }
    return settled;
  }

  /** Runs `fn` of the workers' SDK guest on `input` and resolves with its output bytes. */
  async call(fn: string, input?: QueueInput, options: QueueCallOptions = {}): Promise<Uint8Array> {
    const r = await this.#roundTrip({ kind: 'call', fn, ...(input === undefined ? {} : { input }) }, options);
    if (r.kind !== 'call') throw new TypeError(`job of kind call came back as ${r.kind}`);
    return r.output;
  }

  /** As `call`, with the output read as UTF-8 JSON. */
  async callJson(fn: string, input?: QueueInput, options: QueueCallOptions = {}): Promise<unknown> {
    return JSON.parse(new TextDecoder().decode(await this.call(fn, input, options))) as unknown;
  }

  /** Runs the workers' Linux program with `input` as stdin. */
  async run(input?: QueueInput, options: QueueCallOptions & { argv?: readonly string[]; env?: Readonly<Record<string, string>> } = {}): Promise<QueueRunResult> {
    const r = await this.#roundTrip({ kind: 'run', ...(input === undefined ? {} : { input }), ...(options.argv ? { argv: options.argv } : {}), ...(options.env ? { env: options.env } : {}) }, options);
    if (r.kind !== 'run') throw new TypeError(`job of kind run came back as ${r.kind}`);
    return r;
  }

  /** Evaluates JavaScript `code` on a JS worker and resolves with its value. */
  async eval(code: string, options: QueueCallOptions = {}): Promise<unknown> {
    const r = await this.#roundTrip({ kind: 'eval', code }, options);
    if (r.kind !== 'js') throw new TypeError(`job of kind eval came back as ${r.kind}`);
    return r.value;
  }

  /** Applies the JavaScript function `fn` (its source) to `args` on a JS worker. */
  async apply(fn: string, args: readonly JsonValue[], options: QueueCallOptions = {}): Promise<unknown> {
    const r = await this.#roundTrip({ kind: 'apply', fn, args }, options);
    if (r.kind !== 'js') throw new TypeError(`job of kind apply came back as ${r.kind}`);
    return r.value;
  }

  /** Stops waiting (pending waits reject with `ClosedError`) and closes the connections; jobs in Redis stay. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const error = new ClosedError('SandboxQueue');
    for (const set of this.#waiters.values()) for (const w of set) w.reject(error);
    this.#waiters.clear();
    await Promise.allSettled([this.#events.close(), this.queue.close()]);
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #roundTrip(request: SandboxRequest, options: QueueCallOptions): Promise<SandboxResult> {
    // A job id of the caller's may name a job that already finished: wait as result() does.
    if (options.jobId !== undefined) return this.result(await this.#add(request, options), options);
    const { waitMs, signal } = waitOptions(options);
    if (this.#closed) throw new ClosedError('SandboxQueue');
    // Our own id, so that the waiter is registered before the job exists: its event cannot come first.
    const id = `kq-${randomUUID()}`;
    const data = encodeRequest(request, timeout(options), this.#maxInput);
    const opts = { ...this.#jobOptions(options), jobId: id };
    await this.#startEvents();
    const settled = this.#wait(id, waitMs, signal);
    // The wait may end (signal, waitMs) while the add is in flight: the caller sees it below.
    settled.catch(() => {});
    try {
      await this.queue.add(request.kind, data, opts);
    } catch (e) {
      this.#finish(id, () => { throw e; });
      throw e;
    }
    return settled;
  }

  async #add(request: SandboxRequest, options: QueueJobOptions): Promise<string> {
    if (this.#closed) throw new ClosedError('SandboxQueue');
    const data = encodeRequest(request, timeout(options), this.#maxInput);
    const opts = this.#jobOptions(options);
    await this.#startEvents();
    const job = await this.queue.add(request.kind, data, opts);
    return String(job.id);
  }

  #jobOptions(o: QueueJobOptions): JobsOptions {
    if (typeof o !== 'object' || o === null) throw new TypeError('options: expected an object');
    const attempts = o.attempts ?? 1;
    if (!Number.isInteger(attempts) || attempts < 1 || attempts > 1000) throw new RangeError('attempts: expected a whole number from 1 to 1000');
    const opts: JobsOptions = { attempts };
    if (o.backoff !== undefined) {
      const b = o.backoff;
      const delay = typeof b === 'number' ? b : b?.delay;
      if (typeof delay !== 'number' || !Number.isInteger(delay) || delay < 0) throw new RangeError('backoff: expected ms, or { type, delay } with delay in ms');
      if (typeof b === 'object' && b.type !== 'fixed' && b.type !== 'exponential') throw new TypeError("backoff.type: expected 'fixed' or 'exponential'");
      opts.backoff = typeof b === 'number' ? { type: 'fixed', delay } : { type: b.type, delay };
    }
    if (o.jobId !== undefined) {
      if (typeof o.jobId !== 'string' || o.jobId.length === 0 || /^\d+$/.test(o.jobId) || o.jobId.includes(':')) throw new TypeError('jobId: expected a non-numeric id without ":"');
      opts.jobId = o.jobId;
    }
    if (o.priority !== undefined) {
      if (!Number.isInteger(o.priority) || o.priority < 1 || o.priority > 2_097_152) throw new RangeError('priority: expected a whole number from 1 to 2097152');
      opts.priority = o.priority;
    }
    if (this.#removeOnComplete !== undefined) opts.removeOnComplete = this.#removeOnComplete;
    if (this.#removeOnFail !== undefined) opts.removeOnFail = this.#removeOnFail;
    return opts;
  }

  /** Starts the event reader once, from the stream's current last entry (so nothing after it is missed). */
  #startEvents(): Promise<void> {
    this.#eventsStarted ??= (async () => {
      const client = await this.queue.client;
      const last = await client.xrevrange(this.queue.keys['events']!, '+', '-', 'COUNT', 1);
      (this.#events.opts as { lastEventId?: string }).lastEventId = last[0]?.[0] ?? '0-0';
      void this.#events.run().catch(() => {});
      await this.#events.waitUntilReady();
    })();
    return this.#eventsStarted;
  }

  #wait(jobId: string, waitMs: number, signal: AbortSignal | undefined): Promise<SandboxResult> {
    return new Promise<SandboxResult>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const set = this.#waiters.get(jobId);
        set?.delete(waiter);
        if (set?.size === 0) this.#waiters.delete(jobId);
      };
      const waiter: Waiter = {
        resolve: (r) => { done(); resolve(r); },
        reject: (e) => { done(); reject(e); },
      };
      const onAbort = (): void => waiter.reject(new QueueWaitError(jobId, 'the signal fired', signal?.reason));
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (waitMs > 0) timer = setTimeout(() => waiter.reject(new QueueWaitError(jobId, `no result within ${waitMs} ms`)), waitMs);
      let set = this.#waiters.get(jobId);
      if (!set) this.#waiters.set(jobId, (set = new Set()));
      set.add(waiter);
    });
  }

  #finish(jobId: string, outcome: () => SandboxResult): void {
    const set = this.#waiters.get(jobId);
    if (!set) return;
    let result: SandboxResult;
    try {
      result = outcome();
    } catch (e) {
      for (const w of [...set]) w.reject(e);
      return;
    }
    for (const w of [...set]) w.resolve(result);
  }
}

function waitOptions(o: QueueWaitOptions): { waitMs: number; signal: AbortSignal | undefined } {
  const waitMs = o.waitMs ?? 0;
  if (!Number.isInteger(waitMs) || waitMs < 0) throw new RangeError('waitMs: expected a whole number of ms');
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('signal: expected an AbortSignal');
  return { waitMs, signal: o.signal };
}

function timeout(o: QueueJobOptions): number {
  const t = o?.timeoutMs ?? 0;
  if (!Number.isInteger(t) || t < 0 || t > 2 ** 31 - 1) throw new RangeError('timeoutMs: expected a whole number of ms up to 2^31-1');
  return t;
}

/** The bytes a job input becomes (what the guest receives), e.g. to compute an expected result locally. */
export { inputBytes };
