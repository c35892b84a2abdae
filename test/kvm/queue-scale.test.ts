/**
 * Three `kvmpool worker` processes × 2 warm VMs share 10,000 jobs on a real redis-server: every
 * result equals the host's computation, every job completes exactly once (counted from the
 * queue's event stream), all three workers take part, and their metrics endpoints add up.
 */
import { sandboxQueue } from '@kvmpool/queue';
import { beforeAll, describe, expect, it } from 'vitest';
import { affineInput, affineLocal, completionsPerJob, counter, metricsUrl, pollUntil, u64, type WorkerProcess } from '../support/queue-workers.js';
import { useQueueFixture } from '../support/queue-fixture.js';

const JOBS = 10_000;
const fx = useQueueFixture();
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  workers.push(...await Promise.all(['w1', 'w2', 'w3'].map((n) => fx.worker('scale', n, ['--threads', '2', '--metrics-port', '0']))));
});

describe('3 worker processes × 2 threads', () => {
  it('share 10,000 jobs: every result right, none lost or completed twice', async () => {
    const q = sandboxQueue({ connection: fx.redis.url, name: 'scale' });
    try {
      const xs = Array.from({ length: JOBS }, (_, i) => BigInt(i) * 0x9e3779b97f4a7c15n + 13n);
      const ids: string[] = [];
      for (let i = 0; i < JOBS; i += 1000) ids.push(...await q.enqueueMany(xs.slice(i, i + 1000).map((x) => ({ kind: 'call' as const, fn: 'affine', input: affineInput(BigInt.asUintN(64, x)) }))));
      expect(new Set(ids).size).toBe(JOBS);
      const results = await Promise.all(ids.map((id) => q.result(id, { waitMs: 50_000 })));
      const byWorker = new Map<string, number>();
      results.forEach((r, i) => {
        if (r.kind !== 'call') throw new Error(`job ${ids[i]} came back as ${r.kind}`);
        expect(u64(r.output)).toBe(affineLocal(BigInt.asUintN(64, xs[i]!)));
        byWorker.set(r.worker, (byWorker.get(r.worker) ?? 0) + 1);
      });
      expect([...byWorker.keys()].sort()).toEqual(['w1', 'w2', 'w3']);

      const completions = await completionsPerJob(fx.redis.url, 'scale');
      expect(completions.size).toBe(JOBS);
      expect(ids.filter((id) => completions.get(id) !== 1)).toEqual([]);
      expect(await q.queue.getJobCounts('wait', 'active', 'delayed', 'failed', 'completed')).toEqual({ wait: 0, active: 0, delayed: 0, failed: 0, completed: JOBS });

      let total = 0;
      for (const w of workers) {
        // A worker counts a completion after BullMQ's move to completed returned, which may be
        // just after the producer saw the event: wait (bounded) for its count, then check it.
        await pollUntil(async () => counter(await (await fetch(metricsUrl(w))).text(), 'kvmpool_queue_jobs_completed_total') >= (byWorker.get(w.name) ?? 0), 5_000, `${w.name} counting its completions`);
        const text = await (await fetch(metricsUrl(w))).text();
        const done = counter(text, 'kvmpool_queue_jobs_completed_total');
        expect(done, w.name).toBe(byWorker.get(w.name));
        expect(counter(text, 'kvmpool_queue_warm_vms')).toBe(2);
        total += done;
      }
      expect(total).toBe(JOBS);
    } finally {
      await q.close();
    }
  }, 55_000);
});
