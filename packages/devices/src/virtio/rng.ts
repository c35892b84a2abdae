/**
 * virtio-rng (virtio 1.2 §5.4): one queue; each writable buffer the driver posts is filled from
 * the host's CSPRNG (`crypto.getRandomValues`), at most `VIRTIO_RNG_MAX_REQUEST` bytes per
 * request (the used length says how many), so a huge buffer costs the host a bounded amount.
 */
import { getRandomValues } from 'node:crypto';
import { VIRTIO_DEVICE_ID, type VirtioActivation, type VirtioDevice } from './types.js';

/** Most random bytes one request gets (getRandomValues' own per-call limit). */
export const VIRTIO_RNG_MAX_REQUEST = 65536;

/** Options of `new VirtioRng()`. */
export interface VirtioRngOptions {
  /** Device name; default "rng". */
  name?: string;
  /** Per-request byte bound, 1..65536; default 65536. */
  maxRequest?: number;
}

/** A virtio entropy device. */
export class VirtioRng implements VirtioDevice {
  readonly deviceId = VIRTIO_DEVICE_ID.ENTROPY;
  readonly name: string;
  readonly features = 0n;
  readonly queueCount = 1;
  readonly queueMaxSize = 64;
  readonly #max: number;
  #ctx: VirtioActivation | undefined;
  #bytes = 0;

  /** Creates the device. */
  constructor(options: VirtioRngOptions = {}) {
    this.name = options.name ?? 'rng';
    const m = options.maxRequest ?? VIRTIO_RNG_MAX_REQUEST;
    if (!Number.isInteger(m) || m < 1 || m > VIRTIO_RNG_MAX_REQUEST) throw new RangeError(`${this.name}: maxRequest ${m} is not in [1, ${VIRTIO_RNG_MAX_REQUEST}]`);
    this.#max = m;
  }

  /** Random bytes handed to the guest so far. */
  get bytesServed(): number {
    return this.#bytes;
  }

  readConfig(_offset: number, data: Uint8Array): void {
    data.fill(0); // no configuration space
  }

  writeConfig(): void {}

  activate(ctx: VirtioActivation): void {
    this.#ctx = ctx;
  }

  reset(): void {
    this.#ctx = undefined;
  }

  process(index: number): void {
    const q = this.#ctx?.queues[index];
    if (!q) return;
    for (let c = q.pop(); c; c = q.pop()) {
      let left = this.#max;
      let n = 0;
      for (const w of c.writable) {
        if (left === 0) break;
        const part = w.subarray(0, Math.min(w.length, left));
        // Fill a private buffer, then copy: getRandomValues refuses views of a SharedArrayBuffer.
        const r = new Uint8Array(part.length);
        getRandomValues(r);
        part.set(r);
        n += part.length;
        left -= part.length;
      }
      this.#bytes += n;
      q.push(c.head, n);
    }
  }
}
