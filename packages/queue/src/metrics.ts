/**
 * A worker's metrics: one prom-client registry per worker (never the global one, so two workers
 * in a process do not mix), served in Prometheus' text format on a loopback HTTP port and read as
 * plain numbers by `worker.metrics()`.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, Summary } from 'prom-client';

const PERCENTILES = [0.5, 0.9, 0.99];

/** Percentiles of a time, in milliseconds, over the last ten minutes (prom-client's sliding window). */
export interface TimeSummary {
  /** Samples in the window. */
  count: number;
  /** Median, ms. */
  p50: number;
  /** 90th percentile, ms. */
  p90: number;
  /** 99th percentile, ms. */
  p99: number;
}

/** What `worker.metrics()` returns. */
export interface WorkerMetrics {
  /** Jobs this worker completed (their result was stored). */
  completed: number;
  /** Failed attempts on this worker, by error code (e.g. `ERR_KVMPOOL_GUEST_CRASH`); a retried job counts once per attempt. */
  failed: Record<string, number>;
  /** Results this worker computed but BullMQ refused because the job's lock had passed to another worker (the job was taken over as stalled). */
  discarded: number;
  /** Jobs running now. */
  active: number;
  /** Warm VMs: the pool's threads while the worker runs, 0 once it is closed. */
  warmVms: number;
  /** From a job's creation to its start on this worker (queue wait; includes retry back-off). */
  waitMs: TimeSummary;
  /** The sandbox run of a job on this worker. */
  runMs: TimeSummary;
}

/** The prom-client metrics of one worker. */
export class WorkerMeters {
  readonly registry = new Registry();
  readonly completed: Counter;
  readonly failed: Counter<'code'>;
  readonly discarded: Counter;
  readonly active: Gauge;
  readonly warmVms: Gauge;
  readonly wait: Summary;
  readonly run: Summary;

  constructor(labels: { queue: string; worker: string }) {
    this.registry.setDefaultLabels(labels);
    const registers = [this.registry];
    this.completed = new Counter({ name: 'kvmpool_queue_jobs_completed_total', help: 'Jobs completed by this worker', registers });
    this.failed = new Counter({ name: 'kvmpool_queue_jobs_failed_total', help: 'Failed job attempts on this worker, by error code', labelNames: ['code'], registers });
    this.discarded = new Counter({ name: 'kvmpool_queue_results_discarded_total', help: 'Results refused because the job had been taken over (lock lost)', registers });
    this.active = new Gauge({ name: 'kvmpool_queue_jobs_active', help: 'Jobs running on this worker', registers });
    this.warmVms = new Gauge({ name: 'kvmpool_queue_warm_vms', help: 'Warm VMs (pool threads) of this worker', registers });
    const summary = { percentiles: PERCENTILES, maxAgeSeconds: 600, ageBuckets: 5, registers };
    this.wait = new Summary({ name: 'kvmpool_queue_wait_seconds', help: 'Time from job creation to its start on this worker', ...summary });
    this.run = new Summary({ name: 'kvmpool_queue_run_seconds', help: 'Sandbox run time of a job on this worker', ...summary });
  }

  async snapshot(): Promise<WorkerMetrics> {
    const [completed, failed, discarded, active, warm, wait, run] = await Promise.all(
      [this.completed, this.failed, this.discarded, this.active, this.warmVms, this.wait, this.run].map((m) => m.get()));
    const byCode: Record<string, number> = {};
    for (const v of failed!.values) byCode[String(v.labels['code'])] = v.value;
    return {
      completed: completed!.values[0]?.value ?? 0,
      failed: byCode,
      discarded: discarded!.values[0]?.value ?? 0,
      active: active!.values[0]?.value ?? 0,
      warmVms: warm!.values[0]?.value ?? 0,
      waitMs: times(wait!.values),
      runMs: times(run!.values),
    };
  }
}

function times(values: readonly { value: number; labels: Record<string, string | number>; metricName?: string }[]): TimeSummary {
  const q = (p: number): number => {
    const v = values.find((x) => x.labels['quantile'] === p)?.value ?? 0;
    return Number.isFinite(v) ? v * 1000 : 0;
  };
  const count = values.find((x) => x.metricName?.endsWith('_count'))?.value ?? 0;
  return { count, p50: q(0.5), p90: q(0.9), p99: q(0.99) };
}

/** Serves `GET /metrics` from `registry` on 127.0.0.1:`port` (0: any free port); resolves with the server once it listens. */
export function serveMetrics(registry: Registry, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e instanceof Error ? e.message : String(e)}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
