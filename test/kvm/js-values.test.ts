/** JsSandboxPool values: what crosses as JSON, what crosses differently (undefined, typed arrays), and clear errors for what cannot. */
import { afterAll, describe, expect, it } from 'vitest';
import { JsError, JsSandboxPool, JsValueError } from '@kvmpool/js';

const js = new JsSandboxPool({ threads: 1, timeoutMs: 5000 });
afterAll(() => js.close());

describe('JsSandboxPool values', () => {
  it('eval gives the completion value; call passes arguments and returns the result', async () => {
    expect(await js.eval('1 + 1')).toBe(2);
    expect(await js.eval('JSON.stringify({a:[1,2,3].map(x=>x*x)})')).toBe('{"a":[1,4,9]}');
    expect(await js.call('(a, b) => ({ sum: a + b, both: [a, b] })', 2, 3)).toEqual({ sum: 5, both: [2, 3] });
    expect(await js.call((s: string) => s.toUpperCase(), 'héllo ✓')).toBe('HÉLLO ✓');
    expect(await js.apply('(...xs) => xs.length', [1, 2, 3, 4], { timeoutMs: 1000 })).toBe(4);
  });

  it('round-trips JSON values: nested objects, arrays, strings, numbers, booleans, null', async () => {
    const v = { s: 'a"b\\c\n\u0000', n: -1.5e300, i: 2 ** 53 - 1, t: true, f: false, z: null, a: [[], {}, [1, [2, [3]]]], o: { 'not an ident': 1 } };
    expect(await js.call('(x) => x', v)).toEqual(v);
  });

  it('undefined stays undefined at the top level, and is left out of objects / null in arrays, as JSON does', async () => {
    expect(await js.eval('undefined')).toBeUndefined();
    expect(await js.eval('var x = 1')).toBeUndefined();
    expect(await js.call('(a, b) => [a === undefined, b]', undefined, 2)).toEqual([true, 2]);
    expect(await js.eval('({ a: undefined, b: 1, f() {} })')).toEqual({ b: 1 });
    expect(await js.eval('[undefined, () => 1, Symbol("s")]')).toEqual([null, null, null]);
  });

  it('Date → ISO string, NaN/Infinity → null, typed arrays → arrays of numbers, Map/Set → {}', async () => {
    expect(await js.eval('new Date(0)')).toBe('1970-01-01T00:00:00.000Z');
    expect(await js.eval('[NaN, Infinity, -Infinity]')).toEqual([null, null, null]);
    expect(await js.eval('({ u8: new Uint8Array([1, 2, 255]), f64: new Float64Array([0.5]) })')).toEqual({ u8: [1, 2, 255], f64: [0.5] });
    expect(await js.call('(a) => a', new Int16Array([-1, 2]))).toEqual([-1, 2]);
    expect(await js.eval('[new Map([[1, 2]]), new Set([1])]')).toEqual([{}, {}]);
    expect(await js.call('(d) => typeof d', new Date(0))).toBe('string');
  });

  it('a promise is awaited; a rejected one is a JsError', async () => {
    expect(await js.eval('Promise.resolve(7)')).toBe(7);
    expect(await js.eval('(async () => { await null; return [1, 2] })()')).toEqual([1, 2]);
    expect(await js.eval('new Promise((r) => setTimeout(() => r("later"), 5))')).toBe('later');
    await expect(js.eval('Promise.reject(new TypeError("no"))')).rejects.toMatchObject({ name: 'JsError', jsName: 'TypeError', jsMessage: 'no' });
  });

  it('a BigInt or a cycle in the result is a JsValueError naming where it is', async () => {
    const big = await js.eval('({ a: [1, 2n] })').catch((e: unknown) => e);
    expect(big).toBeInstanceOf(JsValueError);
    expect(big).toMatchObject({ code: 'ERR_KVMPOOL_JS_VALUE', path: 'result.a[1]' });
    expect((big as Error).message).toMatch(/result\.a\[1\] cannot cross as JSON: it is a BigInt/);
    const cyc = await js.eval('const o = { x: { y: {} } }; o.x.y.back = o; o').catch((e: unknown) => e);
    expect(cyc).toMatchObject({ name: 'JsValueError', path: 'result.x.y.back' });
    expect((cyc as Error).message).toMatch(/a cycle/);
    // A shared (not cyclic) reference is fine: it is copied.
    expect(await js.eval('const s = { k: 1 }; [s, s]')).toEqual([{ k: 1 }, { k: 1 }]);
  });

  it('a BigInt or a cycle in an argument is a JsValueError before anything runs', async () => {
    await expect(js.call('(x) => x', { deep: [1n] })).rejects.toMatchObject({ name: 'JsValueError', path: 'args[0].deep[0]' });
    const o: Record<string, unknown> = {};
    o.self = o;
    await expect(js.call('(a, b) => b', 1, o)).rejects.toMatchObject({ name: 'JsValueError', path: 'args[1].self' });
  });

  it('a source that is not a function is a JsError (TypeError)', async () => {
    await expect(js.call('42')).rejects.toMatchObject({ jsName: 'TypeError' });
    await expect(js.call('(')).rejects.toBeInstanceOf(JsError);
  });
});
