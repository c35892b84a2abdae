/**
 * examples/dist/queue.js as a user runs it: with `--start-redis` it starts its own redis-server
 * and two `kvmpool worker` processes, checks every digest, prints a summary and stops everything
 * — after the last job, and on SIGINT (Ctrl-C) in the middle — leaving no process, port or
 * directory behind. Not a TTY here, so its progress comes as plain lines.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const EXAMPLE = fileURLToPath(new URL('../../examples/dist/queue.js', import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the example (SIGKILL after `ms`); `interrupt` is called with the child once its stdout matches `when`. */
function runExample(args: string[], ms: number, interrupt?: { when: RegExp; signal: NodeJS.Signals }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [EXAMPLE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => p.kill('SIGKILL'), ms);
    const check = (): void => {
      if (interrupt && !sent && interrupt.when.test(stdout + stderr)) {
        sent = true;
        p.kill(interrupt.signal);
      }
    };
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); check(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); check(); });
    p.once('error', (e) => { clearTimeout(timer); reject(e); });
    p.once('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

/** Whether anything accepts a connection on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    c.setTimeout(1000, () => { c.destroy(); resolve(false); });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** What the example started, from its own lines, and that none of it is left. */
async function expectAllStopped(out: string): Promise<void> {
  const r = /private redis-server at redis:\/\/127\.0\.0\.1:(\d+), directory (\S+)/.exec(out);
  expect(r, out).not.toBeNull();
  const pids = [...out.matchAll(/worker w\d: pid (\d+)/g)].map((m) => Number(m[1]));
  expect(pids).toHaveLength(2);
  for (const pid of pids) expect(alive(pid), `worker pid ${pid}`).toBe(false);
  expect(existsSync(r![2]!), r![2]).toBe(false);
  expect(await listening(Number(r![1]))).toBe(false);
}

describe('examples/dist/queue.js --start-redis', () => {
  it('runs 600 jobs on 2 worker processes, every digest right, then stops everything', async () => {
    const r = await runExample(['--start-redis', '--jobs', '600'], 50_000);
    expect(r.stderr).not.toMatch(/Warning|queue example:/);
    expect({ code: r.code, signal: r.signal }, r.stderr).toEqual({ code: 0, signal: null });
    expect(r.stdout).toContain('producer: 600 sha256 jobs on queue kvmpool-example-');
    expect(r.stdout).toContain('all 600 digests match node:crypto');
    const per = /per worker: w1 (\d+), w2 (\d+)/.exec(r.stdout);
    expect(per, r.stdout).not.toBeNull();
    expect(Number(per![1]) + Number(per![2])).toBe(600);
    expect(Number(per![1])).toBeGreaterThan(0);
    expect(Number(per![2])).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/wall \d+\.\d\d s: \d+ jobs\/s through the queue/);
    expect(r.stdout).toContain('stopped: producer closed, workers drained, Redis stopped and its directory removed');
    // Not a TTY: plain progress lines, no bar and no carriage returns; the last one is 600/600.
    expect(r.stderr).not.toContain('\r');
    expect(r.stderr).toMatch(/^sha256 jobs: 600\/600 100% \d+\/s/m);
    await expectAllStopped(r.stdout);
  }, 60_000);

  it('on SIGINT mid-run stops the producer, the workers and Redis and exits 130', async () => {
    const r = await runExample(['--start-redis', '--jobs', '1000000'], 50_000, { when: /sha256 jobs: +\d+\/1000000/, signal: 'SIGINT' });
    expect({ code: r.code, signal: r.signal }, r.stderr).toEqual({ code: 130, signal: null });
    expect(r.stderr).toContain('SIGINT: stopping the producer, the workers and Redis');
    expect(r.stdout).not.toContain('digests match');
    await expectAllStopped(r.stdout);
  }, 60_000);

  it('refuses a bad command line (exit 1, a message, nothing started)', async () => {
    const r = await runExample(['--jobs', '10'], 20_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('give one of --start-redis or --redis URL');
    expect(r.stdout).toBe('');
  }, 30_000);
});
