// Debian's static busybox (glibc) in a LinuxPool gives the same stdout, stderr and exit code as
// the same binary run on the host with the same argv and stdin, call after call: empty input,
// text, binary, numbers, long lines and 1 MiB, from a seeded PRNG (the seed is in the test name).
import { afterAll, describe, expect, it } from 'vitest';
import { LinuxPool } from '@kvmpool/core';
import { gzipSync } from 'node:zlib';
import { BUSYBOX, prng, requireBusybox, runOnHost, runOnHostBatch, text } from '../support/linux.js';

requireBusybox();

const SEED = 0x5eed_0010;
const MiB = 1024 * 1024;
const WORDS = ['apple', 'Banana', 'cherry', 'date', '42', '-7', '3.5', 'zeta', 'éclair', '', 'a b', '\t'];

type Gen = (rand: () => number, n: number) => Uint8Array;

const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const randomBytes: Gen = (rand, n) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
function lines(rand: () => number, n: number, word: () => string): Uint8Array {
  let s = '';
  while (s.length < n) s += `${Array.from({ length: Math.floor(rand() * 6) }, word).join(rand() < 0.8 ? ' ' : '\t')}\n`;
  if (rand() < 0.3) s = s.slice(0, -1); // no newline at the end
  return new TextEncoder().encode(s);
}
const textLines: Gen = (rand, n) => lines(rand, n, () => pick(rand, WORDS));
const numberLines: Gen = (rand, n) => lines(rand, n, () => String(Math.round((rand() - 0.5) * 10 ** Math.floor(rand() * 6))));
/** One line of about `n` bytes, or a few long ones. */
const longLines: Gen = (rand, n) => lines(rand, n, () => 'x'.repeat(Math.floor(rand() * 2000)));

/** The input of call `i`: empty first, 1 MiB second, then small inputs of every kind. */
function input(rand: () => number, i: number, big: Gen): Uint8Array {
  if (i === 0) return new Uint8Array(0);
  if (i === 1) return big(rand, MiB).subarray(0, MiB);
  const gen = pick(rand, [randomBytes, textLines, numberLines, longLines]);
  const n = pick(rand, [1, 2, 10, 100, 1000, 5000]);
  return gen(rand, Math.floor(rand() * n) + 1);
}

/** gzip streams: whole, cut short, with a byte flipped, or not gzip at all. */
function gzipInput(rand: () => number, i: number): Uint8Array {
  if (i === 0) return new Uint8Array(0);
  const whole = gzipSync(i === 1 ? textLines(rand, MiB) : textLines(rand, Math.floor(rand() * 3000) + 1));
  switch (i % 4) {
    case 0:
      return whole.subarray(0, Math.floor(rand() * whole.length));
    case 1:
      return whole;
    case 2: {
      const b = whole.slice();
      b[Math.floor(rand() * b.length)]! ^= 1 << Math.floor(rand() * 8);
      return b;
    }
    default:
      return randomBytes(rand, Math.floor(rand() * 100) + 1);
  }
}

interface Case {
  argv: string[];
  calls: number;
  /** The 1 MiB input (its line lengths matter: busybox awk writes once per line). */
  big: Gen;
  input?: (rand: () => number, i: number) => Uint8Array;
  /** The inputs reach more than one exit code. */
  outcomes?: true;
}

const CASES: Case[] = [
  { argv: ['sha256sum'], calls: 50, big: randomBytes },
  { argv: ['sort'], calls: 50, big: textLines },
  { argv: ['awk', '{print $2, $1}'], calls: 50, big: longLines },
  { argv: ['wc'], calls: 50, big: textLines },
  { argv: ['gzip', '-c'], calls: 50, big: randomBytes },
  // Exit codes other than 0: sort -c fails on unsorted input; awk exits with a computed status.
  { argv: ['sort', '-c', '-n'], calls: 20, big: numberLines, outcomes: true },
  { argv: ['awk', '{ n += NF } END { print n, NR; exit NR % 5 }'], calls: 20, big: longLines, outcomes: true },
  { argv: ['gzip', '-d', '-c'], calls: 20, big: randomBytes, input: gzipInput, outcomes: true },
];

