/**
 * The examples of the docs pages: each page shows, under its `<!-- example: PATH -->` marker,
 * exactly the code of that file (scripts/embed-examples.mjs puts it there), and each example,
 * built by `npm run build` into examples/dist/docs/, runs on /dev/kvm and prints what its page says.
 * Also the claim of docs/machines.md that a machine nobody closes keeps the process alive.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SandboxPool } from '@kvmpool/core';
import { describe, expect, it } from 'vitest';
import { buildSandboxGuest } from '../support/build-c.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MARKER = /<!-- example: (\S+) -->\n```ts\n([\s\S]*?)\n```\n/g;

/** What each example must print (whole lines; the ones that vary by run are patterns). */
const EXPECTED: Record<string, RegExp[]> = {
  'low-level': [/^hi$/, /^al = 0x2a, rip = 0x10015$/, /^pages written since the slot was made: \d+$/],
  machine: [/^printed 0 1; states while paused: paused, paused$/, /^exit: halted$/],
  sandbox: [/^\[shout\] shout: done$/, /^\[shout\] shout: done$/, /^hello, KVM!!! \/ hello, POOL!!!$/, /^calls 2, resets 2, latency p50 \d+ µs over 2 calls$/],
  snapshot: [
    /^snapshot: rax > 0, \d+ non-zero pages, \d+ bytes$/, /^gdb stub listening: true$/, /^restored: counting on from the snapshot: true$/,
    /^exit: stopped$/, /^cpl0: singleStep (yes|no), hardwareBreakpoints (yes|no), softwareBreakpoints (yes|no), watchpoints (yes|no)$/,
    /^cpl3: singleStep (yes|no), hardwareBreakpoints (yes|no), softwareBreakpoints (yes|no), watchpoints (yes|no)$/,
  ],
  linux: [
    /^sha256sum: 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 {2}- \(exit 0, \d+ syscalls, warm start at first-read\)$/,
    /^grep -c rr: 1, exit 0$/, /^grep -c zz: 0, exit 1$/, /^killed: exitCode null, signal SIGSEGV$/,
  ],
  js: [
    /^\{"a":\[1,4,9\]\}$/, /^42$/, /^the next call sees: undefined, function$/, /^value 5, logs \["hello from the guest"\]$/, /^host: 42$/,
    /^JsError: TypeError: cannot read property 'x' of null$/,
  ],
  virtio: [
    /^virtio-blk0 at 0xd0000000, irq 5: virtio_mmio\.device=4K@0xd0000000:5$/,
    /^virtio-console1 at 0xd0001000, irq 6: virtio_mmio\.device=4K@0xd0001000:6$/,
    /^virtio-rng2 at 0xd0002000, irq 7: virtio_mmio\.device=4K@0xd0002000:7$/,
    /^guest: virtio-guest: ready$/, /^guest: blk: sector 0: Hello from the host's disk$/, /^guest: blk: write ok$/,
    /^guest: rng: [0-9a-f]{64}$/, /^guest: virtio-guest: done$/, /^exit: halted; sector 9 now reads: written by virtio-guest$/,
  ],
  host: [/^module \w+, API 12, up to \d+ vCPUs per VM$/, /^paged: (supported|unsupported \(cpu-mode:paged\))$/, /^user: supported$/],
};

function run(args: string[], timeout: number): Promise<{ code: number | null; stdout: string; stderr: string; killed: boolean }> {
  return new Promise((resolve) => {
    const p = execFile(process.execPath, args, { cwd: ROOT, timeout }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error.code as number | null) ?? null) : 0, stdout, stderr, killed: p.killed });
    });
  });
}

const pages = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'));
const examples = pages.flatMap((page) =>
  [...readFileSync(join(ROOT, 'docs', page), 'utf8').matchAll(MARKER)].map((m) => ({ page, file: m[1]!, code: m[2]! })),
);

describe('docs examples', () => {
  it('every page but the index has an example, and every example file is on a page', () => {
    const withExample = new Set(examples.map((e) => e.page));
    // queue.md's examples need a Redis server: the queue tests (test/kvm/queue-*.test.ts) run the
    // same calls against one they start; it has no embedded example yet.
    expect(pages.filter((p) => !withExample.has(p)).sort()).toEqual(['README.md', 'queue.md']);
    const files = readdirSync(join(ROOT, 'examples/src/docs')).map((f) => `examples/src/docs/${f}`);
    expect(examples.map((e) => e.file).sort()).toEqual(files.sort());
  });

  for (const { page, file, code } of examples) {
    const name = file.replace(/^examples\/src\/docs\/(.*)\.ts$/, '$1');
    it(`${page}: shows ${file} verbatim, and it runs and prints what the page says`, async () => {
      expect(code).toBe(readFileSync(join(ROOT, file), 'utf8').trimEnd());
      const result = await run([`examples/dist/docs/${name}.js`], 50_000);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const lines = result.stdout.trimEnd().split('\n');
      const expected = EXPECTED[name];
      expect(expected, `no expected output for ${name}`).toBeDefined();
      expect(lines.length).toBe(expected!.length);
      lines.forEach((line, i) => expect(line).toMatch(expected![i]!));
      // The page's sample output is one such run too.
      const sample = readFileSync(join(ROOT, 'docs', page), 'utf8').split(`<!-- example: ${file} -->`)[1]!.match(/prints[^\n]*:\n\n```\n([\s\S]*?)\n```/)?.[1];
      expect(sample, 'the page shows what the example prints').toBeDefined();
      sample!.split('\n').forEach((line, i) => expect(line).toMatch(expected![i]!));
    }, 60_000);
  }

  it('a machine that is never closed keeps the process alive', async () => {
    const script = `import { createMachine } from '@kvmpool/core';
const vm = await createMachine({ memory: '2 MiB' });
vm.load(0x10000n, new Uint8Array([0xba, 0x00, 0x05, 0x00, 0x00, 0xee]));
await vm.start({ entry: 0x10000n, stack: 0x100000n });
console.log((await vm.waitForExit()).reason);`;
    // A file in the repository, so that '@kvmpool/core' resolves (and not `-e`: the vCPU
    // threads would inherit `--input-type`, which Node refuses in a worker).
    const dir = join(ROOT, 'test/.build');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'unclosed-machine.mjs'), script);
    const result = await run([join(dir, 'unclosed-machine.mjs')], 4_000);
    expect(result.stdout).toBe('halted\n');
    expect(result.killed).toBe(true);
  }, 20_000);

  it('docs/sandboxes.md on the minimum memory: with the default 1 MiB regions 2 MiB is refused naming the sizes, 4 MiB fits', async () => {
    const guest = buildSandboxGuest('pool-guest.c');
    expect(() => new SandboxPool({ guest, memory: '2 MiB', threads: 1 })).toThrow(
      expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/memory of 2097152 bytes is too small: .* inputSize 1048576 and outputSize 1048576 it needs at least \d+ bytes \(3\.\d\d MiB\)/) }),
    );
    await using pool = new SandboxPool({ guest, memory: '4 MiB', threads: 1 });
    expect(pool.exports.length).toBeGreaterThan(0);
  });
});
