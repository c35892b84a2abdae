/**
 * JsSandboxPool isolation: every call starts from the same pristine context. What one call does
 * to globals, prototypes, the job and timer queues, the heap or Math.random is invisible to the
 * next — on one worker, so the calls run on the very same VM one after another.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { JsSandboxPool } from '@kvmpool/js';

const js = new JsSandboxPool({ threads: 1, timeoutMs: 5000, memoryLimit: '16 MiB' });
afterAll(() => js.close());

/** What a fresh context looks like, as a script sees it. */
const PROBE = `JSON.stringify({
  g: typeof leaked, keys: Object.keys(globalThis).length,
  map: [1, 2].map((x) => x * 2), proto: ({}).polluted, arr: [].polluted, json: JSON.stringify([1]),
  mathMax: Math.max(1, 2), toStr: String(Object.prototype.toString.call([])),
})`;

describe('JsSandboxPool isolation', () => {
  it('globals, Array.prototype.map, Object.prototype and JSON patched by one call are pristine in the next', async () => {
    const before = await js.eval(PROBE);
    await js.eval(`
      globalThis.leaked = 1; var alsoLeaked = 2;
      Array.prototype.map = function () { return 'patched' };
      Object.prototype.polluted = 'yes';
      Object.defineProperty(Array.prototype, 'polluted', { value: 'yes' });
      JSON.stringify = () => 'patched'; Math.max = () => -1;
      Object.prototype.toString = () => 'patched';
      'done'`);
    expect(await js.eval(PROBE)).toBe(before);
    expect(JSON.parse(before as string)).toMatchObject({ g: 'undefined', map: [2, 4], json: '[1]', mathMax: 2, toStr: '[object Array]' });
  });

  it('a patch cannot change how its own result is framed', async () => {
    const v = await js.eval('JSON.stringify = () => "x"; JSON.parse = () => 0; Array.prototype.join = () => "j"; Array.prototype.push = () => 0; console.log("still logged"); ({ ok: [1, 2] })');
    expect(v).toEqual({ ok: [1, 2] });
    const r = await js.run({ code: 'Array.prototype.push = null; console.log("x"); 1' });
    expect(r.logs).toEqual([{ level: 'log', text: 'x' }]);
  });

  it('a closure left in the timer or job queue never runs in a later call', async () => {
    await js.eval('globalThis.hits = 0; setTimeout(() => { globalThis.hits++; throw new Error("ran late") }, 0); setInterval(() => globalThis.hits++, 1); Promise.resolve().then(() => {}); "returned"');
    await new Promise((r) => setTimeout(r, 20));
    expect(await js.eval('new Promise((r) => setTimeout(() => r(typeof globalThis.hits), 10))')).toBe('undefined');
  });

  it('a call that fills the heap leaves nothing behind: the next has the same free memory', async () => {
    const free = 'const xs = []; try { for (;;) xs.push(new Array(1000).fill(xs.length)) } catch (e) {} xs.length';
    const first = await js.eval(free);
    await js.eval('globalThis.keep = []; for (let i = 0; i < 1000; i++) keep.push("k".repeat(1000)); 0');
    expect(await js.eval(free)).toBe(first);
    expect(await js.eval('typeof keep')).toBe('undefined');
  });

  it('Math.random differs per call (reseeded from fresh AT_RANDOM bytes), and within a call it is a sequence', async () => {
    const draws = new Set<string>();
    for (let i = 0; i < 20; i++) draws.add((await js.eval('JSON.stringify([Math.random(), Math.random()])')) as string);
    expect(draws.size).toBe(20);
    const [a, b] = JSON.parse([...draws][0]!) as number[];
    expect(a).not.toBe(b);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThan(1);
  });

  it('the same pristine state on every worker: two threads agree', async () => {
    const two = new JsSandboxPool({ threads: 2, timeoutMs: 5000 });
    try {
      const seen = await Promise.all(Array.from({ length: 8 }, () => two.eval('globalThis.n = (globalThis.n ?? 0) + 1; n')));
      expect(seen).toEqual(Array(8).fill(1));
    } finally {
      await two.close();
    }
  });
});
