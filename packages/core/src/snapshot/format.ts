/**
 * The snapshot file:
 *
 *   "KVMPSNAP" | u32 version | u32 flags | u64 metadata length | metadata (JSON)
 *   for each memory slot, in metadata order: u32 page count, then (u32 page index, 4096 bytes)…
 *   sha256 of everything above (32 bytes)
 *
 * Only non-zero pages are stored. A reader checks magic, version, length and checksum before it
 * decodes anything, so a bad file never yields a half-restored VM.
 */
import { createHash } from 'node:crypto';
import { SnapshotError } from '../errors.js';
import { fromJson, toJson } from './json.js';

export const SNAPSHOT_MAGIC = 'KVMPSNAP';
/** The snapshot file format version this kvmpool writes and reads; other versions are refused with `SnapshotError`. */
export const SNAPSHOT_VERSION = 1;
const HEADER = 24;
const DIGEST = 32;
const PAGE = 4096;

export { SnapshotError };

export interface SnapshotPages {
  /** Page index within the slot → 4096 bytes. */
  indices: Uint32Array;
  data: Uint8Array;
}

/** The non-zero pages of `bytes`, found without copying zero pages. */
export function nonZeroPages(bytes: Uint8Array): SnapshotPages {
  const words = new BigUint64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
  const perPage = PAGE / 8;
  const found: number[] = [];
  for (let p = 0; p * perPage < words.length; p++) {
    const end = (p + 1) * perPage;
    for (let w = p * perPage; w < end; w++) {
      if (words[w] !== 0n) {
        found.push(p);
        break;
      }
    }
  }
  const data = new Uint8Array(found.length * PAGE);
  found.forEach((p, i) => data.set(bytes.subarray(p * PAGE, (p + 1) * PAGE), i * PAGE));
  return { indices: Uint32Array.from(found), data };
}

/** Serialises metadata and page sets into the file's bytes (as chunks, for writev). */
export function encodeSnapshot(meta: unknown, slots: readonly SnapshotPages[]): Buffer[] {
  const json = Buffer.from(toJson(meta), 'utf8');
  const header = Buffer.alloc(HEADER);
  header.write(SNAPSHOT_MAGIC, 0, 'latin1');
  header.writeUInt32LE(SNAPSHOT_VERSION, 8);
  header.writeUInt32LE(0, 12);
  header.writeBigUInt64LE(BigInt(json.length), 16);
  const chunks: Buffer[] = [header, json];
  for (const s of slots) {
    const n = s.indices.length;
    const block = Buffer.alloc(4 + n * (4 + PAGE));
    block.writeUInt32LE(n, 0);
    for (let i = 0; i < n; i++) {
      const at = 4 + i * (4 + PAGE);
      block.writeUInt32LE(s.indices[i]!, at);
      block.set(s.data.subarray(i * PAGE, (i + 1) * PAGE), at + 4);
    }
    chunks.push(block);
  }
  const hash = createHash('sha256');
  for (const c of chunks) hash.update(c);
  chunks.push(hash.digest());
  return chunks;
}

export interface DecodedSnapshot {
  meta: unknown;
  /** Per slot: page index → bytes (views into the file). */
  slots: { index: number; bytes: Uint8Array }[][];
}

/** Checks and decodes a snapshot file's bytes; `slotCount` comes from the metadata. */
export function decodeSnapshot(path: string, file: Uint8Array, slotCount: (meta: unknown) => number): DecodedSnapshot {
  const fail = (m: string): never => {
    throw new SnapshotError(path, m);
  };
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (buf.length < HEADER + DIGEST) fail(`truncated: ${buf.length} bytes is shorter than a snapshot header`);
  if (buf.toString('latin1', 0, 8) !== SNAPSHOT_MAGIC) fail('not a kvmpool snapshot (bad magic)');
  const version = buf.readUInt32LE(8);
  if (version !== SNAPSHOT_VERSION) fail(`snapshot format version ${version}; this kvmpool reads version ${SNAPSHOT_VERSION}`);
  const metaLen = Number(buf.readBigUInt64LE(16));
  if (HEADER + metaLen + DIGEST > buf.length) fail(`truncated: the metadata alone needs ${HEADER + metaLen + DIGEST} bytes, the file has ${buf.length}`);
  const body = buf.subarray(0, buf.length - DIGEST);
  let meta: unknown;
  try {
    meta = fromJson(buf.toString('utf8', HEADER, HEADER + metaLen));
  } catch (e) {
    return fail(`corrupted: the metadata is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  // Walk the page blocks first: a short file is reported as truncated, not as a bad checksum.
  const slots: { index: number; bytes: Uint8Array }[][] = [];
  let at = HEADER + metaLen;
  const count = slotCount(meta);
  for (let s = 0; s < count; s++) {
    if (at + 4 > body.length) fail(`truncated: memory slot ${s} starts past the end of the file (${buf.length} bytes)`);
    const n = buf.readUInt32LE(at);
    at += 4;
    const need = at + n * (4 + PAGE) + DIGEST;
    if (need > buf.length) fail(`truncated: memory slot ${s} has ${n} pages, so the file needs at least ${need} bytes; it has ${buf.length}`);
    const pages: { index: number; bytes: Uint8Array }[] = [];
    for (let i = 0; i < n; i++) {
      pages.push({ index: buf.readUInt32LE(at), bytes: body.subarray(at + 4, at + 4 + PAGE) });
      at += 4 + PAGE;
    }
    slots.push(pages);
  }
  if (at !== body.length) fail(`corrupted: ${body.length - at} unexpected bytes after the memory pages`);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(buf.subarray(buf.length - DIGEST))) fail('corrupted: checksum mismatch');
  return { meta, slots };
}
