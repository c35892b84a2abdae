/**
 * A late result is not applied twice. Worker A takes a long job and is frozen (SIGSTOP) past its
 * lock; worker B's stalled-job check moves the job back to wait, B runs and completes it. Then A
 * is resumed: its guest finishes and it tries to complete the job, and BullMQ refuses (the lock
 * token is B's). The job has exactly one `completed` event, its result is B's, and A counts one
 * discarded result; A goes on taking jobs.
 */
import { sandboxQueue } from '@kvmpool/queue';
import { describe, expect, it } from 'vitest';
import { affineInput, affineLocal, counter, eventsPerJob, killWorker, metricsUrl, pollUntil, u64, type WorkerProcess } from '../support/queue-workers.js';
import { useQueueFixture } from '../support/queue-fixture.js';

const fx = useQueueFixture();
const ARGS = ['--threads', '1', '--lock-duration', '1000', '--stalled-interval', '300', '--metrics-port', '0'];

async function text(w: WorkerProcess): Promise<string> {
  return (await fetch(metricsUrl(w))).text();
}

describe('a worker frozen past its lock', () => {
  it('cannot complete the job it lost: the job completes once, with the result of the worker that took it over', async () => {
    const a = await fx.worker('takeover', 'A', ARGS);
    const q = sandboxQueue({ connection: fx.redis.url, name: 'takeover' });
    try {
      // About a second of guest work (150 ms per 10^8 rounds here).
      const ROUNDS = 700_000_000n;
      const id = await q.enqueue('affine', affineInput(99n, ROUNDS));
      await pollUntil(async () => (await q.queue.getActiveCount()) === 1, 10_000, 'A taking the job');
      a.proc.kill('SIGSTOP');
      const b = await fx.worker('takeover', 'B', ARGS);
      const r = await q.result(id, { waitMs: 20_000 });
      expect(r.worker).toBe('B');
      expect(r.kind === 'call' && u64(r.output)).toBe(affineLocal(99n, ROUNDS));

      a.proc.kill('SIGCONT');
      // A's guest finishes what it was running; its result is refused.
      await pollUntil(async () => counter(await text(a), 'kvmpool_queue_results_discarded_total') === 1, 15_000, 'A discarding its late result');
      const events = await eventsPerJob(fx.redis.url, 'takeover');
      expect(events.get('completed')?.get(id)).toBe(1);
      expect(events.get('stalled')?.get(id)).toBe(1);
      expect(counter(await text(a), 'kvmpool_queue_jobs_completed_total')).toBe(0);
      await pollUntil(async () => counter(await text(b), 'kvmpool_queue_jobs_completed_total') >= 1, 5_000, 'B counting its completion');
      expect(counter(await text(b), 'kvmpool_queue_jobs_completed_total')).toBe(1);
      const job = await q.queue.getJob(id);
      expect(await job?.getState()).toBe('completed');
      expect((job?.returnvalue as { w?: string } | undefined)?.w).toBe('B');

      // A is healthy: with B gone it runs the next jobs.
      await killWorker(b);
      const outs = await Promise.all([1n, 2n, 3n].map((x) => q.call('affine', affineInput(x), { waitMs: 20_000 })));
      outs.forEach((o, i) => expect(u64(o)).toBe(affineLocal(BigInt(i + 1))));
      // A counts a completion once BullMQ's move to completed returned, which may be after the
      // producer saw the completed event: wait (bounded) for the count, then hold it.
      await pollUntil(async () => counter(await text(a), 'kvmpool_queue_jobs_completed_total') >= 3, 5_000, 'A counting its 3 completions');
      expect(counter(await text(a), 'kvmpool_queue_jobs_completed_total')).toBe(3);
    } finally {
      await q.close();
    }
  }, 50_000);
});
