/**
 * The main-thread half of the virtio queue-notify fast path. A guest's QueueNotify write that
 * matches a KVM_IOEVENTFD binding does not exit: KVM bumps that queue's eventfd. A watcher
 * thread (virtio-notify-thread.ts) blocks in poll(2) on those eventfds and raises a flag per
 * queue in a SharedArrayBuffer; this side waits for it with Atomics.waitAsync (the event loop
 * stays free) and calls `onNotify(i)` for each flagged queue on the main thread, where the
 * virtio transports live (one owner of their state; see docs/virtio.md).
 *
 * Why Atomics and not postMessage: the wake-up is one seq-cst word the thread bumps, and a burst
 * of notifies folds into one flag per queue instead of one message each; measured by
 * `npm run bench -- virtio` (notify-ioeventfd) and in docs/virtio.md.
 */
import { Worker } from 'node:worker_threads';
import { EventFd } from '../eventfd.js';
import { NOTIFY_WORD, type NotifyThreadInit } from './virtio-notify-words.js';

/** How long `close()` waits for the thread to leave poll(2) and end before it terminates it. */
export const NOTIFY_STOP_MS = 2000;
/** How long `start()` waits for the thread to come online. */
export const NOTIFY_START_MS = 10_000;

/** Counters of a watcher, for tests and benchmarks. */
export interface NotifyWatcherStats {
  /** Times the main thread was woken by the thread. */
  wakeups: number;
  /** Queue notifies handed to `onNotify`. */
  notifies: number;
}

/** Callbacks of a watcher. */
export interface NotifyWatcherHooks {
  /** Queue `i` (index into the eventfd list) was notified by the guest. */
  onNotify(i: number): void;
  /** Runs once before a batch of `onNotify` calls (the machine drains posted MMIO writes there). */
  beforeNotify?(): void;
  /** The thread failed, or a hook threw. */
  onError(e: Error): void;
}

/** Where the watcher delivers: its own main-thread loop (default), or a dispatcher that calls `take()`. */
export interface NotifyWatcherOptions {
  /**
   * A dispatcher's doorbell: the thread rings it after raising flags, and no loop of the watcher's own runs;
   * the dispatcher calls `pending()`/`take()` (it is the dispatcher's `sideWork`).
   */
  doorbell?: SharedArrayBuffer;
  /** The doorbell's counter word (`DOORBELL.COUNT`). */
  doorbellIndex?: number;
}

/**
 * One watcher thread and its main-thread side; `close()` ends the thread (and the watcher's own loop) and
 * closes the stop eventfd. As a dispatcher's side work: `name`, `pending()`, `run()`.
 */
export class NotifyWatcher {
  readonly name = 'virtio-notify';
  readonly stats: NotifyWatcherStats = { wakeups: 0, notifies: 0 };
  readonly #worker: Worker;
  readonly #words: Int32Array;
  readonly #stop: EventFd;
  readonly #count: number;
  readonly #hooks: NotifyWatcherHooks;
  readonly #exited: Promise<void>;
  #loop: Promise<void> = Promise.resolve();
  readonly #ownLoop: boolean;
  #closing = false;
  #closed: Promise<void> | undefined;

  private constructor(queueFds: readonly number[], hooks: NotifyWatcherHooks, options: NotifyWatcherOptions) {
    this.#count = queueFds.length;
    this.#hooks = hooks;
    const state = new SharedArrayBuffer((NOTIFY_WORD.FLAGS + queueFds.length) * 4);
    this.#words = new Int32Array(state);
    this.#stop = EventFd.create();
    const init: NotifyThreadInit = {
      queueFds: [...queueFds], stopFd: this.#stop.fd, state,
      ...(options.doorbell ? { doorbell: options.doorbell, doorbellIndex: options.doorbellIndex ?? 0 } : {}),
    };
    this.#ownLoop = !options.doorbell;
    try {
      this.#worker = new Worker(new URL('./virtio-notify-thread.js', import.meta.url), { workerData: init, name: 'kvmpool-virtio-notify' });
    } catch (e) {
      this.#stop.close();
      throw e;
    }
    this.#worker.unref();
    this.#worker.on('error', (e) => this.#hooks.onError(e instanceof Error ? e : new Error(String(e))));
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
  }

