/**
 * Drives a C baseline that runs batches on request: it prints one line starting with "ready"
 * at start-up, then answers each request line on stdin with one line on stdout. A batch
 * request is "N"; the answer is N per-iteration durations in ns, separated by spaces. While
 * the Node side runs its own batch, the C process waits on stdin, and vice versa.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { basename } from 'node:path';
import type { BenchCase } from './harness.js';

export class CProcess implements AsyncDisposable {
  readonly name: string;
  #child: ChildProcessWithoutNullStreams;
  #buffer = '';
  #lines: string[] = [];
  #waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  #stderr = '';
  #failure: Error | null = null;
  /** The words after "ready" on the start-up line. */
  readyWords: string[] = [];

  private constructor(binary: string, args: readonly string[]) {
    this.name = basename(binary);
    this.#child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stdout.setEncoding('utf8');
    this.#child.stdout.on('data', (chunk: string) => this.#onData(chunk));
    this.#child.stderr.setEncoding('utf8');
    this.#child.stderr.on('data', (chunk: string) => {
      this.#stderr += chunk;
    });
    this.#child.on('error', (e) => this.#fail(new Error(`${this.name}: ${e.message}`)));
    this.#child.on('close', (code, signal) => {
      const why = signal ? `signal ${signal}` : `status ${String(code)}`;
      this.#fail(new Error(`${this.name} exited (${why})${this.#stderr ? `: ${this.#stderr.trim()}` : ''}`));
    });
    // A write to a child that has died is reported through 'close'.
    this.#child.stdin.on('error', () => {});
  }

  /** Starts `binary` and waits for its "ready" line. */
  static async start(binary: string, args: readonly string[] = []): Promise<CProcess> {
    const p = new CProcess(binary, args);
    const ready = await p.#nextLine();
    const words = ready.trim().split(/\s+/);
    if (words[0] !== 'ready') {
      await p.close();
      throw new Error(`${p.name}: expected "ready", got ${JSON.stringify(ready)}`);
    }
    p.readyWords = words.slice(1);
    return p;
  }

  /** Sends one request line and returns the answer line. */
  async request(line: string): Promise<string> {
    if (this.#failure) throw this.#failure;
    const answer = this.#nextLine();
    this.#child.stdin.write(`${line}\n`);
    return answer;
  }

  /** Sends a request and parses the answer as whitespace-separated numbers. */
  async requestNumbers(line: string): Promise<number[]> {
    const answer = await this.request(line);
    const nums = answer.trim().split(/\s+/).map(Number);
    if (nums.some((n) => !Number.isFinite(n))) throw new Error(`${this.name}: non-numeric answer to ${JSON.stringify(line)}: ${answer.slice(0, 200)}`);
    return nums;
  }

  /** Closes stdin and waits for the process to exit. */
  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('close', () => resolve()));
    this.#child.stdin.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #nextLine(): Promise<string> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let nl: number;
    while ((nl = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, nl);
      this.#buffer = this.#buffer.slice(nl + 1);
      const waiter = this.#waiting.shift();
      if (waiter) waiter.resolve(line);
      else this.#lines.push(line);
    }
  }

  #fail(e: Error): void {
    this.#failure ??= e;
    for (const w of this.#waiting.splice(0)) w.reject(this.#failure);
  }
}

/** A case whose batches run in a CProcess: a request "N" answered with N durations in ns. */
export function cBatchCase(id: string, label: string, proc: CProcess): BenchCase {
  return {
    id,
    label,
    async runBatch(n) {
      const nums = await proc.requestNumbers(String(n));
      if (nums.length !== n) throw new Error(`${proc.name}: asked for ${n} iterations, got ${nums.length} durations`);
      return nums;
    },
  };
}
