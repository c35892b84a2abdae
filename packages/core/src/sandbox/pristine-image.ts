/**
 * The pristine copy of a sandbox VM's guest memory, kept sparse: only the pages that are not
 * all zeros when it is captured. A reset copies a dirtied page back from it, or zero-fills the
 * page when the pristine one was all zeros. An idle VM then holds the pages its guest touched
 * plus their copy, not a second full-size buffer: a full copy (`new Uint8Array(size).set(mem)`)
 * commits every page of it, 8 MiB per idle VM at 8 MiB of guest memory, while the guest memory
 * itself (a growable SharedArrayBuffer) is committed only where it was touched.
 *
 * Capture reads every page once (an untouched page reads as the shared zero page and stays
 * uncommitted); the scan is 8 bytes at a time and stops at the first non-zero word of a page.
 */
import { PAGE_SIZE } from '../util/size.js';

const WORDS_PER_PAGE = PAGE_SIZE / 8;

export class PristineImage {
  /** Page number → its index in `#pages` (pages absent are all zeros). */
  readonly #index: Int32Array;
  readonly #pages: Uint8Array;
  /** Pages kept (the rest were all zeros). */
  readonly storedPages: number;

  /** Captures `mem` (a whole number of pages; its byteOffset 8-aligned). */
  constructor(mem: Uint8Array) {
    if (mem.length % PAGE_SIZE !== 0) throw new RangeError(`pristine image: ${mem.length} bytes is not a whole number of pages`);
    if (mem.byteOffset % 8 !== 0) throw new RangeError('pristine image: memory view is not 8-byte aligned');
    const count = mem.length / PAGE_SIZE;
    const words = new BigUint64Array(mem.buffer, mem.byteOffset, mem.length / 8);
    this.#index = new Int32Array(count).fill(-1);
    const kept: number[] = [];
    for (let p = 0; p < count; p++) {
      const end = (p + 1) * WORDS_PER_PAGE;
      for (let w = p * WORDS_PER_PAGE; w < end; w++) {
        if (words[w] !== 0n) {
          kept.push(p);
          break;
        }
      }
    }
    this.#pages = new Uint8Array(kept.length * PAGE_SIZE);
    kept.forEach((p, i) => {
      this.#index[p] = i;
      this.#pages.set(mem.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), i * PAGE_SIZE);
    });
    this.storedPages = kept.length;
  }

  /** Host bytes the image holds (the kept pages and the index). */
  get bytes(): number {
    return this.#pages.byteLength + this.#index.byteLength;
  }

  /** Puts page `page` of `mem` back as it was captured. */
  restorePage(mem: Uint8Array, page: number): void {
    const at = page * PAGE_SIZE;
    const i = this.#index[page];
    if (i === undefined) throw new RangeError(`pristine image: page ${page} is outside the image`);
    if (i < 0) mem.fill(0, at, at + PAGE_SIZE);
    else mem.set(this.#pages.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), at);
  }

  /** The captured bytes of [at, at + length) (for tests and inspection). */
  read(at: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let o = 0; o < length; ) {
      const page = Math.floor((at + o) / PAGE_SIZE);
      const inPage = (at + o) % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, length - o);
      const i = this.#index[page] ?? -1;
      if (i >= 0) out.set(this.#pages.subarray(i * PAGE_SIZE + inPage, i * PAGE_SIZE + inPage + n), o);
      o += n;
    }
    return out;
  }
}
