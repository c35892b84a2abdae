/** Sizes: a byte count, or a string such as '64 MiB', '2MiB', '4096', '1 GiB', '16 KiB'. */
export type Size = number | bigint | string;

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3,
  gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4,
};

/** Parses a size into bytes; throws a RangeError naming the offending value. */
export function parseSize(size: Size, what = 'size'): number {
  let bytes: number;
  if (typeof size === 'number' || typeof size === 'bigint') {
    bytes = Number(size);
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(size);
    const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
    if (!m || unit === undefined) throw new RangeError(`${what}: cannot parse ${JSON.stringify(size)} (use a byte count or e.g. '64 MiB')`);
    bytes = Number(m[1]) * unit;
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`${what}: ${String(size)} is not a whole, non-negative byte count`);
  return bytes;
}

export const PAGE_SIZE = 4096;

/** Formats a byte count for messages: `8 MiB` for whole units, else the count in bytes. */
export function formatBytes(n: number): string {
  if (n >= 1024 ** 3 && n % 1024 ** 3 === 0) return `${n / 1024 ** 3} GiB`;
  if (n >= 1024 ** 2 && n % 1024 ** 2 === 0) return `${n / 1024 ** 2} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

export function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, '0')}`;
}
