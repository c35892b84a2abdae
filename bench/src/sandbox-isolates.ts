/**
 * The JS-isolation comparison cases of the `sandbox` benchmark: the guest's `sum` done in JS,
 * in a fresh JS sandbox per call —
 *   ivm-context  isolated-vm: a new context per call in one warm isolate (script compiled once)
 *   ivm-isolate  isolated-vm: a new isolate (and context) per call, disposed after it
 *   node-vm      node:vm `runInNewContext` per call
 * Each call hands the 64-byte input in, runs the loop, takes the number out (and it is checked).
 */
import vm from 'node:vm';
import type { BenchCase } from './harness.js';

/** The work, as a script whose completion value is the sum of the bytes of `input`. */
const SUM_SOURCE = 'let s = 0; for (let i = 0; i < input.length; i++) s += input[i]; s';

/** The part of isolated-vm's API these cases use, declared here: the package is optional. */
interface IvmContext {
  global: { setSync(name: string, value: unknown): void };
  release(): void;
}
interface IvmScript {
  runSync(context: IvmContext): unknown;
  release(): void;
}
interface IvmIsolate {
  compileScriptSync(source: string): IvmScript;
  createContextSync(): IvmContext;
  dispose(): void;
}
interface Ivm {
  Isolate: new (options: { memoryLimit: number }) => IvmIsolate;
  ExternalCopy: new (value: unknown) => { copyInto(): unknown };
}
/** A variable specifier: TypeScript then does not need the optional package to compile. */
const IVM_PACKAGE: string = 'isolated-vm';

export type IsolatedVmLoad = { ok: true; ivm: Ivm; version: string } | { ok: false; reason: string };

/** Loads isolated-vm (an optional dependency of the bench, built from source on install) and checks that it runs. */
export async function loadIsolatedVm(): Promise<IsolatedVmLoad> {
  let ivm: Ivm;
  try {
    ivm = ((await import(IVM_PACKAGE)) as { default: Ivm }).default;
  } catch (e) {
    return { ok: false, reason: `cannot load isolated-vm (npm install isolated-vm@5.0.4 -w @kvmpool/bench; it builds from source with node-gyp): ${why(e)}` };
  }
  let version = '?';
  try {
    const { createRequire } = await import('node:module');
    version = (createRequire(import.meta.url)('isolated-vm/package.json') as { version: string }).version;
    const isolate = new ivm.Isolate({ memoryLimit: 8 });
    try {
      if (isolate.compileScriptSync('6 * 7').runSync(isolate.createContextSync()) !== 42) throw new Error('a test script gave a wrong answer');
    } finally {
      isolate.dispose();
    }
  } catch (e) {
    return { ok: false, reason: `isolated-vm loads but does not run: ${why(e)}` };
  }
  return { ok: true, ivm, version };
}

/** The first line of an error's message. */
function why(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n', 1)[0]!;
}

function check(id: string, got: unknown, expected: number): void {
  if (got !== expected) throw new Error(`${id}: the sum came back as ${String(got)}, expected ${expected}`);
}

function timed(id: string, label: string, expected: number, call: () => unknown, ratioVs?: string): BenchCase {
  return {
    id,
    label,
    ...(ratioVs ? { ratioVs } : {}),
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

/** A new context per call in one warm isolate; the script is compiled once. Call `close` after. */
export function ivmContextCase(ivm: Ivm, input: Uint8Array, expected: number, ratioVs?: string): BenchCase & { close(): void } {
  const isolate = new ivm.Isolate({ memoryLimit: 32 });
  const script = isolate.compileScriptSync(SUM_SOURCE);
  const c = timed('ivm-context', 'isolated-vm: new context per call in a warm isolate', expected, () => {
    const context = isolate.createContextSync();
    try {
      context.global.setSync('input', new ivm.ExternalCopy(input).copyInto());
      return script.runSync(context);
    } finally {
      context.release();
    }
  }, ratioVs);
  return {
    ...c,
    close() {
      script.release();
      isolate.dispose();
    },
  };
}

/** A new isolate per call: create, context, compile, run, dispose. */
export function ivmIsolateCase(ivm: Ivm, input: Uint8Array, expected: number, ratioVs?: string): BenchCase {
  return timed('ivm-isolate', 'isolated-vm: new isolate per call', expected, () => {
    const isolate = new ivm.Isolate({ memoryLimit: 8 });
    try {
      const context = isolate.createContextSync();
      context.global.setSync('input', new ivm.ExternalCopy(input).copyInto());
      return isolate.compileScriptSync(SUM_SOURCE).runSync(context);
    } finally {
      isolate.dispose();
    }
  }, ratioVs);
}

/** node:vm, a new context per call (`runInNewContext`). Not a security boundary; for scale. */
export function nodeVmCase(input: Uint8Array, expected: number, ratioVs?: string): BenchCase {
  return timed('node-vm', 'node:vm runInNewContext per call', expected, () => vm.runInNewContext(SUM_SOURCE, { input }), ratioVs);
}
