/**
 * Your own C, with a libc, in a micro-VM: examples/guests/wordfreq.c (malloc, realloc, calloc,
 * strdup, qsort, printf, getenv — ordinary C, nothing kvmpool-specific) is built with
 * `musl-gcc -static -O2` (Debian package musl-tools) and run in a LinuxPool over several
 * inputs. Its heap grows through brk/mmap inside the VM and is thrown away after every call.
 * Part two uses start: 'entry' so that each call can pass its own argv and env. Every output is
 * checked against the same executable run on the host; a difference, or a missing musl-gcc,
 * ends with status 1.
 *   node examples/dist/linux-musl.js
 */
import { execFileSync } from 'node:child_process';
import { LinuxPool } from '@kvmpool/core';
import { buildMuslProgram, closePoolsOnSignal } from './linux-tools.js';

/** A big input: 40 000 words over a 3 000-word vocabulary, so the hash table doubles six times. */
function bigText(): string {
  let a = 12345;
  const words: string[] = [];
  for (let i = 0; i < 40_000; i++) {
    a = (a * 1103515245 + 12345) >>> 0;
    words.push(`w${(a >>> 8) % 3000}`);
  }
  return `${words.join(' ')}\n`;
}

const INPUTS: readonly [string, string][] = [
  ['a pangram', 'The quick brown fox jumps over the lazy dog. The dog sleeps.\n'],
  ['a rhyme', 'Row, row, row your boat,\nGently down the stream.\nMerrily, merrily, merrily, merrily,\nLife is but a dream.\n'],
  ['nothing', ''],
  ['40 000 words', bigText()],
];

const dec = new TextDecoder();
let failures = 0;

/** Prints a call's output, indented, and checks it against the host's run of the same executable. */
function show(title: string, stdout: Uint8Array, exitCode: number | null, host: Buffer): void {
  const same = host.equals(stdout) && exitCode === 0;
  if (!same) failures++;
  console.log(`${title}: exit ${String(exitCode)}, ${same ? 'same as on the host' : 'DIFFERS from the host'}`);
  for (const line of dec.decode(stdout).trimEnd().split('\n')) console.log(`  | ${line}`);
}

async function main(): Promise<void> {
  const program = buildMuslProgram('wordfreq');
  const argv = ['wordfreq', '-n', '3'];
  const env = { GREETING: 'hello from a musl program in a micro-VM' };

  // Warm start (the default): the VM starts the program once and keeps the state at its first
  // read of stdin; every call resumes from there with its own input.
  const warm = new LinuxPool({ program, argv, env, threads: 2, memory: '16 MiB', timeoutMs: 5000 });
  // start: 'entry': every call starts at the entry point, so it may bring its own argv and env.
  const entry = new LinuxPool({ program, argv, threads: 1, memory: '16 MiB', start: 'entry', timeoutMs: 5000 });
  closePoolsOnSignal([warm, entry]);

  const t0 = performance.now();
  const results = await Promise.all(INPUTS.map(([, text]) => warm.run(text)));
  const wall = performance.now() - t0;
  for (const [i, [name, text]] of INPUTS.entries()) {
    const r = results[i]!;
    const host = execFileSync(program, argv.slice(1), { input: text, env });
    show(`${name} (${text.length} bytes; ${r.stats.syscalls} syscalls, ${r.stats.resetPages} pages reset, started from the ${r.stats.start} state)`, r.stdout, r.exitCode, host);
  }
  console.log(`${INPUTS.length} calls in ${wall.toFixed(1)} ms on ${warm.threads} threads, the workers' start-up (a VM each, run to the first read) included\n`);

  for (const n of [1, 5]) {
    const callArgv = ['wordfreq', '-n', String(n)];
    const callEnv = { GREETING: `argv and env for this call: -n ${n}` };
    const r = await entry.run(INPUTS[1]![1], { argv: callArgv, env: callEnv });
    const host = execFileSync(program, callArgv.slice(1), { input: INPUTS[1]![1], env: callEnv });
    show(`start: 'entry', argv ${JSON.stringify(callArgv)}`, r.stdout, r.exitCode, host);
  }

  await Promise.all([warm.close(), entry.close()]);
  if (failures > 0) {
    console.error(`${failures} call(s) differ from the host's run of ${program}`);
    process.exitCode = 1;
  }
}

await main();
