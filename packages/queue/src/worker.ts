/**
 * The worker: takes jobs from a BullMQ queue and runs them on a kvmpool pool, as many at once as
 * the pool has warm VMs.
 *
 *   const pool = new SandboxPool({ guest: 'sha.elf', threads: 2 });
 *   const worker = await startWorker({ connection: 'redis://127.0.0.1:6379', queue: 'sha', pool, metricsPort: 9464 });
 *   …
 *   await worker.close();   // stops taking jobs, finishes those in flight, closes the pool
 *
 * What happens to a job when something fails:
 * - the guest crashes, times out, or its sandbox worker thread dies: the pool fails that call
 *   only (and replaces a dead thread); the job's attempt fails with the error's `code`, and
 *   BullMQ retries it per the producer's `attempts`/`backoff`, then fails it with that error;
 * - malformed job data, a job for another kind of pool, or a wrong argument (TypeError /
 *   RangeError, e.g. an unknown function): failed at once, no retry (BullMQ's UnrecoverableError);
 * - the worker process dies (kill -9) or stops answering: its jobs' locks expire, and another
 *   worker's stalled-job check moves them back to wait (up to `maxStalledCount` times, then
 *   they fail), so another worker runs them;
 * - a worker that comes back after its lock passed (SIGSTOP, a long GC pause) computes a result
 *   BullMQ refuses: moving a job to completed checks the lock token, so a job taken over is
 *   completed once, by the worker that holds it. The refused result is counted as `discarded`.
 */
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { LinuxPool, SandboxPool } from '@kvmpool/core';
import { REQUEST_KINDS, decodeRequest, encodeReturn, failedReason, type CheckedRequest, type JobReturn } from './codec.js';
import { connectionOptions, type RedisConnection } from './connection.js';
import { WorkerMeters, serveMetrics, type WorkerMetrics } from './metrics.js';
import { DEFAULT_MAX_INPUT_BYTES, MAX_INPUT_BYTES_LIMIT } from './producer.js';

/** What a worker needs of a `JsSandboxPool` (@kvmpool/js), so that this package does not load it unless used. */
export interface JsPoolLike {
  /** Worker threads, one warm VM each. */
  readonly threads: number;
  /** `JsSandboxPool.run`. */
  run(request: { code: string } | { fn: string; args?: readonly unknown[] }, options?: { timeoutMs?: number }): Promise<{
    /** The script's or the function's result. */
    value: unknown;
  }>;
  /** `JsSandboxPool.eval`. */
  eval(code: string, options?: { timeoutMs?: number }): Promise<unknown>;
  /** `JsSandboxPool.close`. */
  close(options?: { force?: boolean }): Promise<void>;
}

/** The pools a worker can run: SDK guests, static Linux programs, JavaScript. */
export type WorkerPool = SandboxPool | LinuxPool | JsPoolLike;

/** Options of `startWorker()`. */
export interface SandboxWorkerOptions {
  /** The Redis: a `redis://` URL or ioredis options (its commands wait out a Redis restart). */
  connection: RedisConnection;
  /** The queue's name (the producer's `name`). */
  queue: string;
  /** The pool that runs the jobs. The worker closes it when it closes, unless `closePool` is false. */
  pool: WorkerPool;
  /** Whether `close()` also closes the pool. Default true. */
  closePool?: boolean;
  /** This worker's name, in metrics and in each result. Default `host:pid:n`. */
  name?: string;
  /** BullMQ's key prefix. Default `bull`. */
  prefix?: string;
  /** Jobs at once. Default the pool's threads (one job per warm VM). */
  concurrency?: number;
  /** How long a job's lock lasts without renewal (the worker renews it at half this), ms. Default 30,000. */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs (locks that expired), ms. Default 30,000. */
  stalledIntervalMs?: number;
  /** How many times a job may stall (its worker lost) before it fails. Default 1. */
  maxStalledCount?: number;
  /** Largest input this worker accepts from job data, bytes (the producers' `maxInputBytes`). Default 1 MiB. */
  maxInputBytes?: number;
  /** Serve Prometheus metrics at `http://127.0.0.1:PORT/metrics` (0: any free port). Default: no server. */
  metricsPort?: number;
}

