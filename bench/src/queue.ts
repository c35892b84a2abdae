/**
 * `queue`: a sandbox call through @kvmpool/queue (BullMQ on a private redis-server this
 * benchmark starts on a free loopback port) against the same call on a SandboxPool in this
 * process. The guest is the sandbox benchmark's (bench/guests/bench-guest.c, `sum` of a 64-byte
 * input), so a job's cost is the queue's, not the work's.
 *   direct-call   SandboxPool.call `sum`, 1 thread, in this process, awaited one after another
 *   queue-1p      SandboxQueue.call `sum` with 1 `kvmpool worker` process (--threads 1)
 *   queue-2p      the same with 2 worker processes, queue-3p with 3 (each --threads 1: the
 *                 comparison is between processes, and the machine has 2 cores)
 * Latency (median, p99) is submit → result at the producer with a closed loop of ONE job: each
 * call awaited before the next is added, so it is the queue's round trip (add, a worker takes
 * the job, runs it, completes it, the completed event reaches the producer) and not queueing.
 * `calls_per_s` comes from separate bursts: a closed loop of 16 jobs in flight per worker process
 * (a finished job is replaced by a new one), alternating between the cases, median of the bursts.
 * Every result is checked. Each case has its own queue; the producers remove completed jobs
 * (`removeOnComplete: true`), as a long-running service would.
 *
 * Extra fields, from the bursts: `calls_per_s`, `calls_per_s_vs_1p`, CPU per job of the producer
 * (`producer_cpu_us_per_call`: this process; the direct pool is idle then), of the worker
 * processes together (`worker_cpu_us_per_call`) and of redis-server (`redis_cpu_us_per_call`),
 * from /proc/PID/stat in 10 ms ticks; `other_load_cpus` (CPUs busy on the rest of the machine)
 * and `steal_cpus`. On queue-1p, `overhead_ns` = its median − direct-call's median.
 * Targets: overhead_ns ≤ 2 ms; queue-2p calls/s ≥ 1.6× queue-1p's.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { SandboxPool } from '@kvmpool/core';
import { sandboxQueue, type SandboxQueue } from '@kvmpool/queue';
import { startRedisServer, type RedisServer } from '@kvmpool/queue/internal';
import { customTarget, round3, measureBurst, median, runBenchmark, writeResults, type BenchCase, type BenchOptions, type BenchReport, type Benchmark, type BurstMeasure } from './harness.js';
import { startWorkerProcess, stopWorkerProcess, type WorkerProcess } from './queue-workers.js';
import { INPUT, buildGuest, checkSum } from './sandbox.js';

const PROCESS_COUNTS = [1, 2, 3] as const;
const IN_FLIGHT_PER_PROCESS = 16;
const OVERHEAD_TARGET_NS = 2_000_000;
const SCALE_TARGET = 1.6;
/** No wait is unbounded: a lost job fails the benchmark instead of hanging it. */
const WAIT_MS = 30_000;

/** CPU time (user + system) of process `pid` so far, µs; 0 if it is gone. The kernel counts in 10 ms ticks. */
function processCpuUs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000; // utime + stime at USER_HZ = 100
  } catch {
    return 0;
  }
}

interface QueueBurst extends BurstMeasure {
  /** CPUs the worker processes used during the burst, on average. */
  workerCpus: number;
  /** CPUs redis-server used. */
  redisCpus: number;
}

interface QueueSetup {
  processes: number;
  queue: SandboxQueue;
  workers: WorkerProcess[];
}

function timedCase(id: string, label: string, call: () => Promise<Uint8Array>, extra: Partial<BenchCase> = {}): BenchCase {
  return {
    id,
    label,
    ...extra,
    async runBatch(n) {
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        const got = await call();
        out[i] = Number(process.hrtime.bigint() - t0);
        checkSum(id, got);
      }
      return out;
    },
  };
}

/**
 * Bursts on every queue set-up, alternating; the median of each measure per set-up. The CPU the
 * worker processes and Redis used is taken out of `otherCpus`, which is then the rest of the machine.
 */
async function throughput(setups: readonly QueueSetup[], redisPid: () => number | undefined, rounds: number, total: number): Promise<QueueBurst[]> {
  const burst = async (s: QueueSetup, n: number): Promise<QueueBurst> => {
    const pids = s.workers.map((w) => w.proc.pid);
    const workers0 = pids.reduce<number>((a, p) => a + processCpuUs(p), 0);
    const redis0 = processCpuUs(redisPid());
    const t0 = process.hrtime.bigint();
    const m = await measureBurst(async () => checkSum(`queue-${s.processes}p burst`, await s.queue.call('sum', INPUT, { waitMs: WAIT_MS })), n, IN_FLIGHT_PER_PROCESS * s.processes);
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    const workerCpus = (pids.reduce<number>((a, p) => a + processCpuUs(p), 0) - workers0) / us;
    const redisCpus = (processCpuUs(redisPid()) - redis0) / us;
    return { ...m, workerCpus, redisCpus, otherCpus: Math.max(0, m.otherCpus - workerCpus - redisCpus) };
  };
  for (const s of setups) await burst(s, Math.min(total, 300)); // warm-up
  const got = setups.map(() => [] as QueueBurst[]);
  for (let r = 0; r < rounds; r++) for (const [i, s] of setups.entries()) got[i]!.push(await burst(s, total));
  const med = (xs: number[]): number => median([...xs].sort((a, b) => a - b));
  return got.map((bs) => ({
    callsPerS: med(bs.map((b) => b.callsPerS)),
    processCpuUs: med(bs.map((b) => b.processCpuUs)),
    otherCpus: med(bs.map((b) => b.otherCpus)),
    stealCpus: med(bs.map((b) => b.stealCpus)),
    workerCpus: med(bs.map((b) => b.workerCpus)),
    redisCpus: med(bs.map((b) => b.redisCpus)),
  }));
}

