import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  VIRTIO_BLK_F, VIRTIO_BLK_S, VIRTIO_BLK_T, VIRTIO_STATUS, VirtioBlk, VirtioMmioTransport, featureBit, type VirtioBlkOptions,
} from '@kvmpool/devices';
import { FakeRam, MmioDriver, irqRecorder } from '../support/virtio.js';

const HDR = 0x80000n;
const DATA = 0x90000n;
const STATUS = 0x8f000n;

function rig(options: VirtioBlkOptions) {
  const ram = new FakeRam(4 << 20);
  const blk = new VirtioBlk(options);
  const t = new VirtioMmioTransport(blk, { ram, irq: irqRecorder() });
  const drv = new MmioDriver(t, ram);
  expect(drv.init([16]) & VIRTIO_STATUS.DRIVER_OK).toBe(VIRTIO_STATUS.DRIVER_OK);
  const ring = drv.rings[0]!;
  let next = 0;
  /** Submits one request; data is a list of buffers (writable for IN/GET_ID). Returns status and used length. */
  function submit(type: number, sector: bigint, data: { len: number; write?: boolean; bytes?: Uint8Array }[], opts: { status?: boolean; headerLen?: number } = {}) {
    const dv = ram.dv();
    dv.setUint32(Number(HDR), type, true);
    dv.setUint32(Number(HDR) + 4, 0, true);
    dv.setBigUint64(Number(HDR) + 8, sector, true);
    ram.bytes[Number(STATUS)] = 0xee;
    let at = DATA;
    const bufs: { addr: bigint; len: number; write?: boolean }[] = [{ addr: HDR, len: opts.headerLen ?? 16 }];
    for (const d of data) {
      if (d.bytes) ram.bytes.set(d.bytes, Number(at));
      bufs.push({ addr: at, len: d.len, ...(d.write ? { write: true } : {}) });
      at += BigInt(d.len + 0x1000) & ~0xfffn;
    }
    if (opts.status !== false) bufs.push({ addr: STATUS, len: 1, write: true });
    const head = next;
    next = (next + bufs.length) % 16;
    ring.chain(head, bufs);
    drv.notify(0);
    const used = ring.takeUsed();
    return { status: ram.bytes[Number(STATUS)]!, used, ram };
  }
  return { ram, blk, t, drv, submit };
}

