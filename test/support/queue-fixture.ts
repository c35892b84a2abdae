/**
 * The queue tests' shared set-up: `useQueueFixture()` (called at a test file's top level) starts a
 * private redis-server and builds the queue test guest before the file's tests, and after them
 * ends every worker process started through it (SIGKILL) and stops Redis and removes its directory.
 */
import { afterAll, beforeAll } from 'vitest';
import { buildSandboxGuest } from './build-c.js';
import { killWorker, startWorkerProcess, type WorkerProcess } from './queue-workers.js';
import { startRedis, type TestRedis } from './redis.js';

export interface QueueFixture {
  /** The file's redis-server (set once beforeAll ran). */
  readonly redis: TestRedis;
  /** test/fixtures/queue-guest.c, built. */
  readonly guest: string;
  /** `kvmpool worker --guest <guest> ARGS…` on queue `queue`, ready, and ended after the file's tests. */
  worker(queue: string, name: string, args?: readonly string[]): Promise<WorkerProcess>;
}

export function useQueueFixture(options: { appendonly?: boolean } = {}): QueueFixture {
  let redis: TestRedis | undefined;
  let guest: string | undefined;
  const workers: WorkerProcess[] = [];
  beforeAll(async () => {
    guest = buildSandboxGuest('queue-guest.c');
    redis = await startRedis(options);
  });
  afterAll(async () => {
    await Promise.all(workers.map(killWorker));
    await redis?.close();
  });
  const ready = <T>(what: string, v: T | undefined): T => {
    if (v === undefined) throw new Error(`queue fixture: ${what} is not set up yet (use it inside a hook or test)`);
    return v;
  };
  return {
    get redis() { return ready('redis', redis); },
    get guest() { return ready('guest', guest); },
    async worker(queue, name, args = []) {
      const w = await startWorkerProcess(ready('redis', redis).url, queue, name, ['--guest', ready('guest', guest), ...args]);
      workers.push(w);
      return w;
    },
  };
}