const pools: LinuxPool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

describe('busybox applets in a LinuxPool match the host', () => {
  for (const [n, c] of CASES.entries()) {
    it(`${c.argv.join(' ')}: ${c.calls} calls, seed ${(SEED + n).toString(16)}`, async () => {
      const pool = new LinuxPool({ program: BUSYBOX, argv: c.argv, threads: 1, timeoutMs: 20_000 });
      pools.push(pool);
      const rand = prng(SEED + n);
      const inputs = Array.from({ length: c.calls }, (_, i) => (c.input ? c.input(rand, i) : input(rand, i, c.big)));
      const hosts = runOnHostBatch(BUSYBOX, c.argv, inputs);
      const codes = new Set<number | null>();
      for (const [i, stdin] of inputs.entries()) {
        const host = hosts[i]!;
        const r = await pool.run(stdin);
        const what = `call ${i}, ${stdin.length} bytes of stdin`;
        expect(r.exitCode, what).toBe(host.exitCode);
        expect(r.signal, what).toBeUndefined();
        expect(text(r.stderr), what).toBe(text(host.stderr));
        // Buffer.equals: a mismatch of 1 MiB is reported as false, not as a megabyte of diff.
        expect(Buffer.from(r.stdout).equals(host.stdout), `${what}: stdout (${r.stdout.length} bytes, host ${host.stdout.length})`).toBe(true);
        expect(r.dropped).toEqual({ stdout: 0, stderr: 0 });
        expect(r.stats.start).toBe('first-read');
        expect(r.stats.unknownSyscalls).toEqual({});
        codes.add(r.exitCode);
      }
      if (c.outcomes) expect(codes.size, `exit codes seen: ${[...codes].join()}`).toBeGreaterThan(1);
    });
  }

  it('gzip -c of stdin embeds no timestamp (MTIME 0), in the sandbox as on the host: its bytes can be compared', async () => {
    const pool = new LinuxPool({ program: BUSYBOX, argv: ['gzip', '-c'], threads: 1 });
    pools.push(pool);
    const r = await pool.run('the same input\n');
    const host = runOnHost(BUSYBOX, ['gzip', '-c'], new TextEncoder().encode('the same input\n'));
    for (const out of [r.stdout, host.stdout]) {
      expect([...out.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]); // magic, deflate, no FNAME
      expect([...out.subarray(4, 8)]).toEqual([0, 0, 0, 0]); // MTIME
    }
  });

  it('sha256sum on two threads: concurrent calls each get their own input’s digest', async () => {
    const pool = new LinuxPool({ program: BUSYBOX, argv: ['sha256sum'], threads: 2, timeoutMs: 20_000 });
    pools.push(pool);
    const rand = prng(SEED - 1);
    const inputs = Array.from({ length: 40 }, (_, i) => randomBytes(rand, i * 97));
    const results = await Promise.all(inputs.map((b) => pool.run(b)));
    const hosts = runOnHostBatch(BUSYBOX, ['sha256sum'], inputs);
    for (const [i, r] of results.entries()) expect(text(r.stdout), `call ${i}`).toBe(text(hosts[i]!.stdout));
  });

  it('the batch runner and a direct spawn of the host binary agree (the comparison itself is sound)', () => {
    const stdin = new TextEncoder().encode('b 2\na 1\n');
    const [batch] = runOnHostBatch(BUSYBOX, ['sort', '-c'], [stdin]);
    const direct = runOnHost(BUSYBOX, ['sort', '-c'], stdin);
    expect(batch).toEqual(direct);
    expect(direct.exitCode).toBe(1);
    expect(text(direct.stderr)).not.toBe('');
  });
});