const tmpDirs: string[] = [];
afterEach(() => {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

describe('VirtioBlk over a buffer', () => {
  it('reports capacity, block size, seg/size max and discard limits in its config, and its features', () => {
    const disk = new Uint8Array(1 << 20);
    const { drv, t } = rig({ backing: disk });
    const cfg = new DataView(drv.config(0, 72).buffer);
    expect(cfg.getBigUint64(0, true)).toBe(2048n);
    expect(cfg.getUint32(20, true)).toBe(512);
    expect(cfg.getUint32(12, true)).toBe(254);
    expect(cfg.getUint32(8, true)).toBe(1 << 20);
    expect(cfg.getUint32(36, true)).toBe(8192);
    for (const b of [VIRTIO_BLK_F.FLUSH, VIRTIO_BLK_F.DISCARD, VIRTIO_BLK_F.BLK_SIZE, VIRTIO_BLK_F.SEG_MAX]) {
      expect(t.negotiatedFeatures & featureBit(b)).toBe(featureBit(b));
    }
    expect(t.negotiatedFeatures & featureBit(VIRTIO_BLK_F.RO)).toBe(0n);
    expect([...drv.config(72, 4)]).toEqual([0, 0, 0, 0]);
  });

  it('writes and reads sectors across several descriptors', () => {
    const disk = new Uint8Array(64 * 512);
    const { submit, ram, blk } = rig({ backing: disk });
    const a = pattern(512, 3);
    const b = pattern(1024, 9);
    const w = submit(VIRTIO_BLK_T.OUT, 5n, [{ len: 512, bytes: a }, { len: 1024, bytes: b }]);
    expect(w.status).toBe(VIRTIO_BLK_S.OK);
    expect(w.used).toEqual([{ id: 0, len: 1 }]);
    expect([...disk.subarray(5 * 512, 6 * 512)]).toEqual([...a]);
    expect([...disk.subarray(6 * 512, 8 * 512)]).toEqual([...b]);
    const r = submit(VIRTIO_BLK_T.IN, 5n, [{ len: 1024, write: true }, { len: 512, write: true }]);
    expect(r.status).toBe(VIRTIO_BLK_S.OK);
    expect(r.used[0]!.len).toBe(1536 + 1);
    // First buffer (1024 bytes at DATA): sectors 5–6; second (512 at DATA+0x1000): sector 7.
    const got = Buffer.concat([ram.bytes.subarray(Number(DATA), Number(DATA) + 1024), ram.bytes.subarray(Number(DATA) + 0x1000, Number(DATA) + 0x1000 + 512)]);
    expect([...got]).toEqual([...a, ...b]);
    expect(blk.stats()).toMatchObject({ requests: 2, bytesRead: 1536, bytesWritten: 1536, ioErrors: 0 });
  });

  it('refuses out-of-range and partial sectors with S_IOERR, unknown types with S_UNSUPP', () => {
    const disk = new Uint8Array(8 * 512);
    const { submit } = rig({ backing: disk });
    expect(submit(VIRTIO_BLK_T.IN, 8n, [{ len: 512, write: true }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.IN, 7n, [{ len: 1024, write: true }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.OUT, (1n << 64n) - 1n, [{ len: 512 }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.OUT, 0n, [{ len: 100 }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.IN, 7n, [{ len: 512, write: true }]).status).toBe(VIRTIO_BLK_S.OK);
    expect(submit(99, 0n, []).status).toBe(VIRTIO_BLK_S.UNSUPP);
    // A header shorter than 16 bytes: S_IOERR (the status byte is writable).
    expect(submit(VIRTIO_BLK_T.IN, 0n, [], { headerLen: 8 }).status).toBe(VIRTIO_BLK_S.IOERR);
  });

  it('a request with no writable byte at all is a malformed ring: DEVICE_NEEDS_RESET', () => {
    const { submit, t } = rig({ backing: new Uint8Array(4096) });
    submit(VIRTIO_BLK_T.FLUSH, 0n, [], { status: false });
    expect(t.needsReset).toBe(true);
    expect(t.lastError?.message).toMatch(/no writable status byte/);
  });

  it('fails just the request when a data buffer lies outside guest RAM, and needs a reset when the status byte does', () => {
    const disk = pattern(16 * 512);
    const copy = disk.slice();
    const { drv, ram, t, blk } = rig({ backing: disk });
    const ring = drv.rings[0]!;
    const dv = ram.dv();
    dv.setUint32(Number(HDR), VIRTIO_BLK_T.OUT, true);
    dv.setBigUint64(Number(HDR) + 8, 0n, true);
    ram.bytes[Number(STATUS)] = 0xee;
    ring.chain(0, [{ addr: HDR, len: 16 }, { addr: 0x9000_0000n, len: 512 }, { addr: STATUS, len: 1, write: true }]);
    drv.notify(0);
    expect(ring.takeUsed()).toEqual([{ id: 0, len: 1 }]);
    expect(ram.bytes[Number(STATUS)]).toBe(VIRTIO_BLK_S.IOERR);
    expect([...disk]).toEqual([...copy]);
    expect(t.needsReset).toBe(false);
    // A read whose data buffer wraps the address space: the same.
    dv.setUint32(Number(HDR), VIRTIO_BLK_T.IN, true);
    ring.chain(3, [{ addr: HDR, len: 16 }, { addr: (1n << 64n) - 256n, len: 512, write: true }, { addr: STATUS, len: 1, write: true }]);
    drv.notify(0);
    expect(ram.bytes[Number(STATUS)]).toBe(VIRTIO_BLK_S.IOERR);
    expect(t.needsReset).toBe(false);
    expect(blk.stats().ioErrors).toBe(2);
    // The status byte outside RAM: nowhere to report it.
    ring.chain(6, [{ addr: HDR, len: 16 }, { addr: DATA, len: 512, write: true }, { addr: 0x9000_0000n, len: 1, write: true }]);
    drv.notify(0);
    expect(t.needsReset).toBe(true);
    expect(t.lastError?.message).toMatch(/no writable status byte in guest RAM/);
  });

  it('is read-only when asked: RO offered, writes, discards and write-zeroes answer S_IOERR, reads work', () => {
    const disk = pattern(4096);
    const copy = disk.slice();
    const { submit, t } = rig({ backing: disk, readOnly: true });
    expect(t.negotiatedFeatures & featureBit(VIRTIO_BLK_F.RO)).toBe(featureBit(VIRTIO_BLK_F.RO));
    expect(t.negotiatedFeatures & featureBit(VIRTIO_BLK_F.DISCARD)).toBe(0n);
    expect(submit(VIRTIO_BLK_T.OUT, 0n, [{ len: 512 }]).status).toBe(VIRTIO_BLK_S.IOERR);
    const seg = new Uint8Array(16);
    new DataView(seg.buffer).setUint32(8, 1, true);
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, [{ len: 16, bytes: seg }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.WRITE_ZEROES, 0n, [{ len: 16, bytes: seg }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.IN, 1n, [{ len: 512, write: true }]).status).toBe(VIRTIO_BLK_S.OK);
    expect(submit(VIRTIO_BLK_T.FLUSH, 0n, []).status).toBe(VIRTIO_BLK_S.OK);
    expect([...disk]).toEqual([...copy]);
  });

  it('flushes, returns its id, and discards/write-zeroes validated segments', () => {
    const disk = pattern(64 * 512);
    const { submit, ram } = rig({ backing: disk, id: 'disk-serial-0123456789abcdef' });
    expect(submit(VIRTIO_BLK_T.FLUSH, 0n, []).status).toBe(VIRTIO_BLK_S.OK);
    const id = submit(VIRTIO_BLK_T.GET_ID, 0n, [{ len: 20, write: true }]);
    expect(id.status).toBe(VIRTIO_BLK_S.OK);
    expect(id.used[0]!.len).toBe(21);
    expect(Buffer.from(ram.bytes.subarray(Number(DATA), Number(DATA) + 20)).toString()).toBe('disk-serial-01234567');
    const segs = (list: [bigint, number, number][]) => {
      const b = new Uint8Array(16 * list.length);
      const dv = new DataView(b.buffer);
      list.forEach(([s, n, f], i) => {
        dv.setBigUint64(16 * i, s, true);
        dv.setUint32(16 * i + 8, n, true);
        dv.setUint32(16 * i + 12, f, true);
      });
      return [{ len: b.length, bytes: b }];
    };
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, segs([[2n, 2, 0], [10n, 1, 0]])).status).toBe(VIRTIO_BLK_S.OK);
    expect(disk.subarray(2 * 512, 4 * 512).every((x) => x === 0)).toBe(true);
    expect(disk.subarray(10 * 512, 11 * 512).every((x) => x === 0)).toBe(true);
    expect(disk[4 * 512]).not.toBe(0);
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, segs([[0n, 1, 1]])).status).toBe(VIRTIO_BLK_S.UNSUPP); // unmap on discard
    expect(submit(VIRTIO_BLK_T.WRITE_ZEROES, 0n, segs([[20n, 4, 1]])).status).toBe(VIRTIO_BLK_S.OK);
    expect(disk.subarray(20 * 512, 24 * 512).every((x) => x === 0)).toBe(true);
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, segs([[63n, 2, 0]])).status).toBe(VIRTIO_BLK_S.IOERR); // past the end
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, segs([[0n, 1, 0], [70n, 1, 0]])).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(disk[0]).not.toBe(0); // validated before anything is zeroed
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, segs(Array.from({ length: 17 }, () => [0n, 1, 0] as [bigint, number, number]))).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, [{ len: 8 }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.DISCARD, 0n, segs([[0n, 8193, 0]])).status).toBe(VIRTIO_BLK_S.IOERR);
  });
});

