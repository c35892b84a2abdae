/**
 * A progress bar on stderr, redrawn at most ~15 times a second, when stderr is a terminal;
 * otherwise only one plain line at the end (so logs and pipes stay clean), or, with `plainEveryMs`,
 * also a plain line at most that often while it runs.
 */
const REDRAW_MS = 66;

export class ProgressBar {
  readonly #label: string;
  readonly #total: number;
  readonly #stream: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #t0 = performance.now();
  #done = 0;
  readonly #plainEveryMs: number;
  #drawnAt = -Infinity;
  #plainAt: number;

  constructor(label: string, total: number, stream: NodeJS.WriteStream = process.stderr, options: { plainEveryMs?: number } = {}) {
    this.#plainEveryMs = options.plainEveryMs ?? Infinity;
    this.#plainAt = this.#t0;
    this.#label = label;
    this.#total = total;
    this.#stream = stream;
    this.#tty = stream.isTTY === true;
  }

  tick(n = 1): void {
    this.#done += n;
    const now = performance.now();
    if (this.#tty && (now - this.#drawnAt >= REDRAW_MS || this.#done === this.#total)) {
      this.#drawnAt = now;
      this.#stream.write(`\r${this.#line(now)}\x1b[K`);
    } else if (!this.#tty && now - this.#plainAt >= this.#plainEveryMs && this.#done < this.#total) {
      this.#plainAt = now;
      this.#stream.write(`${this.#line(now)}\n`);
    }
  }

  /** Ends the bar's line (TTY) or writes the one plain line (not a TTY). */
  finish(): void {
    const line = this.#line(performance.now());
    this.#stream.write(this.#tty ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  #line(now: number): string {
    const secs = (now - this.#t0) / 1000;
    const rate = secs > 0 ? Math.round(this.#done / secs) : 0;
    const counts = `${String(this.#done).padStart(String(this.#total).length)}/${this.#total}`;
    const pct = `${String(Math.floor((100 * this.#done) / Math.max(this.#total, 1))).padStart(3)}%`;
    const tail = `${counts} ${pct} ${rate}/s ${secs.toFixed(1)} s`;
    if (!this.#tty) return `${this.#label}: ${tail}`;
    const width = Math.max(10, Math.min(40, (this.#stream.columns || 80) - this.#label.length - tail.length - 5));
    const filled = Math.round((width * this.#done) / Math.max(this.#total, 1));
    return `${this.#label} [${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${tail}`;
  }
}
