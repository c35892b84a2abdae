/**
 * @kvmpool/queue in one process, on a real redis-server and real KVM: the producer's calls of
 * every kind (SDK function, Linux program, JavaScript) through workers made with the API, bytes
 * and JSON, limits checked before anything is queued, a job for the wrong kind of pool failed at
 * once, a crashing guest retried per the producer's policy and then failed with its typed error,
 * and the metrics (API and the HTTP endpoint's Prometheus text).
 */
import { GuestCrashError, LinuxPool, SandboxPool } from '@kvmpool/core';
import { JsSandboxPool } from '@kvmpool/js';
import { QueueJobError, QueueWaitError, sandboxQueue, startWorker, type SandboxQueue, type SandboxWorker } from '@kvmpool/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBusybox } from '../support/linux.js';
import { affineInput, affineLocal, u64 } from '../support/queue-workers.js';
import { useQueueFixture } from '../support/queue-fixture.js';

const fx = useQueueFixture();
let q: SandboxQueue;
let sdk: SandboxWorker;

beforeAll(async () => {
  q = sandboxQueue({ connection: fx.redis.url, name: 'api' });
  sdk = await startWorker({ connection: fx.redis.url, queue: 'api', pool: new SandboxPool({ guest: fx.guest, threads: 2 }), metricsPort: 0, name: 'sdk-1' });
});

afterAll(async () => {
  await q?.close();
  await sdk?.close();
});

