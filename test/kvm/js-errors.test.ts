/** JsSandboxPool errors and limits: thrown errors, console capture, memory, stack, time, output. */
import { afterAll, describe, expect, it } from 'vitest';
import { SandboxTimeoutError } from '@kvmpool/core';
import { JsError, JsSandboxPool } from '@kvmpool/js';

const logs: string[] = [];
const js = new JsSandboxPool({ threads: 1, timeoutMs: 5000, memoryLimit: '16 MiB', maxOutput: '256 KiB', maxLogBytes: '4 KiB', onLog: (e) => logs.push(`${e.level}:${e.text}`) });
afterAll(() => js.close());

describe('JsSandboxPool errors and limits', () => {
  it("a thrown error is a JsError with the guest's name, message and stack", async () => {
    const e = await js.eval('function inner() { throw new RangeError("too far") }\nfunction outer() { inner() }\nouter()').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(JsError);
    expect(e).toMatchObject({ code: 'ERR_KVMPOOL_JS', jsName: 'RangeError', jsMessage: 'too far', message: 'RangeError: too far' });
    expect((e as JsError).jsStack).toMatch(/at inner \(script\.js/);
    expect((e as JsError).jsStack).toMatch(/at outer/);
    expect((e as JsError).jsStack).not.toMatch(/prelude/);
    await expect(js.eval('null.x')).rejects.toMatchObject({ jsName: 'TypeError' });
    await expect(js.eval('syntax error here')).rejects.toMatchObject({ jsName: 'SyntaxError' });
    await expect(js.eval('class E extends Error { get name() { return "MyError" } }; throw new E("custom")')).rejects.toMatchObject({ jsName: 'MyError', jsMessage: 'custom' });
    await expect(js.eval('throw { code: 7 }')).rejects.toMatchObject({ jsName: 'Error' });
    await expect(js.eval('throw "plain"')).rejects.toMatchObject({ jsMessage: 'plain', thrown: 'plain' });
  });

  it('console output is captured per call, in order, with its level; past maxLogBytes it is counted', async () => {
    logs.length = 0;
    const r = await js.run({ code: 'console.log("a", 1, { b: [2] }); console.error("e"); console.warn(undefined, null); 5' });
    expect(r.value).toBe(5);
    expect(r.logs).toEqual([{ level: 'log', text: 'a 1 {"b":[2]}' }, { level: 'error', text: 'e' }, { level: 'warn', text: 'undefined null' }]);
    expect(logs).toEqual(['log:a 1 {"b":[2]}', 'error:e', 'warn:undefined null']);
    const next = await js.run({ code: '1' });
    expect(next.logs).toEqual([]);
    const many = await js.run({ code: 'for (let i = 0; i < 1000; i++) console.log("line " + i); 0' });
    expect(many.logs.length).toBeLessThan(1000);
    expect(many.logs.length + many.logsDropped).toBe(1000);
    const thrown = await js.eval('console.log("before"); throw new Error("x")').catch((e: unknown) => e);
    expect((thrown as { logs: unknown }).logs).toEqual([{ level: 'log', text: 'before' }]);
  });

  it('memory past memoryLimit is an out-of-memory JsError, not a crash; the next call has the whole heap', async () => {
    const e = await js.eval('const a = []; for (;;) a.push("x".repeat(1000) + a.length)').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(JsError);
    expect(e).toMatchObject({ jsName: 'InternalError', jsMessage: 'out of memory' });
    await expect(js.eval('new Array(1e9).fill(0)')).rejects.toBeInstanceOf(JsError);
    // Half the limit fits, in a fresh heap, right after.
    expect(await js.eval('const b = []; for (let i = 0; i < 4000; i++) b.push("y".repeat(1000) + i); b.length')).toBe(4000);
  });

  it('deep recursion is a stack-overflow JsError', async () => {
    await expect(js.eval('function f(n) { return f(n + 1) + 1 } f(0)')).rejects.toMatchObject({ jsName: 'InternalError', jsMessage: 'stack overflow' });
    await expect(js.eval('let s = "[".repeat(1e6); JSON.parse(s)')).rejects.toBeInstanceOf(JsError);
    expect(await js.eval('function g(n) { return n === 0 ? 0 : 1 + g(n - 1) } g(1000)')).toBe(1000);
  });

  it('while(true){} ends with SandboxTimeoutError, and the next call works', async () => {
    const t0 = performance.now();
    await expect(js.eval('while (true) {}', { timeoutMs: 200 })).rejects.toBeInstanceOf(SandboxTimeoutError);
    expect(performance.now() - t0).toBeLessThan(2000);
    await expect(js.eval('new Promise(() => { setInterval(() => {}, 1) })', { timeoutMs: 150 })).rejects.toBeInstanceOf(SandboxTimeoutError);
    expect(await js.eval('"alive"')).toBe('alive');
  });

  it('an abort signal cancels a running script', async () => {
    const ac = new AbortController();
    const p = js.eval('for (;;) {}', { signal: ac.signal, timeoutMs: 0 });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(await js.eval('2')).toBe(2);
  });

  it('a timer delay of Infinity, NaN or past 2^31-1 ms is 1 ms, as in Node (not a wait that never ends)', async () => {
    // Before, Infinity made the driver's wait fail at once and retry until the call's 5 s limit.
    for (const delay of ['Infinity', 'NaN', '2 ** 40']) {
      expect(await js.eval(`new Promise((r) => setTimeout(() => r('fired'), ${delay}))`)).toBe('fired');
    }
  });

  it('a promise that can never settle is a JsError at once, not a hang', async () => {
    await expect(js.eval('new Promise(() => {})')).rejects.toMatchObject({ jsMessage: expect.stringMatching(/never settle/) });
  });

  it('a result larger than maxOutput is a clear JsError', async () => {
    await expect(js.eval('"z".repeat(300000)')).rejects.toMatchObject({ jsName: 'RangeError', jsMessage: expect.stringMatching(/maxOutput/) });
    expect(await js.eval('"z".repeat(1000).length')).toBe(1000);
  });
});
