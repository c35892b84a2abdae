/** `kvmpool run`: the real CLI running busybox-static in a micro-VM, against the same binary on the host. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../packages/core/dist/cli.js', import.meta.url));
const BUSYBOX = '/bin/busybox';

function kvmpool(args: string[], input = ''): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'run', ...args], { input, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

describe('kvmpool run', () => {
  it('needs busybox-static', () => {
    expect(existsSync(BUSYBOX), `${BUSYBOX} is missing: apt-get install busybox-static`).toBe(true);
  });

  it('prints what the program prints and returns its exit code', () => {
    const hi = kvmpool(['--', 'busybox', 'echo', 'hi']);
    expect(hi.stderr).toBe('');
    expect(hi.stdout.toString()).toBe('hi\n');
    expect(hi.status).toBe(0);
    expect(kvmpool(['--', BUSYBOX, 'sh', '-c', 'echo out; echo err >&2; exit 7'])).toMatchObject({ status: 7, stderr: 'err\n' });
  });

  it('passes stdin through: sha256sum gives the host binary\'s bytes', () => {
    const input = 'the quick brown fox\n'.repeat(1000);
    const host = spawnSync(BUSYBOX, ['sha256sum'], { input });
    const vm = kvmpool(['--', 'busybox', 'sha256sum'], input);
    expect(vm.status).toBe(0);
    expect(vm.stdout.equals(host.stdout)).toBe(true);
  });

  it('provided files, environment, and a time-out (exit 124)', () => {
    expect(kvmpool(['--file', `/etc/motd=${fileURLToPath(import.meta.url)}`, '--', 'busybox', 'head', '-c', '3', '/etc/motd']).stdout.toString()).toBe('/**');
    expect(kvmpool(['--env', 'GREETING=salut', '--', 'busybox', 'sh', '-c', 'echo $GREETING']).stdout.toString()).toBe('salut\n');
    const spin = kvmpool(['--timeout', '300', '--', 'busybox', 'sh', '-c', 'while :; do :; done']);
    expect(spin.status).toBe(124);
    expect(spin.stderr).toMatch(/time limit|timed out|300/);
  });

  it('errors name the problem: no such program, a dynamic executable, bad options', () => {
    const missing = kvmpool(['--', 'no-such-program-here']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/no-such-program-here: not found on PATH/);
    const dynamic = kvmpool(['--', process.execPath, '--version']);
    expect(dynamic.status).toBe(1);
    expect(dynamic.stderr).toMatch(/dynamically linked/);
    expect(kvmpool(['--timeout', 'soon', '--', 'busybox', 'true']).status).toBe(1);
  });
});
