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
 * counted without V8's heap pages (anonymous rw-p mappings of exactly 256 KiB): V8 grows and
 * shrinks its reservation (the young generation above all) well after a warm-up, without any
 * live object to show for it, and the kernel merges or splits adjacent pages as it goes, so no
 * count derived from `heapTotal` matches the mappings it makes. The live heap after a GC
 * (`heapUsed`) is what must stay flat. What kvmpool could leak still counts: guest memory
 * (anonymous, its own size), kvm_run mappings (anon_inode:kvm-vcpu), thread stacks.
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

/** An anonymous private rw-p mapping of exactly one V8 heap page. */
function isV8Page(line: string): boolean {
  const m = /^([0-9a-f]+)-([0-9a-f]+) rw-p 00000000 00:00 0\s*$/.exec(line);
  return m !== null && parseInt(m[2]!, 16) - parseInt(m[1]!, 16) === V8_PAGE;
}

export function resources(): Resources {
  return {
    fds: readdirSync('/proc/self/fd').length,
    maps: readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.length > 0 && !isV8Page(l)).length,
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
  const maps = after.maps - before.maps;
  if (maps > tol.maps) out.push(`mappings other than V8's heap pages grew by ${maps} (tolerance ${tol.maps})`);
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
