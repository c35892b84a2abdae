/**
 * What resident memory a warm sandbox VM costs, by guest memory size. Each size runs in a
 * fresh child process: RSS is read after start-up (and a GC), then after a one-thread
 * SandboxPool of that size has made its VM and answered one call, and the difference printed.
 * The guest touches a few pages only. Guest RAM is a SharedArrayBuffer that the kernel commits
 * page by page, and a sandbox VM keeps copies of only the non-zero pages of its pristine state
 * (sandbox/pristine-pages.ts), so a machine (`--kind machine`), an SDK sandbox (`--kind sandbox`)
 * and a Linux program's sandbox (`--kind linux`: busybox sha256sum) cost about the same whatever
 * their memory size.
 *   npm run build && node bench/dist/memory-rss.js [--kind sandbox|machine|linux] [--sizes 8,64,256,1024] [--threads 1]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LinuxPool, SandboxPool, compileGuest, createMachine } from '@kvmpool/core';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '8,64,256,1024' },
    threads: { type: 'string', default: '1' },
    child: { type: 'string' },
    guest: { type: 'string' },
    kind: { type: 'string', default: 'sandbox' },
  },
});

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

async function settle(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().rss;
}

if (values.child !== undefined && values.kind === 'machine') {
  const before = await settle();
  const vm = await createMachine({ memory: `${values.child} MiB` });
  vm.load(0x10000n, new Uint8Array([0xba, 0x00, 0x05, 0x00, 0x00, 0xee])); // out to the halt port 0x500
  await vm.start({ entry: 0x10000n, stack: 0x100000n });
  await vm.waitForExit();
  const after = await settle();
  await vm.close();
  process.stdout.write(JSON.stringify({ before, after }));
} else if (values.child !== undefined && values.kind === 'linux') {
  const before = await settle();
  const pool = new LinuxPool({ program: '/bin/busybox', argv: ['sha256sum'], memory: `${values.child} MiB`, threads: Number(values.threads) });
  await pool.run('warm');
  const after = await settle();
  await pool.close();
  process.stdout.write(JSON.stringify({ before, after }));
} else if (values.child !== undefined && values.guest !== undefined) {
  const before = await settle();
  const pool = new SandboxPool({ guest: values.guest, memory: `${values.child} MiB`, threads: Number(values.threads) });
  await pool.call('echo', 'warm');
  const after = await settle();
  await pool.close();
  process.stdout.write(JSON.stringify({ before, after }));
} else {
  const dir = mkdtempSync(join(tmpdir(), 'kvmpool-rss-'));
  try {
    writeFileSync(join(dir, 'echo.c'), `#include "kvmpool.h"
KVMPOOL_EXPORT long echo(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  if (n > cap) return -1;
  for (size_t i = 0; i < n; i++) out[i] = in[i];
  return (long)n;
}\n`);
    const guest = compileGuest({ sources: [join(dir, 'echo.c')], output: join(dir, 'echo.elf') });
    const self = fileURLToPath(import.meta.url);
    console.log(values.kind === 'machine'
      ? 'createMachine, one vCPU, run to the halt port; RSS of the whole process'
      : values.kind === 'linux'
        ? `warm LinuxPool (busybox sha256sum), ${values.threads} thread(s), one call; RSS of the whole process`
        : `warm SandboxPool, ${values.threads} thread(s), one call; RSS of the whole process`);
    console.log('memory      RSS before   RSS after   difference');
    for (const size of values.sizes.split(',').map(Number)) {
      const out = execFileSync(process.execPath, ['--expose-gc', self, '--child', String(size), '--guest', guest, '--threads', values.threads, '--kind', values.kind], { encoding: 'utf8' });
      const { before, after } = JSON.parse(out) as { before: number; after: number };
      console.log(`${`${size} MiB`.padEnd(10)}  ${mib(before).padStart(10)}  ${mib(after).padStart(10)}  ${mib(after - before).padStart(11)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
