/**
 * `kvmpool worker`: core's CLI imports this module at run time (core does not depend on this
 * package) and hands it the arguments after `worker`.
 *
 *   kvmpool worker --redis redis://127.0.0.1:6379 --queue NAME (--guest FILE | --program FILE [--arg A]… | --js)
 *                  [--threads N] [--memory SIZE] [--timeout MS] [--metrics-port N] [--name NAME]
 *                  [--lock-duration MS] [--stalled-interval MS] [--max-stalled N] [--max-input BYTES]
 *
 * SIGTERM or SIGINT: stop taking jobs, finish those in flight, close the pool, exit 0. A second
 * signal abandons the jobs in flight (another worker takes them over) and exits 1.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { LinuxPool, SandboxPool } from '@kvmpool/core';
import { startWorker, type JsPoolLike, type WorkerPool } from './worker.js';

/** The usage line of `kvmpool worker`. */
export const WORKER_USAGE = 'kvmpool worker --queue NAME (--guest FILE | --program FILE [--arg A]… | --js) [--redis URL] [--threads N] [--memory SIZE] [--timeout MS] [--metrics-port N] [--name NAME] [--lock-duration MS] [--stalled-interval MS] [--max-stalled N] [--max-input BYTES]';

const OPTIONS = {
  redis: { type: 'string' }, queue: { type: 'string' }, guest: { type: 'string' }, program: { type: 'string' }, arg: { type: 'string', multiple: true },
  js: { type: 'boolean' }, threads: { type: 'string' }, memory: { type: 'string' }, timeout: { type: 'string' }, 'metrics-port': { type: 'string' },
  name: { type: 'string' }, 'lock-duration': { type: 'string' }, 'stalled-interval': { type: 'string' }, 'max-stalled': { type: 'string' },
  'max-input': { type: 'string' }, help: { type: 'boolean', short: 'h' },
} as const;

function int(what: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new RangeError(`--${what}: expected a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

async function jsPool(options: { threads: number; timeoutMs?: number; memoryLimit?: string }): Promise<JsPoolLike> {
  const spec = '@kvmpool/js';
  let mod: { JsSandboxPool: new (o: object) => JsPoolLike };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') throw new Error('--js needs @kvmpool/js: npm install @kvmpool/js (next to @kvmpool/queue)', { cause: e });
    throw e;
  }
  return new mod.JsSandboxPool(options);
}

/** Runs `kvmpool worker` with `argv` (the arguments after `worker`); resolves with the exit code once the worker has stopped. */
export async function runWorkerCommand(argv: readonly string[]): Promise<number> {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    ({ values } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: false }));
  } catch (e) {
    process.stderr.write(`kvmpool worker: ${(e as Error).message}\nusage: ${WORKER_USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`usage: ${WORKER_USAGE}\n\ntake sandbox jobs from a BullMQ queue on Redis and run them in warm micro-VMs, one job per thread\n`);
    return 0;
  }
  const kinds = [values.guest !== undefined, values.program !== undefined, values.js === true].filter(Boolean).length;
  if (values.queue === undefined || kinds !== 1) {
    process.stderr.write(`kvmpool worker: ${values.queue === undefined ? '--queue is required' : 'give exactly one of --guest, --program, --js'}\nusage: ${WORKER_USAGE}\n`);
    return 2;
  }
  const threads = int('threads', values.threads) ?? availableParallelism();
  const timeoutMs = int('timeout', values.timeout);
  const common = { threads, ...(timeoutMs === undefined ? {} : { timeoutMs }) };
  let pool: WorkerPool;
  let what: string;
  if (values.guest !== undefined) {
    pool = new SandboxPool({ guest: values.guest, ...common, ...(values.memory ? { memory: values.memory } : {}) });
    what = `SDK guest ${values.guest}`;
  } else if (values.program !== undefined) {
    pool = new LinuxPool({ program: values.program, ...common, ...(values.arg ? { argv: values.arg } : {}), ...(values.memory ? { memory: values.memory } : {}) });
    what = `Linux program ${values.program}`;
  } else {
    pool = await jsPool({ ...common, ...(values.memory ? { memoryLimit: values.memory } : {}) });
    what = 'JavaScript (QuickJS)';
  }
  const metricsPort = int('metrics-port', values['metrics-port']);
  const lockDurationMs = int('lock-duration', values['lock-duration']);
  const stalledIntervalMs = int('stalled-interval', values['stalled-interval']);
  const maxStalledCount = int('max-stalled', values['max-stalled']);
  const maxInputBytes = int('max-input', values['max-input']);
  const worker = await startWorker({
    connection: values.redis ?? 'redis://127.0.0.1:6379', queue: values.queue, pool,
    ...(values.name ? { name: values.name } : {}),
    ...(metricsPort === undefined ? {} : { metricsPort }),
    ...(lockDurationMs === undefined ? {} : { lockDurationMs }),
    ...(stalledIntervalMs === undefined ? {} : { stalledIntervalMs }),
    ...(maxStalledCount === undefined ? {} : { maxStalledCount }),
    ...(maxInputBytes === undefined ? {} : { maxInputBytes }),
  });
  const log = (line: string): void => void process.stderr.write(`kvmpool worker ${worker.name}: ${line}\n`);
  let signals = 0;
  const stopped = new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        log(`${signal}: no new jobs; finishing those in flight`);
        void worker.close().then(async () => {
          const m = await worker.metrics();
          log(`stopped: ${m.completed} completed, ${Object.values(m.failed).reduce((a, b) => a + b, 0)} failed attempts`);
          resolve(0);
        });
      } else {
        log(`${signal} again: abandoning jobs in flight`);
        void worker.close({ force: true }).finally(() => process.exit(1));
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  log(`ready: queue ${JSON.stringify(worker.queue)}, ${worker.concurrency} jobs at once on ${pool.threads} warm VMs (${what})${worker.metricsUrl ? `, metrics at ${worker.metricsUrl}` : ''}`);
  return stopped;
}
