/**
 * `npm run bench -- js`: a fresh JavaScript context per call, four workloads, five engines.
 *
 *   js-eval-1t        JsSandboxPool.eval, 1 thread (QuickJS in a micro-VM, pristine context per call)
 *   js-eval-2t        the same with 2 threads (latency of one call at a time; calls_per_s from bursts)
 *   ivm-context       isolated-vm: a new context per call in a warm isolate (optional dependency)
 *   qjs-wasm-context  quickjs-emscripten: a new context per call in a warm runtime
 *   node-vm           node:vm runInNewContext per call (no security boundary)
 *
 * Workloads: (b) `JSON.stringify({a:[1,2,3].map(x=>x*x)})` under the plain ids; (a) `1+1` as
 * `-small`, (c) a 10 KB JSON document parsed, transformed and serialized as `-json`, (d) a loop of
 * 1e5 iterations as `-loop`. Every engine's result is checked against the expected value.
 * Ratios are against js-eval-1t of the same workload (ratio < 1: faster than the sandbox).
 * With --profile, also where a call's time goes (bench/src/js-profile.ts).
 */
import { availableParallelism } from 'node:os';
import vm from 'node:vm';
import { JsSandboxPool } from '@kvmpool/js';
import { customTarget, median, runBenchmark, type BenchCase, type BenchOptions, type BenchReport, type Benchmark, type CheckedTarget } from './harness.js';
import { loadIsolatedVm, type IsolatedVmLoad } from './sandbox-isolates.js';
import { profileJs } from './js-profile.js';

type Ivm = Extract<IsolatedVmLoad, { ok: true }>['ivm'];

/** A deterministic ~10 KB JSON document. */
function makeDocument(): string {
  let x = 12345;
  const rnd = (): number => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
  const items = [];
  for (let i = 0; i < 90; i++) {
    items.push({ id: i, name: `item-${i}-${Math.floor(rnd() * 1e6).toString(36)}`, score: Math.floor(rnd() * 100), tags: ['a', 'b', 'c'].filter(() => rnd() > 0.5), values: [1, 2, 3].map(() => Math.floor(rnd() * 50)) });
  }
  return JSON.stringify({ version: 1, items });
}

const DOC = makeDocument();

interface Workload {
  suffix: string;
  code: string;
  expected: unknown;
}

const WORKLOADS: Workload[] = [
  { suffix: '', code: 'JSON.stringify({a:[1,2,3].map(x=>x*x)})', expected: '{"a":[1,4,9]}' },
  { suffix: '-small', code: '1+1', expected: 2 },
  {
    suffix: '-json',
    code: `const doc = JSON.parse(${JSON.stringify(DOC)});
const out = doc.items.filter((it) => it.score >= 50).map((it) => ({ id: it.id, name: it.name.toUpperCase(), total: it.values.reduce((s, v) => s + v, 0), tags: it.tags.join('|') }));
out.sort((p, q) => q.total - p.total || p.id - q.id);
JSON.stringify({ count: out.length, out })`,
    expected: undefined, // computed below with node:vm
  },
  { suffix: '-loop', code: 'let s = 0; for (let i = 0; i < 1e5; i++) s = (s + i * i) % 1000003; s', expected: undefined },
];
for (const w of WORKLOADS) if (w.expected === undefined) w.expected = vm.runInNewContext(w.code);

function check(id: string, got: unknown, expected: unknown): void {
  if (got !== expected) throw new Error(`${id}: got ${String(got).slice(0, 80)}, expected ${String(expected).slice(0, 80)}`);
}

function syncCase(id: string, label: string, expected: unknown, call: () => unknown, ratioVs: string): BenchCase {
  return {
    id,
    label,
    ratioVs,
    runBatch(n) {
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        const got = call();
        out[i] = Number(process.hrtime.bigint() - t0);
        check(id, got, expected);
      }
      return out;
    },
  };
}

function jsCase(id: string, label: string, js: JsSandboxPool, w: Workload, ratioVs: string | undefined, extras?: () => Record<string, number>): BenchCase {
  return {
    id,
    label,
    ...(ratioVs ? { ratioVs } : {}),
    ...(extras ? { extras } : {}),
    async runBatch(n) {
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        const got = await js.eval(w.code);
        out[i] = Number(process.hrtime.bigint() - t0);
        check(id, got, w.expected);
      }
      return out;
    },
  };
}

/** calls/s of `total` evals with 16 per thread in flight; the median of `rounds` bursts. */
async function callsPerSecond(js: JsSandboxPool, w: Workload, total: number, rounds: number): Promise<number> {
  const rates: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 * js.threads }, async () => {
        while (next++ < total) check('burst', await js.eval(w.code), w.expected);
      }),
    );
    if (r > 0) rates.push(total / ((performance.now() - t0) / 1000)); // the first is a warm-up
  }
  return median(rates.sort((a, b) => a - b));
}

interface QuickJsWasm {
  newRuntime(): { newContext(): QjsContext; dispose(): void };
}
interface QjsContext {
  evalCode(code: string): unknown;
  unwrapResult(r: unknown): { dispose(): void };
  dump(h: unknown): unknown;
  dispose(): void;
}
/** A variable specifier: the bench compiles without the devDependency's types. */
const QJS_PACKAGE: string = 'quickjs-emscripten';

async function loadQuickJsWasm(): Promise<{ ok: true; qjs: QuickJsWasm } | { ok: false; reason: string }> {
  try {
    const mod = (await import(QJS_PACKAGE)) as { getQuickJS(): Promise<QuickJsWasm> };
    return { ok: true, qjs: await mod.getQuickJS() };
  } catch (e) {
    return { ok: false, reason: `cannot load quickjs-emscripten: ${e instanceof Error ? e.message : String(e)}` };
  }
}

