import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Machine, SnapshotError, createMachine } from '@kvmpool/core';
import { buildFlatGuest, exampleGuest } from '../support/build-c.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmpool-snap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LINES = 400n;
const guest = (): Uint8Array => buildFlatGuest(exampleGuest('counter.S'));

function collect(m: Machine): () => string {
  let out = '';
  m.serial(0).on('data', (c: Buffer) => (out += c.toString('latin1')));
  return () => out;
}

async function untilOutput(get: () => string, bytes: number): Promise<void> {
  const end = Date.now() + 20_000;
  while (get().length < bytes) {
    if (Date.now() > end) throw new Error(`only ${get().length} bytes of output`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function fullRun(): Promise<string> {
  await using m = await createMachine({ memory: '2 MiB' });
  const out = collect(m);
  m.load(0x10000, guest());
  await m.start({ entry: 0x10000n, stack: 0x100000n, regs: () => ({ rdi: LINES }) });
  expect(await m.waitForExit()).toEqual({ reason: 'debug-exit', code: 0 });
  return out();
}

describe('snapshots', () => {
  let path = '';

  it('a VM restored from a mid-run snapshot continues exactly where the original was', async () => {
    const expected = await fullRun();
    expect(expected.split('\n')).toHaveLength(Number(LINES) + 1);

    await using m = await createMachine({ memory: '2 MiB' });
    const before = collect(m);
    m.load(0x10000, guest());
    await m.start({ entry: 0x10000n, stack: 0x100000n, regs: () => ({ rdi: LINES }) });
    await untilOutput(before, expected.length / 3);
    path = join(dir, 'mid.kvmsnap');
    await m.pause();
    await new Promise((r) => setImmediate(r)); // let the UART's last chunk reach the stream
    const printedBeforeSnapshot = before().length;
    const info = await m.snapshot(path);
    expect(info.bytes).toBe(statSync(path).size);
    expect(info.pages).toBeGreaterThan(0);
    await m.stop();

    await using restored = await Machine.restore(path);
    const after = collect(restored);
    await restored.start();
    expect(await restored.waitForExit()).toEqual({ reason: 'debug-exit', code: 0 });
    expect(printedBeforeSnapshot).toBeGreaterThan(0);
    expect(after().length).toBeGreaterThan(0);
    expect(before().slice(0, printedBeforeSnapshot) + after()).toBe(expected);
  });

  it('a snapshot stores only non-zero pages', () => {
    // 2 MiB of guest memory, of which the code, system tables, stack and hash pages are in use.
    expect(statSync(path).size).toBeLessThan(200 * 1024);
  });

  it('truncated, corrupted or wrong-version files are refused before any VM is made', async () => {
    const good = readFileSync(path);
    const variant = (name: string, bytes: Uint8Array): string => {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      return p;
    };
    const truncated = variant('truncated', good.subarray(0, good.length - 5000));
    const corrupted = Buffer.from(good);
    corrupted[corrupted.length - 100]! ^= 0xff;
    const versioned = Buffer.from(good);
    versioned.writeUInt32LE(99, 8);
    const notSnapshot = variant('not', Buffer.from('hello, this is not a snapshot at all, just some text that is long enough for a header'));
    await expect(Machine.restore(truncated)).rejects.toThrow(SnapshotError);
    await expect(Machine.restore(truncated)).rejects.toThrow(/truncated: memory slot 0 has \d+ pages, so the file needs at least \d+ bytes; it has \d+/);
    await expect(Machine.restore(variant('corrupted', corrupted))).rejects.toThrow(/corrupted: checksum mismatch/);
    await expect(Machine.restore(variant('versioned', versioned))).rejects.toThrow('snapshot format version 99; this kvmpool reads version 1');
    await expect(Machine.restore(notSnapshot)).rejects.toThrow('not a kvmpool snapshot (bad magic)');
    await expect(Machine.restore(join(dir, 'missing'))).rejects.toThrow(/cannot read/);
  });
});
