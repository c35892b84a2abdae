/**
 * The soak's call mix: each kind of sandbox call, how often it comes, how it is made and what
 * counts as right. A normal result is checked against a local computation; a failure must be
 * of the class the kind provokes.
 */
import { AbortError, GuestCrashError, GuestError, HostFunctionError, SandboxTimeoutError, type SandboxPool } from '@kvmpool/core';

export type Outcome = { ok: true } | { ok: false; wrong: string } | { ok: 'expected'; error: string };

export interface CallKind {
  name: string;
  /** Relative frequency (per 10,000 calls). */
  weight: number;
  /** Needs the main-thread (async) host functions: runs on the pool that has them, which does not pipeline. */
  asyncHost?: true;
  run(pool: SandboxPool, rnd: () => number): Promise<Outcome>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** FNV-1a 64, as the guest's `fnv` computes it. */
function fnv(bytes: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffff_ffff_ffff_ffffn;
  return h;
}

const xorshiftCache = new Map<number, bigint>();
/** The guest's `work`: xorshift64 of 0x9e3779b97f4a7c15 after `k` steps. */
function xorshift(k: number): bigint {
  let x = xorshiftCache.get(k);
  if (x !== undefined) return x;
  const M = 0xffff_ffff_ffff_ffffn;
  x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < k; i++) {
    x ^= (x << 13n) & M;
    x ^= x >> 7n;
    x ^= (x << 17n) & M;
  }
  xorshiftCache.set(k, x);
  return x;
}

function u64(b: Uint8Array, at = 0): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true);
}

