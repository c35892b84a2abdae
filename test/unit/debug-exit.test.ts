import { describe, expect, it } from 'vitest';
import { Bus, DebugExit } from '@kvmpool/devices';

describe('DebugExit', () => {
  it('passes the raw value of 1-, 2- and 4-byte writes to onExit', () => {
    const codes: number[] = [];
    const dev = new DebugExit({ onExit: (code) => codes.push(code) });
    expect(dev.name).toBe('debug-exit');
    dev.write(0, Uint8Array.of(0x31));
    dev.write(0, Uint8Array.of(0x34, 0x12));
    dev.write(0, Uint8Array.of(0x78, 0x56, 0x34, 0xf2));
    dev.write(1, Uint8Array.of(0));
    expect(codes).toEqual([0x31, 0x1234, 0xf2345678, 0]);
    expect(dev.exportState()).toEqual({ name: 'debug-exit', lastCode: 0 });
  });

  it('reads as zero, whatever the size', () => {
    const dev = new DebugExit({ onExit: () => {}, name: 'exit0' });
    const d = Uint8Array.of(0xaa, 0xbb, 0xcc, 0xdd);
    dev.read(0, d);
    expect([...d]).toEqual([0, 0, 0, 0]);
    expect(dev.name).toBe('exit0');
  });

  it('works behind a PIO bus at QEMU\'s default port', () => {
    let code: number | undefined;
    const bus = new Bus('pio');
    bus.register(0x501, 2, new DebugExit({ onExit: (c) => (code = c) }));
    bus.write(0x501n, Uint8Array.of(3));
    expect(code).toBe(3);
  });

  it('rejects a missing callback with a clear message', () => {
    // @ts-expect-error: onExit is required
    expect(() => new DebugExit({})).toThrow(/onExit must be a function/);
  });
});
