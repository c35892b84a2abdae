/**
 * Worker processes that fail, on a real redis-server: `kill -9` of one of two workers mid-run
 * loses no job (its jobs stall, the other worker's stalled-job check moves them back to wait, and
 * they complete once each); SIGTERM drains a worker (it stops taking jobs, finishes the ones in
 * flight, exits 0) and the jobs it never took are run by the next worker.
 */
import { sandboxQueue } from '@kvmpool/queue';
import { describe, expect, it } from 'vitest';
import { until, within } from '../support/bounded.js';
import { affineInput, affineLocal, completionsPerJob, eventsPerJob, pollUntil, u64, type WorkerProcess } from '../support/queue-workers.js';
import { useQueueFixture } from '../support/queue-fixture.js';

const fx = useQueueFixture();
/** Short locks, so that a lost worker's jobs are taken over within about a second. */
const FAST_STALL = ['--lock-duration', '1000', '--stalled-interval', '500'];

function worker(queue: string, name: string, args: string[] = []): Promise<WorkerProcess> {
  return fx.worker(queue, name, ['--threads', '2', ...FAST_STALL, ...args]);
}

describe('a worker process that dies or is told to stop', () => {
  it('kill -9 of one of two workers mid-run loses no job and completes none twice', async () => {
    const [w1] = [await worker('kill', 'k1'), await worker('kill', 'k2')];
    const q = sandboxQueue({ connection: fx.redis.url, name: 'kill' });
    try {
      const N = 2000;
      const ROUNDS = 200_000n;
      const xs = Array.from({ length: N }, (_, i) => BigInt(i) * 31337n + 1n);
      const ids = await q.enqueueMany(xs.map((x) => ({ kind: 'call' as const, fn: 'affine', input: affineInput(x, ROUNDS) })));
      let done = 0;
      const results = Promise.all(ids.map((id) => q.result(id, { waitMs: 45_000 }).then((r) => { done++; return r; })));
      await until(() => done >= 300, 20_000, '300 jobs done');
      expect(await q.queue.getActiveCount()).toBeGreaterThan(0);
      w1!.proc.kill('SIGKILL');
      expect((await w1!.exited).signal).toBe('SIGKILL');
      const all = await results;
      all.forEach((r, i) => expect(r.kind === 'call' && u64(r.output)).toBe(affineLocal(xs[i]!, ROUNDS)));
      const events = await eventsPerJob(fx.redis.url, 'kill');
      const completions = events.get('completed') ?? new Map<string, number>();
      expect(ids.filter((id) => completions.get(id) !== 1)).toEqual([]);
      // The killed worker's jobs in flight were taken over through BullMQ's stalled-job check.
      const stalled = [...(events.get('stalled')?.keys() ?? [])];
      expect(stalled.length).toBeGreaterThan(0);
      expect(stalled.every((id) => all[ids.indexOf(id)]?.worker === 'k2')).toBe(true);
      expect(await q.queue.getJobCounts('wait', 'active', 'failed', 'completed')).toEqual({ wait: 0, active: 0, failed: 0, completed: N });
    } finally {
      await q.close();
    }
  }, 50_000);

  it('SIGTERM drains: no new jobs, the ones in flight finish on it, it exits 0; the rest wait for the next worker', async () => {
    const w = await worker('drain', 'd1');
    const q = sandboxQueue({ connection: fx.redis.url, name: 'drain' });
    try {
      // Jobs of a few hundred ms each: two run while the signal arrives.
      const ROUNDS = 150_000_000n;
      const xs = [1n, 2n, 3n, 4n, 5n, 6n];
      const ids = await q.enqueueMany(xs.map((x) => ({ kind: 'call' as const, fn: 'affine', input: affineInput(x, ROUNDS) })));
      const results = ids.map((id) => q.result(id, { waitMs: 40_000 }));
      results.forEach((p) => p.catch(() => {}));
      await pollUntil(async () => (await q.queue.getActiveCount()) === 2, 10_000, 'two jobs active');
      const active = (await q.queue.getActive()).map((j) => String(j.id));
      w.proc.kill('SIGTERM');
      expect(await within(w.exited, 20_000, 'the worker exiting')).toEqual({ code: 0, signal: null });
      expect(w.log()).toMatch(/SIGTERM: no new jobs; finishing those in flight/);
      expect(w.log()).toMatch(/stopped: \d+ completed, 0 failed attempts/);
      // What it had taken, it finished; nothing is left active or lost.
      for (const id of active) expect((await q.result(id)).worker).toBe('d1');
      const counts = await q.queue.getJobCounts('wait', 'active', 'completed', 'failed');
      expect(counts.active).toBe(0);
      expect(counts.failed).toBe(0);
      expect(counts.wait! + counts.completed!).toBe(xs.length);
      expect(counts.wait).toBeGreaterThan(0);
      await worker('drain', 'd2');
      const all = await Promise.all(results);
      all.forEach((r, i) => expect(r.kind === 'call' && u64(r.output)).toBe(affineLocal(xs[i]!, ROUNDS)));
      expect(new Set(all.map((r) => r.worker))).toEqual(new Set(['d1', 'd2']));
      const completions = await completionsPerJob(fx.redis.url, 'drain');
      expect(ids.map((id) => completions.get(id))).toEqual(ids.map(() => 1));
    } finally {
      await q.close();
    }
  }, 50_000);
});
