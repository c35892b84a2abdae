/**
 * vCPU threads, kept for reuse. Starting a worker thread (and loading koffi in it) costs tens
 * of milliseconds, and koffi does not release a thread's call stack and heap blocks when the
 * thread ends; so a VM's vCPU threads go back to this pool when it closes, and an idle thread
 * ends after `idleTimeoutMs`. Idle threads do not keep the process alive.
 */
import { Worker } from 'node:worker_threads';
import { VcpuThreadError } from '../errors.js';
import type { VcpuReply, VcpuRequest } from './vcpu-lifecycle.js';

/**
 * Where the vCPU thread entry lives: the @kvmpool/worker package, an optional peer dependency
 * of core (the worker imports core, so core cannot depend on it at build time).
 */
function threadEntry(): URL {
  try {
    return new URL(import.meta.resolve('@kvmpool/worker/vcpu-thread'));
  } catch (e) {
    throw new Error('createMachine needs the vCPU thread package: npm install @kvmpool/worker (next to @kvmpool/core)', { cause: e });
  }
}

let nextThreadId = 0;

/** Who holds a thread: hears its replies, its death, and its end. */
export interface ThreadOwner {
  onMessage(m: VcpuReply): void;
  /** The thread failed (an uncaught exception, or it exited); it may still be running native code. */
  onDeath(e: VcpuThreadError): void;
  /** The thread is gone: nothing runs in it any more. */
  onExit(): void;
}

export class VcpuThread {
  readonly worker: Worker;
  readonly serial = nextThreadId++;
  #death: VcpuThreadError | undefined;
  #exited = false;
  #owner: ThreadOwner | undefined;
  #vcpu = -1;

  constructor() {
    this.worker = new Worker(threadEntry(), { name: `kvmpool-vcpu-thread-${this.serial}` });
    const died = (message: string, cause?: unknown): void => {
      if (this.#death) return;
      this.#death = new VcpuThreadError(this.#vcpu, message, cause);
      this.#owner?.onDeath(this.#death);
    };
    this.worker.on('error', (e) => died(e instanceof Error ? e.message : String(e), e));
    this.worker.on('exit', (code) => {
      died(`exited with code ${code}`);
      this.#exited = true;
      this.#owner?.onExit();
    });
    this.worker.on('message', (m: VcpuReply) => this.#owner?.onMessage(m));
  }

  get dead(): boolean {
    return this.#death !== undefined;
  }

  post(request: VcpuRequest): void {
    this.worker.postMessage(request);
  }

  /** Gives the thread to vCPU `vcpu`. */
  own(vcpu: number, owner: ThreadOwner): void {
    this.#vcpu = vcpu;
    this.#owner = owner;
    this.worker.ref();
    if (this.#death) owner.onDeath(this.#death);
    if (this.#exited) owner.onExit();
  }

  disown(): void {
    this.#owner = undefined;
    this.worker.unref();
  }
}

/** Options of `configureVcpuThreads()`: how ended machines' vCPU threads are kept for the next machine. */
export interface VcpuThreadPoolOptions {
  /** How long an idle thread is kept for the next VM. Default 2000 ms; 0 ends threads at once. */
  idleTimeoutMs: number;
  /** At most this many idle threads are kept. Default 16. */
  maxIdle: number;
}

class VcpuThreadPool {
  readonly options: VcpuThreadPoolOptions = { idleTimeoutMs: 2000, maxIdle: 16 };
  #idle: { thread: VcpuThread; timer: NodeJS.Timeout }[] = [];
  /** Threads started, for stats. */
  started = 0;

  acquire(): VcpuThread {
    for (;;) {
      const entry = this.#idle.pop();
      if (!entry) break;
      clearTimeout(entry.timer);
      if (!entry.thread.dead) return entry.thread;
    }
    this.started++;
    return new VcpuThread();
  }

  /** Back to the pool, or ended when the pool is full, idle threads are not kept, or it is dead. */
  release(thread: VcpuThread): void {
    thread.disown();
    if (thread.dead) return;
    if (this.options.idleTimeoutMs <= 0 || this.#idle.length >= this.options.maxIdle) {
      void thread.worker.terminate();
      return;
    }
    const timer = setTimeout(() => {
      this.#idle = this.#idle.filter((e) => e.thread !== thread);
      void thread.worker.terminate();
    }, this.options.idleTimeoutMs);
    timer.unref();
    this.#idle.push({ thread, timer });
  }

  get idle(): number {
    return this.#idle.length;
  }

  /** Ends every idle thread now. */
  async drain(): Promise<void> {
    const idle = this.#idle;
    this.#idle = [];
    for (const e of idle) clearTimeout(e.timer);
    await Promise.all(idle.map((e) => e.thread.worker.terminate()));
  }
}

/** The process-wide pool of vCPU threads. */
export const vcpuThreads = new VcpuThreadPool();

/** Tunes the vCPU thread pool (e.g. `{ idleTimeoutMs: 0 }` to end threads with their VM). */
export function configureVcpuThreads(options: Partial<VcpuThreadPoolOptions>): void {
  Object.assign(vcpuThreads.options, options);
}

/** Ends the idle vCPU threads now (they are started again on demand). */
export function drainVcpuThreads(): Promise<void> {
  return vcpuThreads.drain();
}