describe('the producer and an API worker', () => {
  it('call() returns the guest\'s output bytes; enqueue() + result() the same, from the worker named in the result', async () => {
    const out = await q.call('affine', affineInput(41n), { timeoutMs: 1000 });
    expect(u64(out)).toBe(affineLocal(41n));
    const id = await q.enqueue('affine', affineInput(7n, 3n));
    expect(typeof id).toBe('string');
    const r = await q.result(id);
    expect(r.kind).toBe('call');
    if (r.kind !== 'call') throw new Error('unreachable');
    expect(u64(r.output)).toBe(affineLocal(7n, 3n));
    expect(r.worker).toBe('sdk-1');
    // The result of a job that finished before anyone waited is read from its hash.
    expect((await q.result(id)).worker).toBe('sdk-1');
  });

  it('enqueueMany() adds many jobs in one round trip, each result equals the local computation', async () => {
    const xs = Array.from({ length: 200 }, (_, i) => BigInt(i) * 977n);
    const ids = await q.enqueueMany(xs.map((x) => ({ kind: 'call', fn: 'affine', input: affineInput(x) })));
    const results = await Promise.all(ids.map((id) => q.result(id)));
    results.forEach((r, i) => expect(r.kind === 'call' && u64(r.output)).toBe(affineLocal(xs[i]!)));
  });

  it('refuses an input over maxInputBytes with a RangeError before anything is queued, and bad options at once', async () => {
    const small = sandboxQueue({ connection: fx.redis.url, name: 'api', maxInputBytes: 1024 });
    try {
      const before = await small.queue.count();
      await expect(small.call('affine', new Uint8Array(1025))).rejects.toThrow(/input: 1025 bytes is over maxInputBytes \(1024\); store large inputs elsewhere/);
      await expect(small.enqueue('affine', new Uint8Array(1025))).rejects.toBeInstanceOf(RangeError);
      await expect(small.call('affine', affineInput(1n), { attempts: 0 })).rejects.toThrow(/attempts/);
      await expect(small.call('affine', affineInput(1n), { timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
      expect(await small.queue.count()).toBe(before);
    } finally {
      await small.close();
    }
  });

  it('a crashing guest is retried per the producer\'s attempts and backoff, then fails with GuestCrashError and its code', async () => {
    const before = await sdk.metrics();
    const id = await q.enqueue('crash', new Uint8Array(0), { attempts: 3, backoff: { type: 'fixed', delay: 20 } });
    const e = await q.result(id).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GuestCrashError);
    expect((e as GuestCrashError).code).toBe('ERR_KVMPOOL_GUEST_CRASH');
    expect((e as Error).message).toMatch(/guest crashed on vCPU 0/);
    const job = await q.queue.getJob(id);
    expect(job?.attemptsMade).toBe(3);
    expect(await job?.getState()).toBe('failed');
    const after = await sdk.metrics();
    expect((after.failed['ERR_KVMPOOL_GUEST_CRASH'] ?? 0) - (before.failed['ERR_KVMPOOL_GUEST_CRASH'] ?? 0)).toBe(3);
    // The pool went on: the next call works.
    expect(u64(await q.call('affine', affineInput(5n)))).toBe(affineLocal(5n));
  });

  it('a wrong argument (an unknown function) fails at once, without using the retries', async () => {
    const id = await q.enqueue('no_such_function', new Uint8Array(0), { attempts: 5 });
    await expect(q.result(id)).rejects.toThrow(/no_such_function/);
    expect((await q.queue.getJob(id))?.attemptsMade).toBe(1);
  });

  it('a job for another kind of pool fails at once with the reason; waitMs and signal stop only the wait', async () => {
    const id = await q.enqueue({ kind: 'eval', code: '1 + 1' }, { attempts: 3 });
    const e = await q.result(id).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/is a eval job; this worker runs a sdk pool/);
    expect((await q.queue.getJob(id))?.attemptsMade).toBe(1);
    // No worker takes jobs of this queue: the wait ends, the job stays.
    const idle = sandboxQueue({ connection: fx.redis.url, name: 'nobody' });
    try {
      const w = await idle.call('affine', affineInput(1n), { waitMs: 200 }).catch((x: unknown) => x);
      expect(w).toBeInstanceOf(QueueWaitError);
      expect((w as QueueWaitError).code).toBe('ERR_KVMPOOL_QUEUE_WAIT');
      expect(await idle.queue.count()).toBe(1);
      const ac = new AbortController();
      const p = idle.call('affine', affineInput(1n), { signal: ac.signal });
      ac.abort();
      await expect(p).rejects.toBeInstanceOf(QueueWaitError);
      await idle.queue.obliterate({ force: true });
    } finally {
      await idle.close();
    }
    expect(QueueJobError).toBeDefined();
  });

  it('metrics: the API and the loopback HTTP endpoint in Prometheus text', async () => {
    const m = await sdk.metrics();
    expect(m.completed).toBeGreaterThanOrEqual(203);
    expect(m.warmVms).toBe(2);
    expect(m.active).toBe(0);
    expect(m.waitMs.count).toBeGreaterThanOrEqual(203);
    // The job for another kind of pool waited but never ran.
    expect(m.runMs.count).toBe(m.waitMs.count - 1);
    expect(m.runMs.p50).toBeGreaterThan(0);
    expect(m.runMs.p99).toBeGreaterThanOrEqual(m.runMs.p50);
    expect(sdk.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const res = await fetch(sdk.metricsUrl!);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('# TYPE kvmpool_queue_jobs_completed_total counter');
    expect(text).toMatch(new RegExp(`^kvmpool_queue_jobs_completed_total\\{queue="api",worker="sdk-1"\\} ${m.completed}$`, 'm'));
    expect(text).toMatch(/^kvmpool_queue_jobs_failed_total\{code="ERR_KVMPOOL_GUEST_CRASH",queue="api",worker="sdk-1"\} 3$/m);
    expect(text).toMatch(/^kvmpool_queue_warm_vms\{queue="api",worker="sdk-1"\} 2$/m);
    expect(text).toMatch(/^kvmpool_queue_run_seconds\{quantile="0\.99",queue="api",worker="sdk-1"\} [0-9.e-]+$/m);
    expect(text).toMatch(/^kvmpool_queue_wait_seconds_count\{queue="api",worker="sdk-1"\} \d+$/m);
    expect((await fetch(sdk.metricsUrl!.replace('/metrics', '/other'))).status).toBe(404);
  });

  it('Linux programs and JavaScript run through the same producer, on workers of their own queues', async () => {
    const linux = await startWorker({ connection: fx.redis.url, queue: 'linux', pool: new LinuxPool({ program: requireBusybox(), argv: ['wc', '-c'], threads: 1 }) });
    const js = await startWorker({ connection: fx.redis.url, queue: 'js', pool: new JsSandboxPool({ threads: 1 }) });
    const lq = sandboxQueue({ connection: fx.redis.url, name: 'linux' });
    const jq = sandboxQueue({ connection: fx.redis.url, name: 'js' });
    try {
      const r = await lq.run('hello queue\n', { timeoutMs: 5000 });
      expect(new TextDecoder().decode(r.stdout).trim()).toBe('12');
      expect(r.exitCode).toBe(0);
      expect(await jq.eval('[1, 2, 3].map((x) => x * x)')).toEqual([1, 4, 9]);
      expect(await jq.apply('(o, k) => o[k] + 1', [{ a: 41 }, 'a'])).toBe(42);
      const e = await jq.eval('throw new TypeError("nope")').catch((x: unknown) => x);
      expect((e as { code?: string }).code).toBe('ERR_KVMPOOL_JS');
      expect((e as Error).name).toBe('JsError');
      expect((e as Error).message).toBe('TypeError: nope');
    } finally {
      await Promise.all([lq.close(), jq.close()]);
      await Promise.all([linux.close(), js.close()]);
    }
  });
});
