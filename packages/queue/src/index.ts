/**
 * @kvmpool/queue — kvmpool sandboxes behind a BullMQ job queue on Redis: a producer
 * (`sandboxQueue`), workers that run a pool with one job per warm VM (`startWorker`, or
 * `kvmpool worker`), and per-worker Prometheus metrics. See docs/queue.md.
 *
 * @packageDocumentation
 * @module @kvmpool/queue
 */
export { sandboxQueue, SandboxQueue, DEFAULT_MAX_INPUT_BYTES, MAX_INPUT_BYTES_LIMIT, inputBytes, type SandboxQueueOptions, type QueueJobOptions, type QueueWaitOptions, type QueueCallOptions, type QueueRunResult } from './producer.js';
export { startWorker, SandboxWorker, type SandboxWorkerOptions, type WorkerPool, type JsPoolLike } from './worker.js';
export { runWorkerCommand, WORKER_USAGE } from './cli.js';
export type { WorkerMetrics, TimeSummary } from './metrics.js';
export type { RedisConnection } from './connection.js';
export { REQUEST_KINDS, type SandboxRequest, type SandboxResult, type QueueInput, type JsonValue } from './codec.js';
export { QueueJobError, QueueWaitError, QUEUE_ERROR_CODES } from './errors.js';
