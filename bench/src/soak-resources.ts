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
  /** The mappings counted in `maps` (lines of /proc/self/maps), to name what grew. */
  mapLines: readonly string[];
}

/**
 * How much each figure may grow over a phase before the soak calls it a leak. Mappings are
 * counted without V8's own pages: anonymous mappings of exactly one 256 KiB heap page, committed
 * (rw-p) or given back (---p, left inside V8's reservation when the heap shrinks), and V8's
 * executable code pages (anonymous rwxp; kvmpool maps nothing executable). V8 grows and shrinks
 * its reservation (the young generation above all) well after a warm-up, without any live object
 * to show for it, and the kernel merges or splits adjacent pages as it goes, so no count derived
 * from `heapTotal` matches the mappings it makes (measured: 10,000 createMachine cycles leave 56
 * given-back 256 KiB pages and one 240 KiB code area more in the second half while RSS falls).
 * The live heap after a GC (`heapUsed`) is what must stay flat. What kvmpool could leak still
 * counts: guest memory (anonymous rw-p, its own size), kvm_run mappings (anon_inode:kvm-vcpu),
 * thread stacks (rw-p with a 4 KiB guard).
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

/** An anonymous private mapping of exactly one V8 heap page (rw-p or given back, ---p), or V8 JIT code (rwxp). */
function isV8Page(line: string): boolean {
  const m = /^([0-9a-f]+)-([0-9a-f]+) (rw-p|---p|rwxp) 00000000 00:00 0\s*$/.exec(line);
  return m !== null && (m[3] === 'rwxp' || parseInt(m[2]!, 16) - parseInt(m[1]!, 16) === V8_PAGE);
}

export function resources(): Resources {
  const mapLines = readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.length > 0 && !isV8Page(l));
  return {
    fds: readdirSync('/proc/self/fd').length,
    maps: mapLines.length,
    mapLines,
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
  if (maps > tol.maps) out.push(`mappings other than V8's heap and code pages grew by ${maps} (tolerance ${tol.maps}); new: ${newMappings(before, after)}`);
  if (after.heapUsed - before.heapUsed > tol.heapUsed) {
    out.push(`live JS heap grew by ${((after.heapUsed - before.heapUsed) / MiB).toFixed(1)} MiB (tolerance ${tol.heapUsed / MiB} MiB)`);
  }
  if (after.rss - before.rss > tol.rss) out.push(`RSS grew by ${((after.rss - before.rss) / MiB).toFixed(1)} MiB (tolerance ${tol.rss / MiB} MiB)`);
  return out;
}

/** The mappings `after` has and `before` had not, counted by kind (permissions, size, backing). */
function newMappings(before: Resources, after: Resources): string {
  const had = new Set(before.mapLines);
  const kinds = new Map<string, number>();
  for (const line of after.mapLines) {
    if (had.has(line)) continue;
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (!m) continue;
    const kib = (parseInt(m[2]!, 16) - parseInt(m[1]!, 16)) / 1024;
    const kind = `${m[3]} ${kib} KiB${m[4] ? ` ${m[4]}` : ''}`;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  return [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, n]) => `${n}× ${k}`).join(', ');
}

export function formatResources(label: string, r: Resources): string {
  const mib = (n: number): string => (n / MiB).toFixed(1).padStart(9);
  return `${label.padEnd(16)} ${String(r.fds).padStart(6)} ${String(r.maps).padStart(7)} ${mib(r.rss)} ${mib(r.heapUsed)} ${mib(r.heapTotal)}`;
}
