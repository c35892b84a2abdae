/** JsSandboxPool host functions: `await host.NAME(...)` runs an async function of this process, with values converted as call()'s. */
import { afterAll, describe, expect, it } from 'vitest';
import { SandboxTimeoutError } from '@kvmpool/core';
import { JsSandboxPool } from '@kvmpool/js';

const seen: unknown[][] = [];
const js = new JsSandboxPool({
  threads: 1,
  timeoutMs: 3000,
  hostFunctions: {
    lookup: async (key: string) => {
      await new Promise((r) => setTimeout(r, 2));
      return { key, value: key.length, when: new Date(0) };
    },
    record: (...args: unknown[]) => {
      seen.push(args);
    },
    fail: async () => {
      throw new RangeError('not found');
    },
    bigint: () => 1n,
    hang: () => new Promise(() => {}),
  },
});
afterAll(() => js.close());

describe('JsSandboxPool host functions', () => {
  it('a script awaits a host function and gets its result as JSON', async () => {
    expect(await js.eval('(async () => (await host.lookup("abc")))()')).toEqual({ key: 'abc', value: 3, when: '1970-01-01T00:00:00.000Z' });
    expect(await js.call('async (ks) => Promise.all(ks.map((k) => host.lookup(k).then((r) => r.value)))', ['a', 'bb', 'ccc'])).toEqual([1, 2, 3]);
    expect(await js.eval('Object.keys(host).sort().join()')).toBe('bigint,fail,hang,lookup,record');
  });

  it('arguments cross as call()s do: undefined kept at the top level, typed arrays as arrays', async () => {
    seen.length = 0;
    expect(await js.eval('host.record(1, undefined, new Uint8Array([7]), { d: undefined })')).toBeUndefined();
    expect(seen).toEqual([[1, undefined, [7], {}]]);
  });

  it("a host function's error rejects in the script with its name and message; the script can catch it", async () => {
    expect(await js.eval('host.fail().catch((e) => [e instanceof RangeError, e.name, e.message])')).toEqual([true, 'RangeError', 'not found']);
    await expect(js.eval('(async () => { await host.fail() })()')).rejects.toMatchObject({ jsName: 'RangeError', jsMessage: 'not found' });
  });

  it('values that cannot cross are TypeErrors in the script, either way', async () => {
    expect(await js.eval('host.record(1n).catch((e) => e.name + ": " + e.message)')).toMatch(/^TypeError: host\.record argument\[0\] cannot cross as JSON: it is a BigInt/);
    expect(await js.eval('host.bigint().catch((e) => e.message)')).toMatch(/the result of host\.bigint cannot cross as JSON/);
  });

  it('a host function that never answers ends the call at its deadline; the next call works', async () => {
    await expect(js.eval('host.hang()', { timeoutMs: 100 })).rejects.toBeInstanceOf(SandboxTimeoutError);
    expect(await js.eval('host.lookup("z").then((r) => r.value)')).toBe(1);
  });
});
