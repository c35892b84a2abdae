// A snapshot taken with a virtio-blk request available but not yet processed (the guest skipped the
// notify and spins on the used ring): restored into a new machine, the transport re-checks its ready
// queues, the request completes with the right data, and the guest goes on to its end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Machine, virtioBlk, virtioRng } from '@kvmpool/core/internal';
import { until, within } from '../support/bounded.js';
import { MODE, CODE, STACK, guestMachine, readResults } from '../support/virtio-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmpool-virtio-snap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const USED_IDX = 0x100000 + 0x800 + 2; // the disk's queue page (virtio-guest.c: QUEUE_AREA, device 0 queue 0)

function disk(): Buffer {
  const b = Buffer.alloc(32 * 512);
  for (let i = 0; i < b.length; i++) b[i] = (i * 13 + 1) & 0xff;
  b.write('sector seven, read after the restore', 7 * 512, 'latin1');
  return b;
}

describe('virtio snapshot', () => {
  it('a request submitted but not processed at the snapshot completes after restore with the right data', async () => {
    const path = join(dir, 'mid-io.kvmsnap');
    const image = disk();
    {
      await using m = await guestMachine({ devices: [virtioBlk({ backing: Buffer.from(image) }), virtioRng()] }, { mode: MODE.SNAPSHOT, arg0: 7 });
      await m.start({ entry: CODE, stack: STACK });
      await until(() => readResults(m).submitted === 1, 10_000, 'request made available');
      await new Promise((r) => setTimeout(r, 50));
      // Not notified: the device has not touched it, the guest still spins.
      expect(m.memory.readU16(USED_IDX)).toBe(0);
      expect(m.vcpuStates()).toEqual(['running']);
      await m.snapshot(path);
      expect(m.memory.readU16(USED_IDX)).toBe(0);
      expect(readResults(m).done).toBe(0);
    }
    await using r = await Machine.restore(path, { devices: [virtioBlk({ backing: Buffer.from(image) }), virtioRng()] });
    expect(r.virtio.map((p) => p.name)).toEqual(['virtio-blk0', 'virtio-rng1']);
    // importState re-checked the ready queue: the request is done before the vCPU runs again.
    expect(r.memory.readU16(USED_IDX)).toBe(1);
    await r.start();
    expect(await within(r.waitForExit(), 20_000, 'restored guest')).toEqual({ reason: 'halted' });
    const res = readResults(r);
    expect([res.done, res.error, res.stRead]).toEqual([1, 0, 0]);
    expect(Buffer.from(res.sector0)).toEqual(image.subarray(7 * 512, 7 * 512 + 64));
    expect(r.virtio[0]!.transport.needsReset).toBe(false);
  });
});