export const queue: Benchmark = {
  name: 'queue',
  description: 'job latency and calls/s through @kvmpool/queue (BullMQ, private Redis) with 1–3 worker processes vs a direct SandboxPool.call',
  async run(options: BenchOptions): Promise<BenchReport> {
    const guest = buildGuest();
    let redis: RedisServer | undefined;
    let pool: SandboxPool | undefined;
    const setups: QueueSetup[] = [];
    try {
      redis = await startRedisServer();
      pool = new SandboxPool({ guest, threads: 1 });
      const url = redis.url;
      // Workers start one after another: on 2 cores, parallel start-ups only slow each other.
      for (const processes of PROCESS_COUNTS) {
        const name = `bench-${processes}p`;
        const setup: QueueSetup = { processes, queue: sandboxQueue({ connection: url, name, removeOnComplete: true }), workers: [] };
        setups.push(setup);
        for (let i = 0; i < processes; i++) setup.workers.push(await startWorkerProcess(url, name, `${name}-${i + 1}`, ['--guest', guest, '--threads', '1']));
      }
      // Every VM warm, every producer's event reader started, before anything is timed.
      const direct = pool;
      checkSum('direct-call', await direct.call('sum', INPUT));
      for (const s of setups) await Promise.all(Array.from({ length: 4 * s.processes }, async () => checkSum('warm-up', await s.queue.call('sum', INPUT, { waitMs: WAIT_MS }))));

      const tp = options.quick ? { rounds: 1, total: 300 } : { rounds: 3, total: 2000 };
      console.log(`queue: throughput: ${tp.rounds} bursts of ${tp.total} jobs per case (${IN_FLIGHT_PER_PROCESS} in flight per worker process), alternating; ${availableParallelism()} cores`);
      const server = redis;
      const bursts = await throughput(setups, () => server.pid, tp.rounds, tp.total);
      const cps1 = bursts[0]!.callsPerS;

      const cases: BenchCase[] = [
        timedCase('direct-call', 'SandboxPool.call `sum`, 1 thread, this process', () => direct.call('sum', INPUT)),
        ...setups.map((s, i) => {
          const b = bursts[i]!;
          return timedCase(`queue-${s.processes}p`, `SandboxQueue.call \`sum\`, ${s.processes} worker process${s.processes > 1 ? 'es' : ''} × 1 thread, 1 job in flight`,
            () => s.queue.call('sum', INPUT, { waitMs: WAIT_MS }), {
              extras: () => ({
                calls_per_s: Math.round(b.callsPerS),
                calls_per_s_vs_1p: round3(b.callsPerS / cps1),
                producer_cpu_us_per_call: Math.round(b.processCpuUs),
                worker_cpu_us_per_call: Math.round((b.workerCpus * 1e6) / b.callsPerS),
                redis_cpu_us_per_call: Math.round((b.redisCpus * 1e6) / b.callsPerS),
                other_load_cpus: round3(b.otherCpus),
                steal_cpus: round3(b.stealCpus),
              }),
            });
        }),
      ];
      const plan = options.quick ? { iterations: 60, batch: 20 } : { iterations: 600, batch: 50 };
      const report = await runBenchmark('queue', cases, plan);
      const byId = (id: string) => report.cases.find((c) => c.id === id)!;
      const p1 = byId('queue-1p');
      const overheadNs = p1.median_ns - byId('direct-call').median_ns;
      p1['overhead_ns'] = overheadNs;

      const overheadPass = overheadNs <= OVERHEAD_TARGET_NS;
      customTarget('queue-1p overhead_ns (median − direct-call median) ≤ 2 ms', overheadPass, `${(overheadNs / 1e6).toFixed(3)} ms`);
      report.targets.push({ target: { id: 'queue-1p' }, ratio: round3(overheadNs / OVERHEAD_TARGET_NS), p99_ns: p1.p99_ns, pass: overheadPass });
      const scale = bursts[1]!.callsPerS / cps1;
      const scalePass = scale >= SCALE_TARGET;
      customTarget(`queue-2p calls/s ≥ ${SCALE_TARGET}× queue-1p`, scalePass,
        `${scale.toFixed(3)}×: ${Math.round(bursts[1]!.callsPerS)} vs ${Math.round(cps1)} calls/s; queue-3p ${Math.round(bursts[2]!.callsPerS)} calls/s; ` +
          `2p bursts: producer ${(bursts[1]!.processCpuUs * bursts[1]!.callsPerS / 1e6).toFixed(2)} + workers ${bursts[1]!.workerCpus.toFixed(2)} + Redis ${bursts[1]!.redisCpus.toFixed(2)} CPUs, ` +
          `rest of the machine ${bursts[1]!.otherCpus.toFixed(2)}, steal ${bursts[1]!.stealCpus.toFixed(2)}, of ${availableParallelism()} cores`);
      const p2 = byId('queue-2p');
      report.targets.push({ target: { id: 'queue-2p', maxRatio: round3(1 / SCALE_TARGET) }, ratio: round3(cps1 / bursts[1]!.callsPerS), p99_ns: p2.p99_ns, pass: scalePass });
      writeResults('queue', report.cases);
      return report;
    } finally {
      await Promise.allSettled(setups.map((s) => s.queue.close()));
      await Promise.allSettled(setups.flatMap((s) => s.workers.map((w) => stopWorkerProcess(w))));
      await pool?.close();
      await redis?.close();
    }
  },
};
