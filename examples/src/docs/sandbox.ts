// A sandbox pool: a C guest built with the SDK, a sync host function (a module, run in the
// worker) and an async one (run on the main thread), guest prints, stats.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SandboxPool, compileGuest } from '@kvmpool/core';

const dir = mkdtempSync(join(tmpdir(), 'kvmpool-docs-'));
try {
  writeFileSync(join(dir, 'shout.c'), `
#include "kvmpool.h"
/* Every export has this signature: input bytes in, output bytes out; the return value is the
   output length (<= cap), or a negative status the caller gets as a GuestError. */
KVMPOOL_EXPORT long shout(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  long k = kvmpool_host_call("greeting", in, n, out, cap);            /* async, main thread */
  if (k < 0 || (size_t)k + n + 8 > cap) return -1;
  for (size_t i = 0; i < n; i++) out[k + i] = in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i];
  long e = kvmpool_host_call("exclaim", in, n, out + k + n, 8);       /* sync, in the worker */
  kvmpool_puts("shout: done");
  return k + (long)n + e;
}`);
  // The hostFunctions module: each export takes the argument bytes and returns bytes, a string or nothing.
  writeFileSync(join(dir, 'host.mjs'), 'export function exclaim(arg) { return "!".repeat(Math.min(arg.length, 3)); }\n');
  const guest = compileGuest({ sources: [join(dir, 'shout.c')], output: join(dir, 'shout.elf') });

  await using pool = new SandboxPool({
    guest,                                   // a path, a file: URL or the ELF bytes
    memory: '4 MiB',                         // guest RAM per VM: image + 64 KiB stack + inputSize + outputSize
    inputSize: '64 KiB',
    outputSize: '64 KiB',
    threads: 2,
    timeoutMs: 1000,
    hostFunctions: join(dir, 'host.mjs'),
    asyncHostFunctions: { greeting: async () => 'hello, ' },
    onPrint: (text, fn) => console.log(`[${fn}] ${text}`),
  });
  const out = await Promise.all(['kvm', 'pool'].map((s) => pool.call('shout', s)));
  console.log(out.map((b) => Buffer.from(b).toString()).join(' / '));
  const stats = pool.stats();
  console.log(`calls ${stats.calls}, resets ${stats.resets}, latency p50 ${Math.round(stats.latency.p50)} µs over ${stats.latency.count} calls`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
