/**
 * The `linux` benchmark's host-process baseline: /bin/busybox sha256sum spawned per call with
 * the 4 KiB input on stdin, its digest checked. `spawnSha256sum()` is one call;
 * run as a script (`node linux-spawn.js`), this file answers CProcess's batch protocol
 * (c-process.ts: "ready", then "N" → N durations in ns), so the spawns are made from a
 * plain Node process. Forked from the benchmark's own process they would pay for its page
 * tables — the guest memory of every pool — and measure that rather than a spawn.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BUSYBOX } from './linux-guests.js';

/** 4 KiB, byte i = (i * 7 + 3) & 0xff. */
export const SHA_INPUT = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff);
/** What `sha256sum` prints for SHA_INPUT on stdin. */
export const SHA_EXPECTED = `${createHash('sha256').update(SHA_INPUT).digest('hex')}  -\n`;
const dec = new TextDecoder();

export function checkDigest(id: string, stdout: Uint8Array, exitCode: number | null): void {
  const got = dec.decode(stdout);
  if (got !== SHA_EXPECTED || exitCode !== 0) throw new Error(`${id}: sha256sum gave ${JSON.stringify(got)} (exit ${String(exitCode)}), expected ${JSON.stringify(SHA_EXPECTED)}`);
}

/** One host process: busybox sha256sum with SHA_INPUT on stdin; resolves once it has exited and its digest is checked. */
export function spawnSha256sum(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(BUSYBOX, ['sha256sum'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        checkDigest('spawn-sha256sum', Buffer.concat(out), code);
        resolve();
      } catch (e) {
        reject(e as Error);
      }
    });
    child.stdin.end(SHA_INPUT);
  });
}

async function serve(): Promise<void> {
  await spawnSha256sum(); // fails before "ready" if busybox is missing or wrong
  console.log('ready');
  for await (const line of createInterface({ input: process.stdin })) {
    const n = Number(line.trim());
    if (!Number.isInteger(n) || n < 0) throw new Error(`linux-spawn: bad request ${JSON.stringify(line)}`);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await spawnSha256sum();
      out.push(Number(process.hrtime.bigint() - t0));
    }
    console.log(out.join(' '));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  serve().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
