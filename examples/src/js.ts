/**
 * Evaluates a few thousand small user scripts in parallel, each in a pristine QuickJS context
 * inside its own micro-VM call, and prints throughput and latency percentiles.
 *
 *   npm run build && node examples/dist/js.js [count] [threads]
 *
 * The scripts are what a plugin host or an LLM tool might get: pure functions, some that throw,
 * some that log, some that loop forever (they hit the time limit), some that call a host
 * function of this process. Every result is checked.
 */
import { availableParallelism } from 'node:os';
import { SandboxTimeoutError } from '@kvmpool/core';
import { JsError, JsSandboxPool } from '@kvmpool/js';
import { ProgressBar } from './progress.js';

const count = Number(process.argv[2] ?? 3000);
const threads = Number(process.argv[3] ?? availableParallelism());

const prices: Record<string, number> = { apple: 3, pear: 4, plum: 2 };
const js = new JsSandboxPool({
  threads,
  timeoutMs: 200,
  memoryLimit: '16 MiB',
  hostFunctions: { price: async (item: string) => prices[item] ?? null },
});

interface Job {
  kind: string;
  run(): Promise<unknown>;
  expect(r: PromiseSettledResult<unknown>): boolean;
}

function job(i: number): Job {
  switch (i % 10) {
    case 0:
      return { kind: 'throws', run: () => js.eval(`throw new RangeError("bad input ${i}")`), expect: (r) => r.status === 'rejected' && r.reason instanceof JsError && r.reason.jsName === 'RangeError' };
    case 1:
      return { kind: 'host call', run: () => js.eval('(async () => (await host.price("apple")) * 2)()'), expect: (r) => r.status === 'fulfilled' && r.value === 6 };
    case 2:
      if (i % 500 === 2) return { kind: 'runaway', run: () => js.eval('while (true) {}'), expect: (r) => r.status === 'rejected' && r.reason instanceof SandboxTimeoutError };
      return { kind: 'logs', run: () => js.run({ code: `console.log("script", ${i}); ${i}` }), expect: (r) => r.status === 'fulfilled' && (r.value as { logs: unknown[] }).logs.length === 1 };
    default:
      return { kind: 'pure', run: () => js.call('(xs) => xs.map((x) => x * x).reduce((a, b) => a + b, 0)', [i, 1, 2]), expect: (r) => r.status === 'fulfilled' && r.value === i * i + 5 };
  }
}

await js.eval('0'); // every worker started
const latencies: number[] = [];
const kinds = new Map<string, { ok: number; bad: number }>();
const progress = new ProgressBar('scripts', count);
const t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: threads * 8 }, async () => {
    while (next < count) {
      const j = job(next++);
      const s = performance.now();
      const [r] = await Promise.allSettled([j.run()]);
      latencies.push(performance.now() - s);
      const k = kinds.get(j.kind) ?? { ok: 0, bad: 0 };
      if (j.expect(r!)) k.ok++;
      else k.bad++;
      kinds.set(j.kind, k);
      progress.tick();
    }
  }),
);
progress.finish();
const secs = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const q = (p: number): string => `${latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!.toFixed(2)} ms`;
console.log(`${count} scripts on ${threads} threads in ${secs.toFixed(2)} s: ${Math.round(count / secs)} scripts/s`);
console.log(`latency (8 in flight per thread): p50 ${q(0.5)}, p90 ${q(0.9)}, p99 ${q(0.99)}, max ${q(1)}`);
for (const [kind, k] of kinds) console.log(`  ${kind.padEnd(10)} ${k.ok} as expected${k.bad ? `, ${k.bad} NOT` : ''}`);
const s = js.stats();
console.log(`pool: ${s.completed} completed, ${s.failed} failed in the pool (time-outs; a thrown JsError is a completed call), ${s.timeouts} timeouts, ${s.workerReplacements} workers replaced`);
await js.close();
if ([...kinds.values()].some((k) => k.bad > 0)) process.exitCode = 1;
