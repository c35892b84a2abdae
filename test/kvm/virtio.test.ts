// virtio devices in a machine, driven by a real guest driver (examples/guests/virtio-guest.c) at CPL 3:
// blk over a buffer and a file, read-only refusal, the console both ways, rng, the ioeventfd and the
// MMIO-exit notify paths, and hostile rings that must leave the host fine.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { virtioBlk, virtioConsole, virtioRng, type Machine } from '@kvmpool/core/internal';
import type { VirtioActivation, VirtioDevice } from '@kvmpool/devices';
import { within } from '../support/bounded.js';
import { CODE, ConsoleText, FLAG_NO_ECHO, MODE, STACK, guestMachine, readResults } from '../support/virtio-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmpool-virtio-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const S_OK = 0;
const S_IOERR = 1;
const NEEDS_RESET = 64;
const BLK_F_RO = 1 << 5;

/** A disk whose sector 0 starts with `text` and whose other bytes follow a pattern. */
function diskImage(sectors: number, text: string): Buffer {
  const b = Buffer.alloc(sectors * 512);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 3) & 0xff;
  b.fill(0, 0, 512);
  b.write(text, 0, 'latin1');
  return b;
}

async function run(m: Machine, ms = 20_000): Promise<void> {
  await m.start({ entry: CODE, stack: STACK });
  const exit = await within(m.waitForExit(), ms, 'virtio guest');
  expect(exit).toEqual({ reason: 'halted' });
}

