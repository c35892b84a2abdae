// The pool's reply codec: whatever the guest sends, the writer stays inside its area and the
// reader gives back what was written (cut and counted), or a typed error; it never throws.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GuestError, HostFunctionError } from '@kvmpool/core';
import { REPLY_ERROR_BYTES, boundedErrorJson, decodeError, decodeReply, encodeReply } from '@kvmpool/core/internal';

const AREA = 64 * 1024;

describe('reply codec', () => {
  it('the common reply (no error, no prints, nothing dropped) decodes to one shared, frozen value: no allocation per call', () => {
    const area = new Uint8Array(AREA);
    const len = encodeReply(area, [], undefined);
    const a = decodeReply(area, len);
    expect(a).toEqual({ error: undefined, prints: [], printsDropped: 0, printBytesDropped: 0 });
    expect(decodeReply(area, len)).toBe(a);
    expect(Object.isFrozen(a) && Object.isFrozen(a.prints)).toBe(true);
    // Anything else in the head still decodes in full.
    const dropped = encodeReply(area, [], undefined, 3, 10);
    expect(decodeReply(area, dropped)).toMatchObject({ printsDropped: 3, printBytesDropped: 10 });
  });

  it('round-trips prints and an error that fit', () => {
    const area = new Uint8Array(AREA);
    const len = encodeReply(area, ['one', 'zwei ü', ''], new GuestError('guest function f returned error -5', -5));
    const r = decodeReply(area, len);
    expect(r.prints).toEqual(['one', 'zwei ü', '']);
    expect(r.printsDropped).toBe(0);
    const e = decodeError(r.error!);
    expect(e).toBeInstanceOf(GuestError);
    expect(e).toMatchObject({ status: -5, message: 'guest function f returned error -5' });
  });

  it('cuts a print at a character boundary and counts what it left out', () => {
    const area = new Uint8Array(1024);
    const text = 'é'.repeat(1000); // 2000 bytes
    const len = encodeReply(area, [text, 'after'], undefined);
    const r = decodeReply(area, len);
    expect(r.prints.length).toBe(1);
    expect(text.startsWith(r.prints[0]!)).toBe(true);
    expect(r.printsDropped).toBe(1);
    expect(r.printBytesDropped).toBe(2000 - Buffer.byteLength(r.prints[0]!) + 5);
  });

  it('keeps a huge error (message, stack, causes) within its bound, class and cause intact', () => {
    const inner = new TypeError('x'.repeat(200_000));
    const e = new HostFunctionError('f', 'y'.repeat(200_000), inner);
    const json = boundedErrorJson(e);
    expect(json.length).toBeLessThanOrEqual(REPLY_ERROR_BYTES);
    const area = new Uint8Array(AREA);
    const back = decodeError(decodeReply(area, encodeReply(area, [], e)).error!);
    expect(back).toBeInstanceOf(HostFunctionError);
    expect(back.cause).toBeInstanceOf(TypeError);
  });

  it('property: never writes past the area, and reads back exactly what it reports', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 3000 }), { maxLength: 60 }), fc.option(fc.string({ maxLength: 40_000 })), fc.integer({ min: 16, max: 8192 }), (prints, message, size) => {
        const buf = new Uint8Array(size + 16).fill(0xee);
        const area = buf.subarray(0, size);
        const len = encodeReply(area, prints, message === null ? undefined : new Error(message));
        expect(len).toBeLessThanOrEqual(size);
        expect([...buf.subarray(size)].every((b) => b === 0xee)).toBe(true);
        const r = decodeReply(area, len);
        if (r.error?.name === 'SandboxWorkerError') return; // an error too large for a tiny area
        expect(r.prints.length + r.printsDropped).toBe(prints.length);
        r.prints.forEach((p, i) => expect(prints[i]!.startsWith(p)).toBe(true));
      }),
      { numRuns: 200 },
    );
  });

  it('property: any bytes and any length decode without throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.integer({ min: -10, max: 1000 }), (bytes, len) => {
        const r = decodeReply(bytes, len);
        expect(Array.isArray(r.prints)).toBe(true);
      }),
    );
  });
});