export const js: Benchmark = {
  name: 'js',
  description: 'a fresh JS context per call: JsSandboxPool (QuickJS in a micro-VM) vs isolated-vm, quickjs-emscripten and node:vm',
  async run(options: BenchOptions): Promise<BenchReport> {
    const ivm = await loadIsolatedVm();
    const wasm = await loadQuickJsWasm();
    if (!ivm.ok) console.log(`js: ivm-context: ${ivm.reason}`);
    if (!wasm.ok) console.log(`js: qjs-wasm-context: ${wasm.reason}`);
    const js1 = new JsSandboxPool({ threads: 1, timeoutMs: 10_000 });
    const js2 = new JsSandboxPool({ threads: 2, timeoutMs: 10_000 });
    const isolate = ivm.ok ? new (ivm.ivm as Ivm).Isolate({ memoryLimit: 64 }) : undefined;
    const runtime = wasm.ok ? wasm.qjs.newRuntime() : undefined;
    const cps: Record<string, { one: number; two: number }> = {};
    try {
      await Promise.all([js1.eval('1'), js2.eval('1'), js2.eval('1')]);
      const tp = options.quick ? { total: 200, rounds: 1 } : { total: 2000, rounds: 3 };
      for (const w of WORKLOADS) {
        const total = w.suffix === '-loop' ? Math.ceil(tp.total / 10) : tp.total;
        cps[w.suffix] = { one: await callsPerSecond(js1, w, total, tp.rounds), two: await callsPerSecond(js2, w, total, tp.rounds) };
      }
      const cases: BenchCase[] = [];
      const scripts: { release(): void }[] = [];
      for (const w of WORKLOADS) {
        const base = `js-eval-1t${w.suffix}`;
        const c = cps[w.suffix]!;
        cases.push(jsCase(base, `JsSandboxPool.eval, 1 thread${w.suffix ? ` (${w.suffix.slice(1)})` : ''}`, js1, w, undefined, () => ({ calls_per_s: Math.round(c.one) })));
        cases.push(jsCase(`js-eval-2t${w.suffix}`, 'JsSandboxPool.eval, 2 threads', js2, w, base, () => ({ calls_per_s: Math.round(c.two), calls_per_s_vs_1t: Math.round((c.two / c.one) * 1000) / 1000 })));
        if (isolate && ivm.ok) {
          const script = isolate.compileScriptSync(w.code);
          scripts.push(script);
          cases.push(syncCase(`ivm-context${w.suffix}`, 'isolated-vm: new context in a warm isolate', w.expected, () => {
            const context = isolate.createContextSync();
            try {
              return script.runSync(context);
            } finally {
              context.release();
            }
          }, base));
        }
        if (runtime) {
          cases.push(syncCase(`qjs-wasm-context${w.suffix}`, 'quickjs-emscripten: new context in a warm runtime', w.expected, () => {
            const ctx = runtime.newContext();
            try {
              const h = ctx.unwrapResult(ctx.evalCode(w.code));
              const v = ctx.dump(h);
              h.dispose();
              return v;
            } finally {
              ctx.dispose();
            }
          }, base));
        }
        cases.push(syncCase(`node-vm${w.suffix}`, 'node:vm runInNewContext', w.expected, () => vm.runInNewContext(w.code), base));
      }
      // The cases of all workloads in one report; the loop is slow in the interpreters: fewer rounds for all.
      const plan = options.quick ? { iterations: 40, batch: 10 } : { iterations: 400, batch: 25 };
      const report = await runBenchmark('js', cases, plan);
      for (const s of scripts) s.release();

      const byId = (id: string) => report.cases.find((c) => c.id === id);
      const extra: CheckedTarget[] = [];
      const j = byId('js-eval-1t')!;
      for (const [peer, max] of [['ivm-context', 0.5], ['qjs-wasm-context', 1.0]] as const) {
        const p = byId(peer);
        if (!p) {
          console.log(`target: js-eval-1t p50 ≤ ${max}× ${peer}: NOT MEASURED`);
          continue;
        }
        const r = j.median_ns / p.median_ns;
        customTarget(`js-eval-1t p50 ≤ ${max}× ${peer}`, r <= max, `${r.toFixed(3)}×`);
        extra.push({ target: { id: 'js-eval-1t', maxRatio: max }, ratio: Math.round(r * 1000) / 1000, p99_ns: j.p99_ns, pass: r <= max });
      }
      const c = cps['']!;
      customTarget('js-eval-2t calls/s ≥ 1.7× js-eval-1t', c.two / c.one >= 1.7, `${(c.two / c.one).toFixed(3)}×: ${Math.round(c.two)} vs ${Math.round(c.one)} calls/s on ${availableParallelism()} cores`);
      for (const w of WORKLOADS.slice(1)) {
        const a = byId(`js-eval-1t${w.suffix}`)!;
        const peers = ['ivm-context', 'qjs-wasm-context', 'node-vm'].map((p) => byId(`${p}${w.suffix}`)).filter((x) => x);
        console.log(`js${w.suffix}: js-eval-1t ${(a.median_ns / 1000).toFixed(0)} µs; ${peers.map((p) => `${p!.id} ${(p!.median_ns / 1000).toFixed(0)} µs (js-eval-1t ${(a.median_ns / p!.median_ns).toFixed(2)}×)`).join(', ')}`);
      }
      report.targets.push(...extra);
      if (options.profile) await profileJs(js1, WORKLOADS, options.quick ? 3 : 10, options.quick ? 5 : 20);
      return report;
    } finally {
      isolate?.dispose();
      runtime?.dispose();
      await Promise.all([js1.close(), js2.close()]);
    }
  },
};
