/** `kvmpool worker` processes for the queue tests: started, waited for until ready, signalled, and bounded. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../packages/core/bin/kvmpool.js', import.meta.url));

export interface WorkerProcess {
  name: string;
  proc: ChildProcess;
  /** Everything it wrote to stderr so far. */
  log(): string;
  /** Resolves with its exit code (or the signal that ended it). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `kvmpool worker --redis URL --queue Q --name NAME ARGS…` and resolves once it printed `ready`. */
export async function startWorkerProcess(url: string, queue: string, name: string, args: string[], readyMs = 20_000): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, [CLI, 'worker', '--redis', url, '--queue', queue, '--name', name, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const end = Date.now() + readyMs;
  while (!err.includes(' ready: ')) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`worker ${name} exited before it was ready: ${err}`);
    if (Date.now() > end) {
      proc.kill('SIGKILL');
      throw new Error(`worker ${name} not ready within ${readyMs} ms: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { name, proc, log: () => err, exited };
}

/** Ends a worker process that is still running (SIGKILL), and waits for it. */
export async function killWorker(w: WorkerProcess): Promise<void> {
  if (w.proc.exitCode === null && w.proc.signalCode === null) {
    w.proc.kill('SIGCONT');
    w.proc.kill('SIGKILL');
  }
  await w.exited;
}

/** The u64 little-endian input of the test guest's `affine` (x, and optionally rounds). */
export function affineInput(x: bigint, rounds?: bigint): Uint8Array {
  const b = Buffer.alloc(rounds === undefined ? 8 : 16);
  b.writeBigUInt64LE(x, 0);
  if (rounds !== undefined) b.writeBigUInt64LE(rounds, 8);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * What `affine` computes, on the host: `rounds` steps of x = a·x + c (mod 2^64), by composing the
 * map with itself (square-and-multiply on (a, c) pairs), so a billion rounds cost ~60 steps.
 */
export function affineLocal(x: bigint, rounds = 1n): bigint {
  const m = (v: bigint): bigint => BigInt.asUintN(64, v);
  let [a, c] = [6364136223846793005n, 1442695040888963407n];
  let [ra, rc] = [1n, 0n]; // the identity map
  for (let n = rounds; n > 0n; n >>= 1n) {
    if (n & 1n) [ra, rc] = [m(a * ra), m(a * rc + c)];
    [a, c] = [m(a * a), m(a * c + c)];
  }
  return m(ra * x + rc);
}

export function u64(bytes: Uint8Array): bigint {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readBigUInt64LE(0);
}

/**
 * How many times each job of queue `queue` was completed, from the queue's event stream (every
 * `completed` event BullMQ wrote: a result applied twice would show as 2).
 */
export async function completionsPerJob(url: string, queue: string): Promise<Map<string, number>> {
  return (await eventsPerJob(url, queue)).get('completed') ?? new Map();
}

/** Every event of queue `queue`'s event stream, counted per event name and job id. */
export async function eventsPerJob(url: string, queue: string): Promise<Map<string, Map<string, number>>> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url);
  const all = new Map<string, Map<string, number>>();
  try {
    let start = '-';
    for (;;) {
      const entries = await redis.xrange(`bull:${queue}:events`, start, '+', 'COUNT', 5000);
      for (const [, fields] of entries) {
        const f: Record<string, string> = {};
        for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
        const event = f['event'];
        const id = f['jobId'];
        if (!event || !id) continue;
        let counts = all.get(event);
        if (!counts) all.set(event, (counts = new Map()));
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      if (entries.length < 5000) break;
      start = `(${entries[entries.length - 1]![0]}`;
    }
  } finally {
    redis.disconnect();
  }
  return all;
}

/** The metrics URL a worker printed in its ready line. */
export function metricsUrl(w: WorkerProcess): string {
  const m = /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(w.log());
  if (!m) throw new Error(`worker ${w.name} printed no metrics URL: ${w.log()}`);
  return m[1]!;
}

/** A counter's value for this worker in Prometheus text (0 when absent). */
export function counter(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** Waits until the async `cond()` holds, asking every 20 ms; fails after `ms` naming `what`. */
export async function pollUntil(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
