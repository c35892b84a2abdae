/** What the soak watches for leaks: open fds, memory mappings and RSS of this process. */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Resources {
  fds: number;
  maps: number;
  rss: number;
  /** V8 heap: live bytes after GC, and what the heap has reserved. */
  heapUsed: number;
  heapTotal: number;
}

/**
 * How much each figure may grow over a phase before the soak calls it a leak. Mappings are
 * counted beyond those V8's heap reservation explains: V8 maps its heap in 256 KiB pages and
 * grows the reservation (the young generation above all) well after a warm-up, without any
 * live object to show for it; the live heap after a GC (`heapUsed`) is what must stay flat.
 */
export interface Tolerance {
  fds: number;
  maps: number;
  /** Bytes. */
  rss: number;
  /** Bytes of live V8 heap after GC. */
  heapUsed: number;
}

const V8_PAGE = 256 * 1024;
export const MiB = 1 << 20;

export function resources(): Resources {
  return {
    fds: readdirSync('/proc/self/fd').length,
    maps: readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.length > 0).length,
    ...(({ rss, heapUsed, heapTotal }) => ({ rss, heapUsed, heapTotal }))(process.memoryUsage()),
  };
}

/** Resources once garbage has been collected (with --expose-gc) and finalizers had a turn. */
export async function settledResources(): Promise<Resources> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await sleep(20);
  }
  return resources();
}


/** The figures that grew past their tolerance, as readable lines (empty: no leak). */
export function leaks(before: Resources, after: Resources, tol: Tolerance): string[] {
  const out: string[] = [];
  if (after.fds - before.fds > tol.fds) out.push(`fds grew by ${after.fds - before.fds} (tolerance ${tol.fds})`);
  const heapPages = Math.max(0, Math.ceil((after.heapTotal - before.heapTotal) / V8_PAGE));
  const maps = after.maps - before.maps - heapPages;
  if (maps > tol.maps) out.push(`mappings grew by ${after.maps - before.maps}, ${maps} beyond ${heapPages} V8 heap pages (tolerance ${tol.maps})`);
  if (after.heapUsed - before.heapUsed > tol.heapUsed) {
    out.push(`live JS heap grew by ${((after.heapUsed - before.heapUsed) / MiB).toFixed(1)} MiB (tolerance ${tol.heapUsed / MiB} MiB)`);
  }
  if (after.rss - before.rss > tol.rss) out.push(`RSS grew by ${((after.rss - before.rss) / MiB).toFixed(1)} MiB (tolerance ${tol.rss / MiB} MiB)`);
  return out;
}

export function formatResources(label: string, r: Resources): string {
  const mib = (n: number): string => (n / MiB).toFixed(1).padStart(9);
  return `${label.padEnd(16)} ${String(r.fds).padStart(6)} ${String(r.maps).padStart(7)} ${mib(r.rss)} ${mib(r.heapUsed)} ${mib(r.heapTotal)}`;
}
