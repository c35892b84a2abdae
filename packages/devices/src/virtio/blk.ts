/**
 * virtio-blk (virtio 1.2 §5.2): one request queue over a host buffer or a file.
 *
 * A request is a chain: a 16-byte readable header { type u32, reserved u32, sector u64 }, data
 * (readable for T_OUT, writable for T_IN / T_GET_ID), and one writable status byte at the very
 * end. The header may span descriptors; data moves straight between the guest's buffers and the
 * backing (fs.readSync/writeSync into the views, no staging copy).
 *
 * Bounds and refusals: the sector range is checked against the capacity (512-byte sectors) and
 * data must be whole sectors (else S_IOERR); writes, discards and write-zeroes to a read-only
 * disk answer S_IOERR; unknown types S_UNSUPP; discard/write-zeroes take at most
 * `MAX_DISCARD_SEG` segments of at most `MAX_DISCARD_SECTORS` each. A chain without room for
 * a status byte, or with a header shorter than 16 bytes, is malformed: the status is S_IOERR if a
 * byte can be written, else `QueueError` (the transport marks the device as needing a reset).
 * A data buffer outside guest RAM fails just its request (S_IOERR, nothing transferred); a status
 * descriptor outside RAM leaves nowhere to say so, hence `QueueError`. A host I/O error answers
 * S_IOERR and is counted in `stats().ioErrors`.
 */
import * as fs from 'node:fs';
import { QueueError, VIRTIO_BLK_F, VIRTIO_DEVICE_ID, featureBit, gather, type VirtioActivation, type VirtioDevice, type VirtqueueChain } from './types.js';

/**
 * virtio-blk request types.
 * @enum
 */
export const VIRTIO_BLK_T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8, DISCARD: 11, WRITE_ZEROES: 13 } as const;
/**
 * virtio-blk request status values.
 * @enum
 */
export const VIRTIO_BLK_S = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
/** Sector size of virtio-blk requests, bytes. */
export const VIRTIO_BLK_SECTOR = 512;
/** Most sectors one discard / write-zeroes segment may cover (4 MiB). */
export const MAX_DISCARD_SECTORS = 8192;
/** Most segments in one discard / write-zeroes request. */
export const MAX_DISCARD_SEG = 16;
/** Bytes of the configuration space (`struct virtio_blk_config`, virtio 1.2). */
const CONFIG_BYTES = 72;
const QUEUE_SIZE = 256;
/** Largest segment the driver may hand over (`size_max`), bytes. */
const SIZE_MAX = 1 << 20;
const ID_BYTES = 20;
const ZERO_CHUNK = 64 << 10;

/** A file to back the disk. */
export interface VirtioBlkFile {
  /** The file's path; it is opened once, in the constructor, and closed by `close()`. */
  path: string;
  /** Open it read-only and offer VIRTIO_BLK_F_RO. */
  readOnly?: boolean;
}

/** Options of `new VirtioBlk()`. */
export interface VirtioBlkOptions {
  /** The disk's bytes (used in place; the guest's writes land in it) or a file. Capacity = length / 512, rounded down. */
  backing: Uint8Array | VirtioBlkFile;
  /** Refuse writes (and offer VIRTIO_BLK_F_RO); default false, or the file's `readOnly`. */
  readOnly?: boolean;
  /** The serial the guest reads with T_GET_ID (at most 20 bytes of UTF-8); default "kvmpool". */
  id?: string;
  /** Device name; default "blk". */
  name?: string;
}

/** Request counters of a `VirtioBlk`. */
export interface VirtioBlkStats {
  /** Requests completed (any status). */
  requests: number;
  /** Bytes read from the backing into the guest. */
  bytesRead: number;
  /** Bytes written from the guest into the backing. */
  bytesWritten: number;
  /** Requests answered S_IOERR. */
  ioErrors: number;
  /** Requests answered S_UNSUPP. */
  unsupported: number;
}

/** A virtio-blk disk over a buffer or a file (see the file's notes for bounds). */
export class VirtioBlk implements VirtioDevice {
  readonly deviceId = VIRTIO_DEVICE_ID.BLOCK;
  readonly name: string;
  readonly features: bigint;
  readonly queueCount = 1;
  readonly queueMaxSize = QUEUE_SIZE;
  /** The disk refuses writes. */
  readonly readOnly: boolean;
  /** Capacity in 512-byte sectors. */
  readonly capacity: bigint;
  readonly #buffer: Uint8Array | undefined;
  #fd: number | undefined;
  readonly #id: Uint8Array;
  readonly #config = new Uint8Array(CONFIG_BYTES);
  #ctx: VirtioActivation | undefined;
  readonly #stats: VirtioBlkStats = { requests: 0, bytesRead: 0, bytesWritten: 0, ioErrors: 0, unsupported: 0 };

