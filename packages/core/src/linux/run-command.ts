/**
 * `kvmpool run -- PROGRAM [ARG…]`: one call of a static Linux program in a micro-VM. PROGRAM is
 * looked up on PATH as a shell would; stdin is read to its end first (an interactive terminal
 * gives the program empty stdin); the program's stdout and stderr are written out; the exit code
 * is the program's, 128 + the signal's number when a signal ended it, 124 on a time-out.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { SIGNALS } from './errno.js';
import { LinuxPool } from './linux-pool.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** PROGRAM as given if it has a slash, else the first executable of that name on PATH. */
export function findProgram(name: string): string {
  if (name.includes('/')) return name;
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(delimiter)) {
    const path = join(dir || '.', name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(`${name}: not found on PATH`);
}

function pairs(what: string, v: Values[string]): [string, string][] {
  const list = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return list.map((x) => {
    const s = String(x);
    const eq = s.indexOf('=');
    if (eq <= 0) throw new Error(`--${what} ${s}: expected NAME=VALUE`);
    return [s.slice(0, eq), s.slice(eq + 1)];
  });
}

async function readStdin(): Promise<Uint8Array> {
  if (process.stdin.isTTY) return new Uint8Array(0);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export async function runProgram(values: Values, positionals: string[]): Promise<number> {
  const [name, ...args] = positionals;
  if (name === undefined) throw new Error('no program given (kvmpool run -- PROGRAM [ARG…])');
  const timeout = values['timeout'] === undefined ? 0 : Number(values['timeout']);
  if (!Number.isInteger(timeout) || timeout < 0) throw new Error(`--timeout ${String(values['timeout'])}: expected a whole number of milliseconds`);
  const files: Record<string, Uint8Array> = {};
  for (const [guest, host] of pairs('file', values['file'])) files[guest] = readFileSync(host);
  const pool = new LinuxPool({
    program: findProgram(name),
    argv: [name, ...args],
    env: Object.fromEntries(pairs('env', values['env'])),
    files,
    start: 'entry',
    threads: 1,
    timeoutMs: timeout,
    strict: values['strict'] === true,
    maxOutput: '256 MiB',
    maxInput: '256 MiB',
    ...(typeof values['memory'] === 'string' ? { memory: values['memory'] } : {}),
  });
  try {
    const r = await pool.run(await readStdin());
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    if (r.signal) {
      process.stderr.write(`kvmpool run: ${name} was killed by ${r.signal}\n`);
      return 128 + (SIGNALS[r.signal as keyof typeof SIGNALS] ?? 0);
    }
    return r.exitCode ?? 1;
  } catch (e) {
    if (e instanceof Error && e.name === 'SandboxTimeoutError') {
      process.stderr.write(`kvmpool run: ${e.message}\n`);
      return 124;
    }
    throw e;
  } finally {
    await pool.close();
  }
}
