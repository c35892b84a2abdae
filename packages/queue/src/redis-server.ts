/**
 * A private redis-server for tests, the benchmark and the example: on a free loopback port, with a
 * temporary directory, never the machine's own Redis service (`redis-server` must be on PATH). `stop()` and `start()` restart it on the same port and directory
 * (with `appendonly: true` its data survive the restart); `close()` stops it and removes the directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A running private redis-server (`startRedisServer()`). */
export interface RedisServer {
  /** Its loopback port. */
  port: number;
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  /** Its temporary directory (removed by `close()`). */
  dir: string;
  /** The running server's process id (undefined while stopped). */
  readonly pid: number | undefined;
  /** Stops the server (SIGTERM: it writes its append-only file and exits); resolves when it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port and directory; resolves when it answers PING. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether a server on `port` answers PING with PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    let data = '';
    const done = (ok: boolean): void => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(500, () => done(false));
    c.on('error', () => done(false));
    c.on('connect', () => c.write('PING\r\n'));
    c.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
  });
}

/**
 * Starts redis-server on a free loopback port with a new temporary directory; resolves once it
 * answers PING. `appendonly` keeps its data across `stop()`/`start()`; `detached` puts it in a process
 * group of its own, so a terminal's Ctrl-C reaches only the caller, which then stops it in order.
 */
export async function startRedisServer(options: { appendonly?: boolean; detached?: boolean } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmpool-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let log = '';
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', options.appendonly ? 'yes' : 'no',
    '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning', '--databases', '1'];
  const start = async (): Promise<void> => {
    const p = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached === true });
    proc = p;
    p.stdout?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
    p.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
    const spawned = new Promise<void>((resolve, reject) => {
      p.once('error', (e) => reject(new Error(`redis-server did not start (is redis-server installed and on PATH?): ${e.message}`)));
      p.once('spawn', () => resolve());
    });
    await spawned;
    const end = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (p.exitCode !== null || Date.now() > end) throw new Error(`redis-server on port ${port} did not answer PING: ${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await start();
  } catch (e) {
    await stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port, dir, url: `redis://127.0.0.1:${port}`, stop, start,
    get pid() { return proc?.pid; },
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