let workers = 0;

type PoolKind = 'sdk' | 'linux' | 'js';

function poolKind(pool: WorkerPool): PoolKind {
  if (pool instanceof SandboxPool) return 'sdk';
  if (pool instanceof LinuxPool) return 'linux';
  if (typeof pool === 'object' && pool !== null && typeof (pool as JsPoolLike).run === 'function' && typeof (pool as JsPoolLike).eval === 'function') return 'js';
  throw new TypeError('pool: expected a SandboxPool, LinuxPool or JsSandboxPool');
}

function whole(what: string, v: number | undefined, fallback: number, min: number, max: number): number {
  const n = v ?? fallback;
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`${what}: expected a whole number from ${min} to ${max}`);
  return n;
}

/** Starts a worker: connects, then takes jobs until closed. Resolves once the connection is ready (and the metrics server listens). */
export async function startWorker(options: SandboxWorkerOptions): Promise<SandboxWorker> {
  const w = new SandboxWorker(options);
  try {
    await w.start();
  } catch (e) {
    await w.close({ force: true });
    throw e;
  }
  return w;
}

/** A running worker (made by `startWorker()`). */
export class SandboxWorker implements AsyncDisposable {
  /** This worker's name. */
  readonly name: string;
  /** The queue it takes jobs from. */
  readonly queue: string;
  /** Jobs it runs at once. */
  readonly concurrency: number;
  /** The BullMQ `Worker` underneath. */
  readonly worker: Worker;
  readonly #pool: WorkerPool;
  readonly #kind: PoolKind;
  readonly #closePool: boolean;
  readonly #maxInput: number;
  readonly #meters: WorkerMeters;
  readonly #metricsPort: number | undefined;
  #server: Server | undefined;
  #closing: Promise<void> | undefined;

  /** @internal Use `startWorker()`. */
  constructor(o: SandboxWorkerOptions) {
    if (typeof o !== 'object' || o === null) throw new TypeError('options: expected { connection, queue, pool }');
    if (typeof o.queue !== 'string' || o.queue.length === 0 || o.queue.includes(':')) throw new TypeError('queue: expected a non-empty queue name without ":"');
    this.#kind = poolKind(o.pool);
    this.#pool = o.pool;
    this.#closePool = o.closePool ?? true;
    this.name = o.name ?? `${hostname()}:${process.pid}:${++workers}`;
    this.queue = o.queue;
    this.concurrency = whole('concurrency', o.concurrency, o.pool.threads, 1, 4096);
    this.#maxInput = whole('maxInputBytes', o.maxInputBytes, DEFAULT_MAX_INPUT_BYTES, 0, MAX_INPUT_BYTES_LIMIT);
    const lockDuration = whole('lockDurationMs', o.lockDurationMs, 30_000, 100, 2 ** 31 - 1);
    const stalledInterval = whole('stalledIntervalMs', o.stalledIntervalMs, 30_000, 100, 2 ** 31 - 1);
    const maxStalledCount = whole('maxStalledCount', o.maxStalledCount, 1, 0, 1000);
    if (o.metricsPort !== undefined) whole('metricsPort', o.metricsPort, 0, 0, 65535);
    this.#metricsPort = o.metricsPort;
    this.#meters = new WorkerMeters({ queue: o.queue, worker: this.name });
    this.worker = new Worker(o.queue, (job) => this.#process(job), {
      connection: connectionOptions(o.connection, true),
      concurrency: this.concurrency,
      lockDuration,
      stalledInterval,
      maxStalledCount,
      // After a failed fetch (Redis gone), try again in 1 s rather than BullMQ's 15 s.
      runRetryDelay: 1000,
      autorun: false,
      name: this.name,
      ...(o.prefix === undefined ? {} : { prefix: o.prefix }),
    });
    this.worker.on('completed', () => this.#meters.completed.inc());
    // A result refused because the job's lock passed to another worker (moving it to completed
    // or failed checks the token: "Missing lock for job N" / "Lock mismatch for job N"). Other
    // errors are connection errors, which ioredis retries, and failed lock renewals; a listener
    // must exist, or EventEmitter would throw them.
    this.worker.on('error', (e) => {
      if (/^(Missing lock|Lock mismatch) for job /.test(e.message)) this.#meters.discarded.inc();
    });
  }

