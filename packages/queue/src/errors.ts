/**
 * @kvmpool/queue's errors, on core's model (a `KvmpoolError` with a stable `code`). A job that
 * failed with a kvmpool error reaches the producer as that error's class (for core's classes)
 * with its `code` and message; these two are for what is the queue's own.
 */
import { KvmpoolError } from '@kvmpool/core';

/**
 * The stable codes of the queue's own errors.
 * @enum
 */
export const QUEUE_ERROR_CODES = {
  /** A job failed for a reason that is no kvmpool error (stalled too often, a bug in a worker, a malformed job). */
  job: 'ERR_KVMPOOL_QUEUE_JOB',
  /** The producer stopped waiting for a job (its `waitMs` passed, or its `signal` fired); the job itself goes on. */
  wait: 'ERR_KVMPOOL_QUEUE_WAIT',
} as const;

/** A job failed, and the reason BullMQ recorded is no kvmpool error: e.g. `job stalled more than allowable limit`. */
export class QueueJobError extends KvmpoolError {
  /** Always `'QueueJobError'`. */
  override readonly name = 'QueueJobError';
  /** The job's id. */
  readonly jobId: string;
  /** BullMQ's `failedReason` for the job, as recorded. */
  readonly failedReason: string;
  /** Made by the producer from a failed job's id and `failedReason`. */
  constructor(jobId: string, failedReason: string) {
    super(QUEUE_ERROR_CODES.job, `job ${jobId} failed: ${failedReason}`);
    this.jobId = jobId;
    this.failedReason = failedReason;
  }
}

/** The producer stopped waiting for a job's result; the job stays in the queue and may still finish. */
export class QueueWaitError extends KvmpoolError {
  /** Always `'QueueWaitError'`. */
  override readonly name = 'QueueWaitError';
  /** The job's id (look its result up later with `result(jobId)`). */
  readonly jobId: string;
  /** Made by the producer; `reason` says why it stopped waiting. */
  constructor(jobId: string, reason: string, cause?: unknown) {
    super(QUEUE_ERROR_CODES.wait, `stopped waiting for job ${jobId}: ${reason}`, { cause });
    this.jobId = jobId;
  }
}
