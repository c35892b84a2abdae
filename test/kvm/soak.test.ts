/**
 * A short soak: the built `npm run soak` script (bench/src/soak.ts) with small counts. It checks
 * every result and error class itself and measures fds, mappings, RSS and the live heap; here
 * we assert its verdict (exit code 0) and that its summary reports what it ran.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../../bench/dist/soak.js', import.meta.url));

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('soak (short)', () => {
  it('20,000 mixed sandbox calls and 300 + 300 VM cycles: every result right, every failure of its class, nothing leaks', async () => {
    const { code, out } = await run(['--calls', '20000', '--vms', '300', '--progress-ms', '5000']);
    const summary = out.slice(out.indexOf('\nsandbox calls:'));
    expect(summary, out).toMatch(/^\nsandbox calls: 20,000 in [\d.]+ s after [\d,]+ warm-up calls: [\d,]+ calls\/s$/m);
    for (const kind of ['fnv', 'work', 'host-sync', 'host-async', 'guest-error', 'host-error-sync', 'host-error-async', 'abort', 'crash', 'timeout']) {
      expect(summary).toMatch(new RegExp(`^${kind} +[\\d,]+ +[\\d,]+ +.+ +0 +0$`, 'm')); // no wrong result, no unexpected error
    }
    expect(summary).toMatch(/^crash .*GuestCrashError [\d,]+/m);
    expect(summary).toMatch(/^timeout .*SandboxTimeoutError [\d,]+/m);
    expect(summary).toMatch(/^vm cycles: 300 createMachine \+ 300 bare createVm in /m);
    for (const row of ['pool before', 'pool after', 'vms before', 'vms after']) expect(summary).toMatch(new RegExp(`^${row} +\\d+ +\\d+ +[\\d.]+`, 'm'));
    expect(summary, summary).toMatch(/^result: PASS$/m);
    expect(code, summary).toBe(0);
  }, 180_000);
});
