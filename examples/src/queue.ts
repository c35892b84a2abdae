/**
 * Queue: SHA-256 sandbox jobs through @kvmpool/queue (BullMQ on Redis). Starts worker processes
 * (`kvmpool worker --guest sha256.elf --threads 1`, the CLI a sandbox machine runs), then a
 * producer that submits N deterministic pseudo-random inputs (0–2048 bytes), a bounded number in
 * flight, checks every digest against node:crypto and prints which worker ran how many.
 *   node examples/dist/queue.js --start-redis [--jobs 2000] [--workers 2]
 *   node examples/dist/queue.js --redis redis://127.0.0.1:6379 [--jobs 2000] [--workers 2]
 * `--start-redis` starts a private redis-server (redis-server on PATH) on a free loopback port
 * with a temporary directory; with `--redis` the example uses a queue of its own name there and
 * removes it at the end. Every path — done, a failure, Ctrl-C / SIGTERM — stops everything: the
 * producer, the workers (SIGTERM: they finish their jobs and exit; SIGKILL after 10 s), and the
 * private Redis and its directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { sandboxQueue, type SandboxQueue } from '@kvmpool/queue';
// The private Redis of `--start-redis` (a development convenience, shared with kvmpool's tests and benchmark; not a stable API).
import { startRedisServer, type RedisServer } from '@kvmpool/queue/internal';
import { buildSandboxGuest } from './build-guest.js';
import { ProgressBar } from './progress.js';

const MAX_LENGTH = 2048;
const IN_FLIGHT_PER_WORKER = 16;
const WAIT_MS = 30_000;
const READY_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const CLI = join(dirname(createRequire(import.meta.url).resolve('@kvmpool/core/package.json')), 'bin', 'kvmpool.js');

/** mulberry32: a small, fixed-seed generator, so every run hashes the same inputs. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function makeInput(next: () => number): Uint8Array {
  const input = new Uint8Array(next() % (MAX_LENGTH + 1));
  for (let j = 0; j < input.length; j++) input[j] = next() & 0xff;
  return input;
}

interface WorkerProcess {
  name: string;
  proc: ChildProcess;
  exited: Promise<void>;
  log(): string;
}

/** Starts `kvmpool worker` in a process group of its own (a terminal's Ctrl-C reaches only this process, which stops it in order). */
async function startWorker(url: string, queue: string, name: string, guest: string, failed: (why: string) => void): Promise<WorkerProcess> {
  if (cleaning) throw new Error('stopping'); // a signal came: start nothing the clean-up would miss
  const proc = spawn(process.execPath, [CLI, 'worker', '--redis', url, '--queue', queue, '--name', name, '--guest', guest, '--threads', '1'], {
    stdio: ['ignore', 'ignore', 'pipe'], detached: true,
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-8000); });
  let stopping = false;
  const exited = new Promise<void>((resolve) => proc.once('exit', (code, signal) => {
    if (!stopping) failed(`worker ${name} exited (${signal ?? code}) while the jobs ran: ${err.trim()}`);
    resolve();
  }));
  const w: WorkerProcess & { stopping(): void } = { name, proc, exited, log: () => err, stopping: () => { stopping = true; } };
  workers.push(w);
  const end = Date.now() + READY_MS;
  while (!err.includes(' ready: ')) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`worker ${name} exited before it was ready: ${err.trim()}`);
    if (Date.now() > end) throw new Error(`worker ${name} not ready within ${READY_MS} ms: ${err.trim()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return w;
}

const workers: (WorkerProcess & { stopping(): void })[] = [];
let redis: RedisServer | undefined;
/** Set while redis-server starts, so that a signal then still stops it once it is up. */
let redisStarting: Promise<RedisServer> | undefined;
let producer: SandboxQueue | undefined;
let externalQueue = false;
const abort = new AbortController();
let cleaning: Promise<void> | undefined;
let signalled = false;

/** Stops everything this example started, once, whichever path got here. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    abort.abort(new Error('stopping'));
    if (producer) {
      if (externalQueue) await producer.queue.obliterate({ force: true }).catch(() => {});
      await producer.close();
    }
    await Promise.all(workers.map(async (w) => {
      w.stopping();
      if (w.proc.exitCode !== null || w.proc.signalCode !== null) return;
      w.proc.kill('SIGTERM');
      const timer = setTimeout(() => w.proc.kill('SIGKILL'), STOP_GRACE_MS);
      await w.exited;
      clearTimeout(timer);
    }));
    const server = redis ?? (await redisStarting?.catch(() => undefined));
    await server?.close();
  })();
  return cleaning;
}

function onSignal(signal: NodeJS.Signals): void {
  signalled = true;
  process.stderr.write(`\n${signal}: stopping the producer, the workers${redis ? ' and Redis' : ''}\n`);
  void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
}
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { 'start-redis': { type: 'boolean' }, redis: { type: 'string' }, jobs: { type: 'string', default: '2000' }, workers: { type: 'string', default: '2' } },
  });
  const jobs = Number(values.jobs);
  const workerCount = Number(values.workers);
  if (!Number.isInteger(jobs) || jobs < 1) throw new RangeError(`--jobs ${values.jobs}: need a positive whole number`);
  if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 16) throw new RangeError(`--workers ${values.workers}: need a whole number from 1 to 16`);
  if ((values['start-redis'] === true) === (values.redis !== undefined)) throw new TypeError('give one of --start-redis or --redis URL');

  const guest = buildSandboxGuest('sha256');
  let url: string;
  if (values['start-redis']) {
    redisStarting = startRedisServer({ detached: true });
    redis = await redisStarting;
    if (cleaning) return;
    url = redis.url;
    console.log(`redis: private redis-server at ${url}, directory ${redis.dir}`);
  } else {
    url = values.redis!;
    externalQueue = true;
  }
  const name = `kvmpool-example-${process.pid}`;
  let failure: string | undefined;
  const failed = (why: string): void => {
    failure ??= why;
    abort.abort(new Error(why));
  };
  for (let i = 1; i <= workerCount; i++) {
    const w = await startWorker(url, name, `w${i}`, guest, failed);
    console.log(`worker ${w.name}: pid ${w.proc.pid}, 1 warm VM`);
  }
  // Finished jobs stay in Redis until the end (the queue is removed then): `result(id)` after
  // `enqueue` reads a job that finished before the wait began from its hash.
  producer = sandboxQueue({ connection: url, name });
  const q = producer;

  const inFlight = Math.min(jobs, IN_FLIGHT_PER_WORKER * workerCount);
  setMaxListeners(inFlight + 10, abort.signal); // every wait listens to it
  console.log(`producer: ${jobs} sha256 jobs on queue ${name}, ${inFlight} in flight`);
  const progress = new ProgressBar('sha256 jobs', jobs, process.stderr, { plainEveryMs: 1000 });
  const next = random(0x5a256);
  const byWorker = new Map<string, number>();
  let submitted = 0;
  let wrong = 0;
  let firstWrong: string | undefined;
  const t0 = performance.now();
  // `inFlight` loops, each with one job outstanding.
  const loop = async (): Promise<void> => {
    while (submitted < jobs && !abort.signal.aborted) {
      const i = submitted++;
      const input = makeInput(next);
      const id = await q.enqueue('sha256', input);
      const r = await q.result(id, { waitMs: WAIT_MS, signal: abort.signal });
      if (r.kind !== 'call') throw new Error(`job ${id} came back as a ${r.kind} result`);
      const want = createHash('sha256').update(input).digest();
      if (!want.equals(r.output)) {
        wrong++;
        firstWrong ??= `job #${i} (${input.length} bytes) on ${r.worker}: ${Buffer.from(r.output).toString('hex')}, node:crypto ${want.toString('hex')}`;
      }
      byWorker.set(r.worker, (byWorker.get(r.worker) ?? 0) + 1);
      progress.tick();
    }
  };
  const loops = await Promise.allSettled(Array.from({ length: inFlight }, loop));
  const wall = (performance.now() - t0) / 1000;
  if (signalled) return; // its handler stops everything and exits
  const error = loops.find((l): l is PromiseRejectedResult => l.status === 'rejected');
  if (failure !== undefined || error) throw new Error(failure ?? String(error!.reason instanceof Error ? error!.reason.message : error!.reason));
  progress.finish();

  console.log(wrong === 0 ? `all ${jobs} digests match node:crypto` : `${wrong} of ${jobs} digests WRONG; first: ${firstWrong}`);
  console.log(`per worker: ${[...byWorker].sort().map(([w, n]) => `${w} ${n}`).join(', ')}`);
  console.log(`wall ${wall.toFixed(2)} s: ${Math.round(jobs / wall)} jobs/s through the queue (${workerCount} worker processes × 1 VM)`);
  if (wrong > 0) process.exitCode = 1;
}

try {
  await main();
} catch (e) {
  if (!signalled) process.stderr.write(`queue example: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
if (!signalled && workers.length > 0) console.log(`stopped: producer closed, workers drained${redis ? ', Redis stopped and its directory removed' : ''}`);