function u64Bytes(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

function randomBytes(rnd: () => number, max: number): Uint8Array {
  const b = new Uint8Array(Math.floor(rnd() * (max + 1)));
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;
const describe = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** Runs `call`; its rejection must be an instance of `cls` passing `check`. */
async function expectFailure(call: Promise<Uint8Array>, cls: abstract new (...a: never[]) => Error, check: (e: Error) => string | undefined = () => undefined): Promise<Outcome> {
  try {
    const out = await call;
    return { ok: false, wrong: `resolved with ${out.length} bytes instead of failing with ${cls.name}` };
  } catch (e) {
    if (!(e instanceof cls)) throw e;
    const bad = check(e);
    return bad ? { ok: false, wrong: bad } : { ok: 'expected', error: cls.name };
  }
}

function hostInput(name: string, arg: Uint8Array): Uint8Array {
  const b = new Uint8Array(name.length + 1 + arg.length);
  b.set(enc.encode(name));
  b.set(arg, name.length + 1);
  return b;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const WORK_STEPS = [1_000, 50_000] as const;
/** Long enough (a few ms natively) that an abort usually lands while it runs. */
const ABORT_STEPS = 3_000_000;

export const CALL_KINDS: readonly CallKind[] = [
  {
    name: 'fnv',
    weight: 7000,
    async run(pool, rnd) {
      const input = randomBytes(rnd, 256);
      const out = await pool.call('fnv', input);
      if (out.length !== 16) return { ok: false, wrong: `fnv returned ${out.length} bytes` };
      if (u64(out) !== fnv(input)) return { ok: false, wrong: `fnv of ${input.length} bytes: ${hex(u64(out))}, expected ${hex(fnv(input))}` };
      if (u64(out, 8) !== 1n) return { ok: false, wrong: `the call saw ${u64(out, 8)} calls in its VM state: not reset` };
      return { ok: true };
    },
  },
  {
    name: 'work',
    weight: 900,
    async run(pool, rnd) {
      const k = WORK_STEPS[Math.floor(rnd() * WORK_STEPS.length)]!;
      const out = await pool.call('work', u64Bytes(BigInt(k)));
      return u64(out) === xorshift(k) ? { ok: true } : { ok: false, wrong: `work(${k}) = ${hex(u64(out))}, expected ${hex(xorshift(k))}` };
    },
  },
  {
    name: 'host-sync',
    weight: 800,
    async run(pool, rnd) {
      const arg = randomBytes(rnd, 64);
      const out = await pool.call('host', hostInput('rev', arg));
      return sameBytes(out, Uint8Array.from(arg).reverse()) ? { ok: true } : { ok: false, wrong: `rev of ${arg.length} bytes came back wrong` };
    },
  },
  {
    name: 'host-async',
    asyncHost: true,
    weight: 500,
    async run(pool, rnd) {
      const arg = randomBytes(rnd, 64);
      const out = await pool.call('host', hostInput('arev', arg));
      return sameBytes(out, Uint8Array.from(arg).reverse()) ? { ok: true } : { ok: false, wrong: `arev of ${arg.length} bytes came back wrong` };
    },
  },
  {
    name: 'guest-error',
    weight: 300,
    run(pool, rnd) {
      const b = Math.floor(rnd() * 200);
      return expectFailure(pool.call('fail', Uint8Array.of(b)), GuestError, (e) =>
        (e as GuestError).status === -1 - b ? undefined : `GuestError status ${(e as GuestError).status}, expected ${-1 - b}`);
    },
  },
  {
    name: 'host-error-sync',
    weight: 150,
    run(pool) {
      return expectFailure(pool.call('host', hostInput('boom', Uint8Array.of(1))), HostFunctionError, (e) =>
        e.message.includes('soak boom') ? undefined : `HostFunctionError without the host's message: ${e.message}`);
    },
  },
  {
    name: 'host-error-async',
    asyncHost: true,
    weight: 150,
    run(pool) {
      return expectFailure(pool.call('host', hostInput('aboom', Uint8Array.of(1))), HostFunctionError, (e) =>
        e.message.includes('soak async boom') ? undefined : `HostFunctionError without the host's message: ${e.message}`);
    },
  },
  {
    name: 'abort',
    weight: 150,
    async run(pool, rnd) {
      const ac = new AbortController();
      const early = rnd() < 0.3;
      if (early) ac.abort();
      else setTimeout(() => ac.abort(), Math.floor(rnd() * 3));
      try {
        const out = await pool.call('work', u64Bytes(BigInt(ABORT_STEPS)), { signal: ac.signal });
        if (early) return { ok: false, wrong: 'a call with an aborted signal ran' };
        // Finished before the abort: the result must still be right.
        return u64(out) === xorshift(ABORT_STEPS) ? { ok: true } : { ok: false, wrong: `work(${ABORT_STEPS}) raced with abort and came back wrong` };
      } catch (e) {
        if (!(e instanceof Error) || e.name !== 'AbortError') throw e;
        return e instanceof AbortError ? { ok: 'expected', error: 'AbortError' } : { ok: false, wrong: `an AbortError not of kvmpool's class: ${describe(e)}` };
      }
    },
  },
  {
    name: 'crash',
    weight: 25,
    run(pool) {
      return expectFailure(pool.call('crash', new Uint8Array(0)), GuestCrashError);
    },
  },
  {
    name: 'timeout',
    weight: 25,
    run(pool) {
      return expectFailure(pool.call('spin', new Uint8Array(0), { timeoutMs: 10 }), SandboxTimeoutError);
    },
  },
];

/** The async host functions the soak pool serves on the main thread. */
export const ASYNC_HOST_FUNCTIONS = {
  arev: async (arg: Uint8Array): Promise<Uint8Array> => {
    await Promise.resolve();
    return Uint8Array.from(arg).reverse();
  },
  aboom: async (): Promise<never> => {
    await Promise.resolve();
    throw new Error('soak async boom');
  },
};

/** Picks a kind by weight. */
export function pickKind(rnd: () => number): CallKind {
  let r = rnd() * 10_000;
  for (const k of CALL_KINDS) {
    r -= k.weight;
    if (r < 0) return k;
  }
  return CALL_KINDS[0]!;
}

export { describe as describeError, dec as textDecoder };