  /** @internal Connects and starts taking jobs. */
  async start(): Promise<void> {
    await this.worker.waitUntilReady();
    if (this.#metricsPort !== undefined) this.#server = await serveMetrics(this.#meters.registry, this.#metricsPort);
    this.#meters.warmVms.set(this.#pool.threads);
    void this.worker.run().catch(() => {});
  }

  /** The metrics server's URL (`http://127.0.0.1:PORT/metrics`), when `metricsPort` was given. */
  get metricsUrl(): string | undefined {
    const a = this.#server?.address();
    return a && typeof a === 'object' ? `http://127.0.0.1:${a.port}/metrics` : undefined;
  }

  /** Jobs done and failed (by code), discarded results, queue wait and run time percentiles, warm VMs. */
  metrics(): Promise<WorkerMetrics> {
    return this.#meters.snapshot();
  }

  /** The metrics in Prometheus' text format (what the HTTP endpoint serves). */
  prometheusText(): Promise<string> {
    return this.#meters.registry.metrics();
  }

  /**
   * Stops taking jobs, lets those in flight finish and store their results, then closes the
   * pool (unless `closePool: false`), the metrics server and the connections. `force: true`
   * abandons jobs in flight instead (their locks expire and another worker takes them over).
   * Idempotent.
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    this.#closing ??= (async () => {
      await this.worker.close(options.force ?? false).catch(() => {});
      if (this.#closePool) await (options.force ? this.#pool.close({ force: true }) : this.#pool.close()).catch(() => {});
      this.#meters.warmVms.set(0);
      const server = this.#server;
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    })();
    return this.#closing;
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #process(job: Job): Promise<JobReturn> {
    const started = Date.now();
    this.#meters.wait.observe(Math.max(0, (job.processedOn ?? started) - job.timestamp) / 1000);
    let req: CheckedRequest;
    try {
      req = decodeRequest(job.data, this.#maxInput);
      if (REQUEST_KINDS[req.kind] !== this.#kind) throw new TypeError(`job ${job.id} is a ${req.kind} job; this worker runs a ${this.#kind} pool`);
    } catch (e) {
      this.#meters.failed.inc({ code: 'ERR_KVMPOOL_INVALID_ARGUMENT' });
      throw new UnrecoverableError(failedReason(e));
    }
    this.#meters.active.inc();
    const t0 = performance.now();
    try {
      return await this.#run(req);
    } catch (e) {
      const reason = failedReason(e);
      this.#meters.failed.inc({ code: reason.slice(0, reason.indexOf(' ')) });
      if (e instanceof TypeError || e instanceof RangeError) throw new UnrecoverableError(reason);
      throw new Error(reason);
    } finally {
      this.#meters.active.dec();
      this.#meters.run.observe((performance.now() - t0) / 1000);
    }
  }

  async #run(req: CheckedRequest): Promise<JobReturn> {
    const timeout = req.timeoutMs > 0 ? { timeoutMs: req.timeoutMs } : {};
    switch (req.kind) {
      case 'call': {
        const output = await (this.#pool as SandboxPool).call(req.fn, req.input, timeout);
        return encodeReturn({ kind: 'call', output }, this.name);
      }
      case 'run': {
        const r = await (this.#pool as LinuxPool).run(req.input, { ...timeout, ...(req.argv ? { argv: req.argv } : {}), ...(req.env ? { env: req.env } : {}) });
        return encodeReturn({ kind: 'run', stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode, ...(r.signal ? { signal: r.signal } : {}), ...(r.fault ? { fault: r.fault } : {}) }, this.name);
      }
      case 'eval':
        return encodeReturn({ kind: 'js', value: (await (this.#pool as JsPoolLike).run({ code: req.code }, timeout)).value }, this.name);
      case 'apply':
        return encodeReturn({ kind: 'js', value: (await (this.#pool as JsPoolLike).run({ fn: req.fn, args: req.args }, timeout)).value }, this.name);
    }
  }
}
