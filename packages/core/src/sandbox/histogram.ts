/** A latency histogram with power-of-two microsecond buckets, plus exact quantiles of a window. */
/** A latency histogram; every time is in microseconds (µs). Quantiles cover the latest 10,000 samples. */
export interface LatencySummary {
  /** Samples since the start. */
  count: number;
  /** Median, µs. */
  p50: number;
  /** 90th percentile, µs. */
  p90: number;
  /** 99th percentile, µs. */
  p99: number;
  /** Largest sample since the start, µs. */
  max: number;
  /** Bucket upper bound (µs, a power of two) → count. */
  buckets: Record<string, number>;
}

const WINDOW = 10_000;

export class LatencyHistogram {
  #count = 0;
  #max = 0;
  readonly #buckets = new Map<number, number>();
  /** The most recent WINDOW samples, for quantiles. */
  readonly #recent = new Float64Array(WINDOW);

  add(micros: number): void {
    this.#recent[this.#count % WINDOW] = micros;
    this.#count++;
    if (micros > this.#max) this.#max = micros;
    const bound = 2 ** Math.max(0, Math.ceil(Math.log2(Math.max(micros, 1))));
    this.#buckets.set(bound, (this.#buckets.get(bound) ?? 0) + 1);
  }

  summary(): LatencySummary {
    const n = Math.min(this.#count, WINDOW);
    const sorted = this.#recent.slice(0, n).sort();
    const q = (p: number): number => (n === 0 ? 0 : sorted[Math.min(n - 1, Math.floor(p * n))]!);
    const buckets: Record<string, number> = {};
    for (const [b, c] of [...this.#buckets].sort((x, y) => x[0] - y[0])) buckets[String(b)] = c;
    return { count: this.#count, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: this.#max, buckets };
  }
}
