/**
 * `kvmpool worker` processes for the `queue` benchmark: started (resolves once each printed its
 * `ready` line, bounded), and stopped with SIGTERM (drained), SIGKILL after a bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
/** core's CLI, `kvmpool` (packages/core/bin/kvmpool.js). */
export const KVMPOOL_CLI = join(dirname(require.resolve('@kvmpool/core/package.json')), 'bin', 'kvmpool.js');

export interface WorkerProcess {
  name: string;
  proc: ChildProcess;
  exited: Promise<void>;
  log(): string;
}

export async function startWorkerProcess(url: string, queue: string, name: string, args: readonly string[], readyMs = 30_000): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, [KVMPOOL_CLI, 'worker', '--redis', url, '--queue', queue, '--name', name, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-8000); });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const w: WorkerProcess = { name, proc, exited, log: () => err };
  const end = Date.now() + readyMs;
  while (!err.includes(' ready: ')) {
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > end) {
      await stopWorkerProcess(w, 0);
      throw new Error(`worker ${name} not ready${proc.exitCode !== null ? ` (exited ${proc.exitCode})` : ` within ${readyMs} ms`}: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return w;
}

/** SIGTERM (the worker finishes its jobs and exits), SIGKILL if it is still running after `graceMs`. */
export async function stopWorkerProcess(w: WorkerProcess, graceMs = 10_000): Promise<void> {
  if (w.proc.exitCode !== null || w.proc.signalCode !== null) return;
  w.proc.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
  const timer = setTimeout(() => w.proc.kill('SIGKILL'), graceMs);
  await w.exited;
  clearTimeout(timer);
}
