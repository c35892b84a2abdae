// Strict input: every option and argument is checked before a call is queued, with a
// TypeError or RangeError that names it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostFunctionError, SandboxPool, SandboxWorkerError } from '@kvmpool/core';
import { buildSandboxGuest } from '../support/build-c.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

let guest: string;
let pool: SandboxPool;
beforeAll(() => {
  guest = buildSandboxGuest('pool-guest.c');
  pool = new SandboxPool({
    guest,
    threads: 1,
    asyncHostFunctions: {
      num: async () => 42 as unknown as Uint8Array,
      obj: async () => ({ a: 1 }) as unknown as Uint8Array,
      nested: async () => Promise.resolve({ b: 2 }) as unknown as Uint8Array,
      none: async () => undefined,
      text: async () => 'héllo',
    },
  });
});
afterAll(async () => {
  await pool.close();
});

describe('SandboxPool input', () => {
  it('input bytes: a string is UTF-8, buffers and views give their bytes', async () => {
    expect(dec(await pool.call('echo', 'abc'))).toBe('abc');
    expect(dec(await pool.call('echo', 'zürich'))).toBe('zürich');
    expect(dec(await pool.call('echo', enc('view').buffer))).toBe('view');
    expect(dec(await pool.call('echo', new DataView(enc('xxdvxx').buffer, 2, 2)))).toBe('dv');
    expect([...(await pool.call('echo', new Uint16Array([0x4241])))]).toEqual([0x41, 0x42]);
  });

  it('input that is not bytes is a TypeError naming input', async () => {
    for (const bad of [undefined, 42, { length: 3 }, null]) {
      await expect(pool.call('echo', bad as unknown as Uint8Array)).rejects.toThrow(TypeError);
      await expect(pool.call('echo', bad as unknown as Uint8Array)).rejects.toThrow(/^input: /);
    }
  });

  it('call options: signal must be an AbortSignal, timeoutMs a whole number of ms in range', async () => {
    await expect(pool.call('echo', 'x', { signal: {} as AbortSignal })).rejects.toThrow(/signal: expected an AbortSignal/);
    for (const t of [-5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, 1.5]) {
      await expect(pool.call('echo', 'x', { timeoutMs: t })).rejects.toThrow(RangeError);
      await expect(pool.call('echo', 'x', { timeoutMs: t })).rejects.toThrow(/^timeoutMs: /);
    }
    await expect(pool.call('echo', 'x', { timeoutMs: '5' as unknown as number })).rejects.toThrow(/^timeoutMs: expected/);
    expect(dec(await pool.call('echo', 'fine'))).toBe('fine');
  });

  it('async host function results: strings and nothing are fine; numbers and objects are HostFunctionErrors with a TypeError cause', async () => {
    expect(dec(await pool.call('call_host', enc('text\0')))).toBe('héllo');
    expect((await pool.call('call_host', enc('none\0'))).length).toBe(0);
    for (const name of ['num', 'obj', 'nested']) {
      const err = await pool.call('call_host', enc(`${name}\0`)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HostFunctionError);
      expect((err as Error).cause).toBeInstanceOf(TypeError);
    }
  });

  it('constructor options are validated, each error naming its option', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ threads: 0 }, /^threads: /],
      [{ threads: 1.5 }, /^threads: /],
      [{ threads: '2' }, /^threads: /],
      [{ memory: '1 TiB' }, /^memory: .*(GiB|limit|at most)/],
      [{ memory: -1 }, /memory/],
      [{ inputSize: 'lots' }, /inputSize/],
      [{ outputSize: {} }, /outputSize/],
      [{ timeoutMs: -5 }, /^timeoutMs: /],
      [{ initTimeoutMs: Number.NaN }, /^initTimeoutMs: /],
      [{ hostFunctions: 42 }, /^hostFunctions: /],
      [{ asyncHostFunctions: { f: 'not a function' } }, /^asyncHostFunctions\.f: /],
      [{ asyncHostFunctions: 'x' }, /^asyncHostFunctions: /],
      [{ onPrint: 'log' }, /^onPrint: /],
      [{ guest: 42 }, /^guest: /],
      [{ warmUp: 'echo' }, /^warmUp: /],
      [{ warmUp: { fn: 'no_such_function' } }, /^warmUp\.fn: /],
      [{ warmUp: { fn: 'echo', input: 'text' } }, /^warmUp\.input: /],
      [{ warmUp: { fn: 'echo', input: new Uint8Array(2 << 20) } }, /^warmUp\.input: .*inputSize/],
    ];
    for (const [opts, message] of bad) expect(() => new SandboxPool({ guest, ...opts } as never), JSON.stringify(opts)).toThrow(message);
    expect(() => new SandboxPool({ guest, memory: '1 TiB' })).toThrow(RangeError);
  });

  it('guest may be a path, a file URL or bytes (Uint8Array, Buffer, ArrayBuffer)', async () => {
    const bytes = readFileSync(guest);
    for (const g of [pathToFileURL(guest), new Uint8Array(bytes), bytes, new Uint8Array(bytes).buffer]) {
      const p = new SandboxPool({ guest: g, threads: 1 });
      try {
        expect(dec(await p.call('echo', 'ok'))).toBe('ok');
      } finally {
        await p.close();
      }
    }
  });

  it('a missing hostFunctions module is refused at construction, naming the option and the path', () => {
    expect(() => new SandboxPool({ guest, threads: 1, hostFunctions: '/no/such/host-module.mjs' })).toThrow(
      expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/^hostFunctions: \/no\/such\/host-module\.mjs: no such module file/) }),
    );
    expect(() => new SandboxPool({ guest, threads: 1, hostFunctions: new URL('file:///no/such/host-module.mjs') })).toThrow(/^hostFunctions: /);
  });

  it('a hostFunctions module that exists but does not load fails the pool start: calls reject naming the option and the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvmpool-host-'));
    const bad = join(dir, 'broken.mjs');
    writeFileSync(bad, 'export const x = ;\n');
    const p = new SandboxPool({ guest, threads: 1, hostFunctions: bad });
    try {
      for (let i = 0; i < 2; i++) {
        const err = await p.call('echo', 'x').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SandboxWorkerError);
        expect((err as Error).message).toMatch(/hostFunctions: cannot load .*broken\.mjs/);
      }
    } finally {
      await p.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
