// guestRam(): the devices' view of a machine's memory. Every address comes from the guest: anything outside
// one slot (negative, past the end, across two slots, overflowing) is undefined, never a throw or a wrong view.
import { describe, expect, it } from 'vitest';
import { GuestMemory, MemorySlot, guestRam } from '@kvmpool/core/internal';

function memory(): GuestMemory {
  const m = new GuestMemory();
  m.insert(new MemorySlot(0, 0n, 0x4000, { readOnly: false, dirtyLog: false }));
  m.insert(new MemorySlot(1, 0x4000n, 0x2000, { readOnly: false, dirtyLog: false })); // adjacent to slot 0
  m.insert(new MemorySlot(2, 0x10000n, 0x1000, { readOnly: false, dirtyLog: false }));
  return m;
}

describe('guestRam', () => {
  it('views inside one slot are live windows of it', () => {
    const m = memory();
    const ram = guestRam(m);
    const v = ram.view(0x4010n, 16)!;
    v.fill(7);
    expect(m.read(0x4010, 16)).toEqual(new Uint8Array(16).fill(7));
    expect(ram.view(0x10000n, 0x1000)?.length).toBe(0x1000);
    expect(ram.view(0x3ff0n, 16)?.length).toBe(16); // the last bytes of slot 0
  });

  it('zero-length views inside a slot or at its end are allowed', () => {
    const ram = guestRam(memory());
    expect(ram.view(0x100n, 0)?.length).toBe(0);
    expect(ram.view(0x11000n, 0)?.length).toBe(0);
  });

  it('refuses what no single slot holds', () => {
    const ram = guestRam(memory());
    const refused: [bigint, number][] = [
      [-1n, 1], [0x3ff0n, 0x20], // across slots 0 and 1, although both are RAM
      [0x6000n, 1], [0x5fffn, 2], [0xfffn + 0x10000n, 2], [0x20000n, 0], [0xffff_ffff_ffff_fff0n, 0x20],
      [2n ** 64n, 1], [0n, -1], [0n, 1.5], [0n, Number.MAX_SAFE_INTEGER + 1], [0n, Number.NaN],
    ];
    for (const [gpa, length] of refused) expect(ram.view(gpa, length), `${gpa} + ${length}`).toBeUndefined();
  });
});