  /**
   * Starts a watcher over `queueFds` (eventfds the caller owns and closes only after `close()`
   * resolved: the thread polls them until then). Resolves once the thread is online.
   */
  static async start(queueFds: readonly number[], hooks: NotifyWatcherHooks, options: NotifyWatcherOptions = {}): Promise<NotifyWatcher> {
    const w = new NotifyWatcher(queueFds, hooks, options);
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`virtio notify thread did not start within ${NOTIFY_START_MS} ms`)), NOTIFY_START_MS);
        w.#worker.once('online', () => resolve());
        w.#worker.once('error', reject);
        w.#worker.once('exit', (code) => reject(new Error(`virtio notify thread exited with code ${code} at start`)));
      });
    } catch (e) {
      await w.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    // Without a dispatcher it watches SEQ itself; with one it only notices the thread's end there.
    w.#loop = w.#ownLoop ? w.#run() : Promise.resolve();
    return w;
  }

  /** True once the thread has left its poll loop (after `close()`, or a failure). */
  get ended(): boolean {
    return Atomics.load(this.#words, NOTIFY_WORD.ENDED) === 1;
  }

  async #run(): Promise<void> {
    const w = this.#words;
    while (!this.#closing) {
      const seen = Atomics.load(w, NOTIFY_WORD.SEQ);
      this.#take();
      if (Atomics.load(w, NOTIFY_WORD.ENDED) === 1) {
        if (!this.#closing) this.#hooks.onError(new Error(`virtio notify thread ended unexpectedly (${Atomics.load(w, NOTIFY_WORD.ERROR)})`));
        return;
      }
      const r = Atomics.waitAsync(w, NOTIFY_WORD.SEQ, seen);
      if (r.async) await r.value;
      this.stats.wakeups++;
    }
  }

  /** Whether a flag is raised, or the thread ended unexpectedly (the dispatcher's spin calls this). */
  pending(): boolean {
    const w = this.#words;
    if (!this.#closing && Atomics.load(w, NOTIFY_WORD.ENDED) === 1 && !this.#reported) return true;
    for (let i = 0; i < this.#count; i++) if (Atomics.load(w, NOTIFY_WORD.FLAGS + i) !== 0) return true;
    return false;
  }

  /** As a dispatcher's side work: takes the raised flags; returns how many. */
  run(): number {
    if (!this.#closing && Atomics.load(this.#words, NOTIFY_WORD.ENDED) === 1 && !this.#reported) {
      this.#reported = true;
      this.#hooks.onError(new Error(`virtio notify thread ended unexpectedly (${Atomics.load(this.#words, NOTIFY_WORD.ERROR)})`));
    }
    return this.#take();
  }
  #reported = false;

  /** Takes every raised flag (seq-cst exchange, see the thread's ordering comment) and calls the hooks. */
  #take(): number {
    let first = true;
    let n = 0;
    for (let i = 0; i < this.#count; i++) {
      if (Atomics.exchange(this.#words, NOTIFY_WORD.FLAGS + i, 0) === 0) continue;
      try {
        if (first) this.#hooks.beforeNotify?.();
        first = false;
        this.stats.notifies++;
        n++;
        this.#hooks.onNotify(i);
      } catch (e) {
        this.#hooks.onError(e instanceof Error ? e : new Error(String(e)));
      }
    }
    return n;
  }

  /**
   * Ends the thread (the stop eventfd wakes its poll), waits for it (at most NOTIFY_STOP_MS, then
   * terminates it), ends the main-thread loop and closes the stop eventfd. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true;
      try {
        this.#stop.write();
      } catch {
        // The thread may be gone already; terminate() below covers the rest.
      }
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        this.#exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), NOTIFY_STOP_MS);
        }),
      ]);
      clearTimeout(timer);
      if (late) {
        // Not expected (the stop write wakes poll); terminate() cannot end native code, so bound it too.
        await Promise.race([this.#worker.terminate(), new Promise((resolve) => setTimeout(resolve, NOTIFY_STOP_MS).unref())]);
      }
      Atomics.add(this.#words, NOTIFY_WORD.SEQ, 1);
      Atomics.notify(this.#words, NOTIFY_WORD.SEQ);
      await this.#loop;
      this.#stop.close();
    })();
    return this.#closed;
  }
}