  /** Opens a file backing at once (`close()` releases it). */
  constructor(options: VirtioBlkOptions) {
    this.name = options.name ?? 'blk';
    const b = options.backing;
    let bytes: number;
    if (b instanceof Uint8Array) {
      this.readOnly = options.readOnly ?? false;
      this.#buffer = b;
      bytes = b.length;
    } else {
      this.readOnly = options.readOnly ?? b.readOnly ?? false;
      this.#fd = fs.openSync(b.path, this.readOnly ? 'r' : 'r+');
      try {
        bytes = fs.fstatSync(this.#fd).size;
      } catch (e) {
        this.close();
        throw e;
      }
    }
    this.capacity = BigInt(Math.floor(bytes / VIRTIO_BLK_SECTOR));
    this.#id = new TextEncoder().encode(options.id ?? 'kvmpool').subarray(0, ID_BYTES);
    const F = VIRTIO_BLK_F;
    let f = featureBit(F.SIZE_MAX) | featureBit(F.SEG_MAX) | featureBit(F.BLK_SIZE) | featureBit(F.FLUSH);
    f |= this.readOnly ? featureBit(F.RO) : featureBit(F.DISCARD) | featureBit(F.WRITE_ZEROES);
    this.features = f;
    const c = new DataView(this.#config.buffer);
    c.setBigUint64(0, this.capacity, true);
    c.setUint32(8, SIZE_MAX, true);
    c.setUint32(12, QUEUE_SIZE - 2, true); // seg_max: header and status take a descriptor each
    c.setUint32(20, VIRTIO_BLK_SECTOR, true); // blk_size
    c.setUint32(36, MAX_DISCARD_SECTORS, true);
    c.setUint32(40, MAX_DISCARD_SEG, true);
    c.setUint32(44, 1, true); // discard_sector_alignment
    c.setUint32(48, MAX_DISCARD_SECTORS, true);
    c.setUint32(52, MAX_DISCARD_SEG, true);
  }

  /** Closes a file backing (idempotent); requests after it answer S_IOERR. */
  close(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) fs.closeSync(fd);
  }

  /** Request counters. */
  stats(): VirtioBlkStats {
    return { ...this.#stats };
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset < CONFIG_BYTES) data.set(this.#config.subarray(offset, offset + data.length));
  }

  writeConfig(): void {
    // Nothing writable without VIRTIO_BLK_F_CONFIG_WCE.
  }

  activate(ctx: VirtioActivation): void {
    this.#ctx = ctx;
  }

  reset(): void {
    this.#ctx = undefined;
  }

  process(index: number): void {
    const q = this.#ctx?.queues[index];
    if (!q) return;
    for (let c = q.pop(true); c; c = q.pop(true)) q.push(c.head, this.#request(c, index));
  }

  /** Serves one request; returns the bytes written into the chain. */
  #request(c: VirtqueueChain, queue: number): number {
    if (c.writableLength < 1 || c.lastWritableBad) throw new QueueError(queue, `${this.name}: request ${c.head} has no writable status byte in guest RAM`);
    const status = lastByte(c.writable);
    if (c.badBuffers) return this.#finish(status, VIRTIO_BLK_S.IOERR, 1);
    const header = new Uint8Array(16);
    if (gather(c.readable, 0, header) < 16) return this.#finish(status, VIRTIO_BLK_S.IOERR, 1);
    const h = new DataView(header.buffer);
    const type = h.getUint32(0, true);
    const sector = h.getBigUint64(8, true);
    const dataIn = c.writableLength - 1; // writable bytes before the status byte
    const dataOut = c.readableLength - 16;
    try {
      switch (type) {
        case VIRTIO_BLK_T.IN: {
          if (!this.#inRange(sector, dataIn)) return this.#finish(status, VIRTIO_BLK_S.IOERR, 1);
          this.#transfer(c.writable, dataIn, sector, false);
          this.#stats.bytesRead += dataIn;
          return this.#finish(status, VIRTIO_BLK_S.OK, dataIn + 1);
        }
        case VIRTIO_BLK_T.OUT: {
          if (this.readOnly || !this.#inRange(sector, dataOut)) return this.#finish(status, VIRTIO_BLK_S.IOERR, 1);
          this.#transfer(c.readable, dataOut, sector, true, 16);
          this.#stats.bytesWritten += dataOut;
          return this.#finish(status, VIRTIO_BLK_S.OK, 1);
        }
        case VIRTIO_BLK_T.FLUSH:
          if (this.#fd !== undefined && !this.readOnly) fs.fsyncSync(this.#fd);
          else if (this.#buffer === undefined) return this.#finish(status, VIRTIO_BLK_S.IOERR, 1);
          return this.#finish(status, VIRTIO_BLK_S.OK, 1);
        case VIRTIO_BLK_T.GET_ID: {
          const n = Math.min(dataIn, ID_BYTES);
          const id = new Uint8Array(n);
          id.set(this.#id.subarray(0, n));
          scatter(c.writable, id);
          return this.#finish(status, VIRTIO_BLK_S.OK, n + 1);
        }
        case VIRTIO_BLK_T.DISCARD:
        case VIRTIO_BLK_T.WRITE_ZEROES:
          return this.#finish(status, this.#zeroSegments(c, type === VIRTIO_BLK_T.DISCARD), 1);
        default:
          return this.#finish(status, VIRTIO_BLK_S.UNSUPP, 1);
      }
    } catch {
      // A host I/O error (EIO, a closed or shrunk file): the guest sees S_IOERR.
      return this.#finish(status, VIRTIO_BLK_S.IOERR, 1);
    }
  }

  #finish(status: { view: Uint8Array; at: number }, value: number, written: number): number {
    status.view[status.at] = value;
    this.#stats.requests++;
    if (value === VIRTIO_BLK_S.IOERR) this.#stats.ioErrors++;
    if (value === VIRTIO_BLK_S.UNSUPP) this.#stats.unsupported++;
    return written;
  }

  #inRange(sector: bigint, bytes: number): boolean {
    if (bytes % VIRTIO_BLK_SECTOR !== 0) return false;
    return sector + BigInt(bytes / VIRTIO_BLK_SECTOR) <= this.capacity;
  }

  /** Moves `length` bytes between `views` (from byte `skip`) and the backing at `sector`. */
  #transfer(views: readonly Uint8Array[], length: number, sector: bigint, toBacking: boolean, skip = 0): void {
    let pos = Number(sector) * VIRTIO_BLK_SECTOR;
    let left = length;
    for (const v of views) {
      if (left === 0) break;
      if (skip >= v.length) {
        skip -= v.length;
        continue;
      }
      const part = v.subarray(skip, skip + Math.min(v.length - skip, left));
      skip = 0;
      this.#io(part, pos, toBacking);
      pos += part.length;
      left -= part.length;
    }
  }

  #io(part: Uint8Array, pos: number, toBacking: boolean): void {
    if (this.#buffer) {
      if (toBacking) this.#buffer.set(part, pos);
      else part.set(this.#buffer.subarray(pos, pos + part.length));
      return;
    }
    if (this.#fd === undefined) throw new Error(`${this.name}: closed`);
    for (let done = 0; done < part.length;) {
      const n = toBacking
        ? fs.writeSync(this.#fd, part, done, part.length - done, pos + done)
        : fs.readSync(this.#fd, part, done, part.length - done, pos + done);
      if (n <= 0) throw new Error(`${this.name}: short ${toBacking ? 'write' : 'read'} at byte ${pos + done}`);
      done += n;
    }
  }

  /** DISCARD / WRITE_ZEROES: validates every segment first, then zeroes them (discard reads back as zeroes too). */
  #zeroSegments(c: VirtqueueChain, discard: boolean): number {
    if (this.readOnly) return VIRTIO_BLK_S.IOERR;
    const bytes = c.readableLength - 16;
    if (bytes <= 0 || bytes % 16 !== 0 || bytes / 16 > MAX_DISCARD_SEG) return VIRTIO_BLK_S.IOERR;
    const raw = new Uint8Array(bytes);
    gather(c.readable, 16, raw);
    const dv = new DataView(raw.buffer);
    const segs: { sector: bigint; count: number }[] = [];
    for (let o = 0; o < bytes; o += 16) {
      const sector = dv.getBigUint64(o, true);
      const count = dv.getUint32(o + 8, true);
      const flags = dv.getUint32(o + 12, true);
      // flags bit 0 is "unmap": not allowed for discard, allowed (and ignored) for write-zeroes.
      if ((flags & ~1) !== 0 || (discard && flags !== 0)) return VIRTIO_BLK_S.UNSUPP;
      if (count > MAX_DISCARD_SECTORS || !this.#inRange(sector, count * VIRTIO_BLK_SECTOR)) return VIRTIO_BLK_S.IOERR;
      segs.push({ sector, count });
    }
    const zero = new Uint8Array(Math.min(ZERO_CHUNK, MAX_DISCARD_SECTORS * VIRTIO_BLK_SECTOR));
    for (const s of segs) {
      let pos = Number(s.sector) * VIRTIO_BLK_SECTOR;
      for (let left = s.count * VIRTIO_BLK_SECTOR; left > 0;) {
        const n = Math.min(left, zero.length);
        this.#io(zero.subarray(0, n), pos, true);
        pos += n;
        left -= n;
      }
    }
    return VIRTIO_BLK_S.OK;
  }
}

/** Copies `data` into the front of `views`. */
function scatter(views: readonly Uint8Array[], data: Uint8Array): void {
  let n = 0;
  for (const v of views) {
    if (n === data.length) break;
    const k = Math.min(v.length, data.length - n);
    v.set(data.subarray(n, n + k));
    n += k;
  }
}

function lastByte(views: readonly Uint8Array[]): { view: Uint8Array; at: number } {
  const v = views[views.length - 1]!;
  return { view: v, at: v.length - 1 };
}
