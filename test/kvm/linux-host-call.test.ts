/** LinuxPool hostFunctions: a program's kvmpool_host_call() runs an async function of the embedding process. */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool, SDK_DIR, SandboxTimeoutError } from '@kvmpool/core';

const src = fileURLToPath(new URL('../fixtures/linux-host-call.c', import.meta.url));
const out = fileURLToPath(new URL('../.build/linux-host-call', import.meta.url));
mkdirSync(fileURLToPath(new URL('../.build/', import.meta.url)), { recursive: true });
execFileSync('musl-gcc', ['-static', '-O2', `-I${SDK_DIR}`, '-o', out, src]);

const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

describe('LinuxPool host calls', () => {
  const pool = new LinuxPool({
    program: out,
    threads: 1,
    timeoutMs: 2000,
    hostFunctions: {
      upper: async (arg) => {
        await new Promise((r) => setTimeout(r, 5));
        return new TextDecoder().decode(arg).toUpperCase();
      },
      fail: () => {
        throw new RangeError('no such user');
      },
      hang: () => new Promise<string>(() => {}),
    },
  });
  pools.push(pool);

  it('returns the result, a long one through kvmpool_host_result()', async () => {
    expect(text((await pool.run('upper\nab')).stdout)).toBe('ok 2 AB\n');
    expect(text((await pool.run(`upper\n${'x'.repeat(5000)}`)).stdout)).toBe(`ok 5000 ${'X'.repeat(5000)}\n`);
  });

  it('a function that throws is -EIO with its error as JSON; an unknown name is -ENOENT', async () => {
    expect(text((await pool.run('fail\n')).stdout)).toBe('threw {"name":"RangeError","message":"no such user"}\n');
    expect(text((await pool.run('nope\n')).stdout)).toBe('errno 2\n');
  });

  it('a host function past the deadline fails the call with SandboxTimeoutError; the next call works', async () => {
    await expect(pool.run('hang\n', { timeoutMs: 100 })).rejects.toBeInstanceOf(SandboxTimeoutError);
    expect(text((await pool.run('upper\nok')).stdout)).toBe('ok 2 OK\n');
  });

  it('a pool without host functions answers ENOSYS', async () => {
    const bare = new LinuxPool({ program: out, threads: 1 });
    pools.push(bare);
    expect(text((await bare.run('upper\nab')).stdout)).toBe('errno 38\n');
  });
});
