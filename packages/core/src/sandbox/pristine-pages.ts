/**
 * The pristine memory of a sandbox VM, kept sparsely: a copy of each page that is not zero, and
 * nothing for the rest. A reset puts back the pages a call wrote — from the copy, or zeroes —
 * so the host holds only what the guest's pristine state really contains (a warm 8 MiB VM whose
 * image and data take 40 pages keeps 40 pages, not 8 MiB).
 *
 * Zero pages are found with a compare against a zero page; reading a page the kernel never
 * committed maps the shared zero page and commits nothing.
 */
import { PAGE_SIZE } from '../util/size.js';

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

export class PristinePages {
  readonly #pages = new Map<number, Uint8Array>();

  /** Captures every non-zero page of `mem`. */
  static capture(mem: Uint8Array): PristinePages {
    if (mem.length % PAGE_SIZE !== 0) throw new RangeError(`pristine pages: a memory of ${mem.length} bytes is not whole pages`);
    const p = new PristinePages();
    for (let page = 0; page < mem.length / PAGE_SIZE; page++) p.#keep(mem, page);
    return p;
  }

  /** Pages kept (non-zero in the pristine state). */
  get size(): number {
    return this.#pages.size;
  }

  /** A copy of this capture whose `pages` are taken again from `mem` (the rest shared, as they are never written). */
  updated(mem: Uint8Array, pages: Iterable<number>): PristinePages {
    const p = new PristinePages();
    for (const [k, v] of this.#pages) p.#pages.set(k, v);
    for (const page of pages) {
      p.#pages.delete(page);
      p.#keep(mem, page);
    }
    return p;
  }

  /** Puts `pages` of `mem` back to the pristine state. */
  restore(mem: Uint8Array, pages: Iterable<number>): void {
    for (const page of pages) {
      const at = page * PAGE_SIZE;
      const src = this.#pages.get(page);
      if (src) mem.set(src, at);
      else mem.fill(0, at, at + PAGE_SIZE);
    }
  }

  #keep(mem: Uint8Array, page: number): void {
    const at = page * PAGE_SIZE;
    if (!Buffer.from(mem.buffer, mem.byteOffset + at, PAGE_SIZE).equals(ZERO_PAGE)) this.#pages.set(page, mem.slice(at, at + PAGE_SIZE));
  }
}
