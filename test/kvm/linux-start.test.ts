// Where a call's pristine state is captured. start: 'entry' runs every call from the entry point,
// so argv and env may change per call (and never outlive it); a program that exits before it
// reads stdin keeps the entry state under the default start too; per-call argv needs 'entry'.
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool } from '@kvmpool/core';
import { BUSYBOX, buildMusl, prng, requireBusybox, text } from '../support/linux.js';

requireBusybox();
const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));
const pool = (options: Omit<ConstructorParameters<typeof LinuxPool>[0], 'program'> & { program?: string }): LinuxPool => {
  const p = new LinuxPool({ program: BUSYBOX, threads: 1, timeoutMs: 5000, ...options });
  pools.push(p);
  return p;
};

const WORDS = ['a', 'hello', 'b c', 'ünïcödé', '日本', '', '$HOME', '*', "'q'", '"dq"', 'x'.repeat(3000)];

describe('LinuxPool start', () => {
  it("start: 'entry' with busybox echo: each call's argv, seeded, none of it left for the next call", async () => {
    const p = pool({ argv: ['echo', 'default'], start: 'entry' });
    const rand = prng(0x5eed_0009);
    for (let n = 0; n < 30; n++) {
      const args = Array.from({ length: Math.floor(rand() * 8) }, () => WORDS[Math.floor(rand() * WORDS.length)]!);
      const r = await p.run('', { argv: ['echo', ...args] });
      expect(text(r.stdout), `call ${n}`).toBe(`${args.join(' ')}\n`);
      expect(r.stats.start).toBe('entry');
      if (n % 5 === 0) expect(text((await p.run()).stdout)).toBe('default\n');
    }
  });

  it("start: 'entry' with per-call env (busybox env), argv and stdin together (a musl program)", async () => {
    const env = pool({ argv: ['env'], env: { POOL: '1' }, start: 'entry' });
    expect(text((await env.run()).stdout)).toBe('POOL=1\n');
    expect(text((await env.run('', { env: { A: 'x', B: 'y z' } })).stdout)).toBe('A=x\nB=y z\n');
    expect(text((await env.run('', { env: ['C=1', 'D='] })).stdout)).toBe('C=1\nD=\n');
    expect(text((await env.run('', { env: {} })).stdout)).toBe('');
    expect(text((await env.run()).stdout)).toBe('POOL=1\n');
    const hello = pool({ program: buildMusl('hello.c'), start: 'entry' });
    const r = await hello.run('one\ntwo\n', { argv: ['hi', '--x'], env: { GREETING: 'hey' } });
    expect(text(r.stdout)).toBe('argv[0] hi\nargv[1] --x\nhey one\nhey two\n');
    expect(text((await hello.run('three\n')).stdout)).toBe('argv[0] hello\nhello three\n');
  });

  it("start: 'entry': calls with and without their own argv alternate; each sees fresh AT_RANDOM bytes and an intact stack", async () => {
    const p = pool({ program: buildMusl('isolation.c'), start: 'entry' });
    const seen = new Set<string>();
    for (let n = 0; n < 8; n++) {
      const r = await p.run(`MARK-${n}\n`, n % 2 ? { argv: ['isolation', `call ${n}`] } : {});
      expect(r.exitCode, `call ${n}`).toBe(0);
      seen.add(/^at-random ([0-9a-f]{32})$/m.exec(text(r.stdout))![1]!);
    }
    expect(seen.size).toBe(8);
  });

  it("a program that exits without reading stdin keeps the entry state under the default start (stats.start 'entry')", async () => {
    const p = pool({ argv: ['echo', 'hi'] });
    for (let n = 0; n < 5; n++) {
      const r = await p.run(`ignored ${n}`);
      expect(text(r.stdout)).toBe('hi\n');
      expect(r.stats.start).toBe('entry');
    }
  });

  it("argv or env per call needs start: 'entry'", async () => {
    const p = pool({ argv: ['cat'] });
    await expect(p.run('x', { argv: ['cat', '-n'] })).rejects.toThrow(/start: 'entry'/);
    await expect(p.run('x', { env: { A: '1' } })).rejects.toThrow(/start: 'entry'/);
    expect(text((await p.run('still works')).stdout)).toBe('still works');
  });

  it('argv limits: NUL bytes and more than the argument space are refused before the call; the most that fits runs', async () => {
    const p = pool({ argv: ['echo'], start: 'entry' });
    await expect(p.run('', { argv: ['echo', 'a\0b'] })).rejects.toThrow(RangeError);
    await expect(p.run('', { argv: ['echo', 'x'.repeat(256 * 1024)] })).rejects.toThrow(/at most 262144/);
    await expect(p.run('', { argv: ['echo', ...new Array<string>(20_000).fill('a')] })).rejects.toThrow(/at most 16384/);
    const big = 'y'.repeat(200 * 1024);
    expect(text((await p.run('', { argv: ['echo', big] })).stdout)).toBe(`${big}\n`);
    expect(text((await p.run('', { argv: ['echo', 'small'] })).stdout)).toBe('small\n');
  });

  it('argv that does not fit a small stack fails that call with a RangeError, and the next call works', async () => {
    const p = pool({ argv: ['echo', 'ok'], start: 'entry', stackSize: '64 KiB' });
    const err = await p.run('', { argv: ['echo', 'z'.repeat(100 * 1024)] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(/do not fit the 65536-byte stack/);
    expect(text((await p.run()).stdout)).toBe('ok\n');
  });
});
