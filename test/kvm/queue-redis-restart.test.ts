/**
 * Redis goes away mid-run and comes back: redis-server (append-only file on) is stopped while two
 * worker processes are busy with 3,000 jobs, and started again on the same port and directory.
 * The workers and the producer reconnect by themselves; every job completes exactly once with
 * the right result. A job whose completion was in flight when Redis went (the command fails
 * with the connection) stays active until its lock expires; the stalled-job check then runs it
 * again, so the test uses short locks (3 s) to finish in time.
 */
import { sandboxQueue } from '@kvmpool/queue';
import { beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/bounded.js';
import { affineInput, affineLocal, completionsPerJob, u64, type WorkerProcess } from '../support/queue-workers.js';
import { useQueueFixture } from '../support/queue-fixture.js';

const fx = useQueueFixture({ appendonly: true });
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  workers.push(...await Promise.all(['r1', 'r2'].map((n) => fx.worker('restart', n, ['--threads', '2', '--lock-duration', '3000', '--stalled-interval', '1000', '--max-stalled', '3']))));
});

describe('a Redis restart mid-run', () => {
  it('workers and producer reconnect and finish every job once', async () => {
    const q = sandboxQueue({ connection: fx.redis.url, name: 'restart' });
    try {
      const N = 3000;
      const ROUNDS = 300_000n;
      const xs = Array.from({ length: N }, (_, i) => BigInt(i) * 104729n + 3n);
      const ids = await q.enqueueMany(xs.map((x) => ({ kind: 'call' as const, fn: 'affine', input: affineInput(x, ROUNDS) })));
      let done = 0;
      const results = Promise.all(ids.map((id) => q.result(id, { waitMs: 45_000 }).then((r) => { done++; return r; })));
      await until(() => done >= 500, 20_000, '500 jobs done');
      await fx.redis.stop();
      const doneWhileDown = done;
      await new Promise((r) => setTimeout(r, 1500));
      // Nothing completes without Redis.
      expect(done - doneWhileDown).toBeLessThanOrEqual(0);
      await fx.redis.start();
      const all = await results;
      expect(done).toBe(N);
      all.forEach((r, i) => expect(r.kind === 'call' && u64(r.output)).toBe(affineLocal(xs[i]!, ROUNDS)));
      const completions = await completionsPerJob(fx.redis.url, 'restart');
      expect(ids.filter((id) => completions.get(id) !== 1)).toEqual([]);
      expect(await q.queue.getJobCounts('wait', 'active', 'failed', 'completed')).toEqual({ wait: 0, active: 0, failed: 0, completed: N });
      for (const w of workers) expect(w.proc.exitCode).toBe(null);
    } finally {
      await q.close();
    }
  }, 55_000);
});