describe('VirtioBlk over a file', () => {
  function tempDisk(bytes: Uint8Array): string {
    const dir = mkdtempSync(join(tmpdir(), 'kvmpool-blk-'));
    tmpDirs.push(dir);
    const path = join(dir, 'disk.img');
    writeFileSync(path, bytes);
    return path;
  }

  it('reads and writes the file through one fd, flushes with fsync, and refuses requests once closed', () => {
    const path = tempDisk(pattern(32 * 512, 5));
    const { submit, blk, ram } = rig({ backing: { path } });
    expect(blk.capacity).toBe(32n);
    const r = submit(VIRTIO_BLK_T.IN, 3n, [{ len: 1024, write: true }]);
    expect(r.status).toBe(VIRTIO_BLK_S.OK);
    expect([...ram.bytes.subarray(Number(DATA), Number(DATA) + 1024)]).toEqual([...pattern(32 * 512, 5).subarray(3 * 512, 5 * 512)]);
    const data = pattern(512, 77);
    expect(submit(VIRTIO_BLK_T.OUT, 31n, [{ len: 512, bytes: data }]).status).toBe(VIRTIO_BLK_S.OK);
    expect(submit(VIRTIO_BLK_T.FLUSH, 0n, []).status).toBe(VIRTIO_BLK_S.OK);
    expect([...readFileSync(path).subarray(31 * 512)]).toEqual([...data]);
    const seg = new Uint8Array(16);
    new DataView(seg.buffer).setUint32(8, 2, true);
    expect(submit(VIRTIO_BLK_T.WRITE_ZEROES, 0n, [{ len: 16, bytes: seg }]).status).toBe(VIRTIO_BLK_S.OK);
    expect(readFileSync(path).subarray(0, 1024).every((x) => x === 0)).toBe(true);
    blk.close();
    blk.close();
    expect(submit(VIRTIO_BLK_T.IN, 0n, [{ len: 512, write: true }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.FLUSH, 0n, []).status).toBe(VIRTIO_BLK_S.IOERR);
  });

  it('opens read-only files read-only and answers a shrunk file with S_IOERR', () => {
    const path = tempDisk(pattern(8 * 512));
    const { submit, blk, t } = rig({ backing: { path, readOnly: true } });
    expect(blk.readOnly).toBe(true);
    expect(t.negotiatedFeatures & featureBit(VIRTIO_BLK_F.RO)).toBe(featureBit(VIRTIO_BLK_F.RO));
    expect(submit(VIRTIO_BLK_T.OUT, 0n, [{ len: 512 }]).status).toBe(VIRTIO_BLK_S.IOERR);
    writeFileSync(path, new Uint8Array(512)); // truncated under the device
    expect(submit(VIRTIO_BLK_T.IN, 4n, [{ len: 512, write: true }]).status).toBe(VIRTIO_BLK_S.IOERR);
    expect(submit(VIRTIO_BLK_T.IN, 0n, [{ len: 512, write: true }]).status).toBe(VIRTIO_BLK_S.OK);
    blk.close();
  });

  it('throws on a missing file from the constructor', () => {
    expect(() => new VirtioBlk({ backing: { path: '/nonexistent/kvmpool-disk.img' } })).toThrow(/ENOENT/);
  });
});