describe('virtio in a machine', () => {
  it('tour over a Buffer disk: placement, id, read, write, read-back, rng, console echo (ioeventfd path)', async () => {
    const disk = diskImage(64, 'hello from the disk\nsecond line');
    await using m = await guestMachine({ devices: [virtioBlk({ backing: disk, id: 'test-disk' }), virtioConsole(), virtioRng()] }, { mode: MODE.TOUR, writeSector: 9 });
    expect(m.virtio.map((p) => [p.name, p.address, p.irq, p.cmdline, p.notify])).toEqual([
      ['virtio-blk0', 0xd0000000n, 5, 'virtio_mmio.device=4K@0xd0000000:5', 'ioeventfd'],
      ['virtio-console1', 0xd0001000n, 6, 'virtio_mmio.device=4K@0xd0001000:6', 'ioeventfd'],
      ['virtio-rng2', 0xd0002000n, 7, 'virtio_mmio.device=4K@0xd0002000:7', 'ioeventfd'],
    ]);
    const con = new ConsoleText(m.virtioConsole(0));
    await m.start({ entry: CODE, stack: STACK });
    // Input only once the guest has posted its receive buffers and said so.
    await within(con.waitFor('virtio-guest: ready\n'), 20_000, 'ready line');
    m.virtioConsole(0).write('ping 42\n');
    const exit = await within(m.waitForExit(), 20_000, 'virtio guest');
    expect(exit).toEqual({ reason: 'halted' });
    const r = readResults(m);
    expect({ done: r.done, error: r.error, ids: r.deviceIds }).toEqual({ done: 1, error: 0, ids: [2, 3, 4] });
    expect(r.blkCapacity).toBe(64n);
    expect([r.stId, r.stRead, r.stWrite, r.stReadback]).toEqual([S_OK, S_OK, S_OK, S_OK]);
    expect(Buffer.from(r.id).toString('latin1').replace(/\0+$/, '')).toBe('test-disk');
    expect(Buffer.from(r.sector0)).toEqual(disk.subarray(0, 64));
    // The write landed in the host's buffer, and the guest read it back.
    expect(disk.subarray(9 * 512, 9 * 512 + 24).toString('latin1')).toBe('written by virtio-guest\n');
    expect(Buffer.from(r.readback).subarray(0, 24).toString('latin1')).toBe('written by virtio-guest\n');
    expect(r.rngLen).toBe(32);
    expect(new Set(r.rng).size).toBeGreaterThan(8);
    expect(r.echo).toBe('ping 42');
    expect(con.text).toContain('blk: sector 0: hello from the disk\n');
    expect(con.text).toContain(`rng: ${Buffer.from(r.rng).toString('hex')}\n`);
    expect(con.text).toContain('echo: ping 42\n');
    expect(con.text.endsWith('virtio-guest: done\n')).toBe(true);
    // Every notify went through the ioeventfd watcher.
    expect(m.virtioNotifyState.stats!.notifies).toBeGreaterThan(5);
    expect(m.virtio.every((p) => !p.transport.needsReset)).toBe(true);
  });

  it('a file disk: reads it, writes into the file; read-only refuses the write (RO offered), MMIO-exit notifies, irqchip', async () => {
    const path = join(dir, 'disk.img');
    const image = diskImage(32, 'file disk sector zero\n');
    writeFileSync(path, image);
    {
      await using m = await guestMachine({ irqchip: true, devices: [virtioBlk({ backing: { path } })] }, { mode: MODE.TOUR, writeSector: 3 });
      await run(m);
      const r = readResults(m);
      expect([r.done, r.error, r.stRead, r.stWrite, r.stReadback]).toEqual([1, 0, S_OK, S_OK, S_OK]);
      expect(Buffer.from(r.sector0)).toEqual(image.subarray(0, 64));
      expect(r.blkFeatures & BLK_F_RO).toBe(0);
    }
    // The machine closed the file; the write is in it.
    const after = readFileSync(path);
    expect(after.subarray(3 * 512, 3 * 512 + 24).toString('latin1')).toBe('written by virtio-guest\n');
    {
      await using m = await guestMachine({ devices: [virtioBlk({ backing: { path, readOnly: true }, notify: 'exit' })] }, { mode: MODE.TOUR, writeSector: 5 });
      expect(m.virtio[0]!.notify).toBe('exit');
      await run(m);
      const r = readResults(m);
      expect([r.done, r.error, r.stRead, r.stWrite]).toEqual([1, 0, S_OK, S_IOERR]);
      expect(r.blkFeatures & BLK_F_RO).toBe(BLK_F_RO);
      // No ioeventfd: no watcher either, and the notifies came as MMIO exits.
      expect(m.virtioNotifyState.stats).toBeUndefined();
    }
    expect(readFileSync(path).subarray(5 * 512, 6 * 512)).toEqual(image.subarray(5 * 512, 6 * 512));
  });

  it('a read-only Buffer disk refuses writes; the console, rng and blk work with every notify as an MMIO exit', async () => {
    const disk = diskImage(16, 'read-only buffer\n');
    const copy = Buffer.from(disk);
    await using m = await guestMachine({
      devices: [virtioBlk({ backing: disk, readOnly: true, notify: 'exit' }), virtioConsole({ notify: 'exit' }), virtioRng({ notify: 'exit' })],
    }, { mode: MODE.TOUR, flags: FLAG_NO_ECHO, writeSector: 2 });
    const con = new ConsoleText(m.virtioConsole(0));
    await run(m);
    const r = readResults(m);
    expect([r.done, r.error, r.stRead, r.stWrite, r.rngLen]).toEqual([1, 0, S_OK, S_IOERR, 32]);
    expect(disk).toEqual(copy);
    expect(con.text).toContain('blk: write refused\n');
    expect(con.text.endsWith('virtio-guest: done\n')).toBe(true);
  });

  // A data buffer outside RAM is the request's error (S_IOERR, the device goes on); a broken ring (a loop, a head out
  // of range) is the device's: DEVICE_NEEDS_RESET until the driver resets it.
  for (const [kind, what, reset] of [[1, 'a data buffer outside RAM', false], [2, 'a descriptor loop', true], [3, 'a head index out of range', true]] as const) {
    it(`a hostile chain (${what}): ${reset ? 'the disk needs a reset' : 'the request fails with S_IOERR'}; the host stays up and the guest reads again after a reset`, async () => {
      const disk = diskImage(16, 'recovered\n');
      await using m = await guestMachine({ devices: [virtioBlk({ backing: disk }), virtioConsole()] }, { mode: MODE.HOSTILE, arg0: kind });
      const errors: Error[] = [];
      m.on('error', (e) => errors.push(e));
      await run(m);
      const r = readResults(m);
      expect([r.done, r.error]).toEqual([1, 0]);
      expect(r.statusAfter & NEEDS_RESET).toBe(reset ? NEEDS_RESET : 0);
      if (!reset) expect(r.stRead).toBe(S_IOERR);
      expect(r.stRecovered).toBe(S_OK);
      expect(Buffer.from(r.sector0)).toEqual(disk.subarray(0, 64));
      // The guest's reset cleared the condition; nothing reached the host as an error.
      expect(m.virtio[0]!.transport.needsReset).toBe(false);
      expect(errors).toEqual([]);
    });
  }

  it('interrupt-driven: completions arrive as IOAPIC interrupts (KVM_IRQ_LINE on pin 5), the guest waits in hlt', async () => {
    const disk = diskImage(16, 'interrupts\n');
    const reads = 20;
    const spec = virtioBlk({ backing: disk });
    // The first request is held back 50 ms: by then the guest waits in hlt, so only an interrupt can tell it.
    const dev = spec.virtio as VirtioDevice & { activate(c: VirtioActivation): void; process(i: number): void };
    let ctx: VirtioActivation | undefined;
    const activate = dev.activate.bind(dev);
    const process = dev.process.bind(dev);
    let held = false;
    dev.activate = (c) => {
      ctx = c;
      activate(c);
    };
    dev.process = (i) => {
      if (held) return process(i);
      held = true;
      setTimeout(() => ctx!.kick(i), 50);
    };
    await using m = await guestMachine({ irqchip: true, devices: [spec] }, { mode: MODE.IRQ, arg0: 4096, arg1: reads }, true);
    // Completions through irqfd (this host has KVM_CAP_IRQFD): an eventfd write per completion.
    expect(m.virtio[0]!.interrupt).toBe('irqfd');
    await m.start({ entry: CODE, stack: STACK, interrupts: { idt: 0xe000n, stack: 0x90000n } });
    expect(await within(m.waitForExit(), 20_000, 'interrupt-driven guest')).toEqual({ reason: 'halted' });
    const r = readResults(m);
    expect([r.done, r.error]).toEqual([1, 0]);
    expect(held).toBe(true);
    expect(Buffer.from(r.sector0)).toEqual(disk.subarray(0, 64));
    // At most one used-buffer interrupt per read (a completion the guest finds in the ring before it waits needs none).
    expect(r.interrupts).toBeGreaterThanOrEqual(1);
    expect(r.interrupts).toBeLessThanOrEqual(reads);
  });
});
