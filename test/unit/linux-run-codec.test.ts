// A LinuxPool call's request and result records (run-codec.ts) round-trip whatever they hold,
// also inside a larger buffer; every shorter record is refused with a RangeError.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRunRequest, decodeRunResult, encodeRunRequest, encodeRunResult } from '@kvmpool/core/internal';

const strings = fc.array(fc.string({ unit: 'grapheme', maxLength: 20 }), { maxLength: 8 });
/** The bytes at offset 5 of a larger buffer (decoders must honour byteOffset). */
const embedded = (b: Uint8Array): Uint8Array => {
  const big = new Uint8Array(b.length + 11).fill(0xee);
  big.set(b, 5);
  return big.subarray(5, 5 + b.length);
};

const result = fc.record({
  stdout: fc.uint8Array({ maxLength: 300 }),
  stderr: fc.uint8Array({ maxLength: 300 }),
  exitCode: fc.option(fc.integer({ min: 0, max: 255 }), { nil: null }),
  signal: fc.integer({ min: 0, max: 64 }),
  stdoutDropped: fc.maxSafeNat(),
  stderrDropped: fc.maxSafeNat(),
  stats: fc.record({
    syscalls: fc.nat(),
    unknown: fc.dictionary(fc.string({ maxLength: 12 }), fc.nat()),
    resetPages: fc.nat(),
  }),
});
const start = fc.constantFrom('first-read', 'entry', 'checkpoint') as fc.Arbitrary<'first-read' | 'entry' | 'checkpoint'>;

describe('run codec', () => {
  it('a request round-trips stdin and the optional argv and env', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.option(strings, { nil: undefined }), fc.option(strings, { nil: undefined }), (stdin, argv, env) => {
        const meta = { ...(argv ? { argv } : {}), ...(env ? { env } : {}) };
        const back = decodeRunRequest(embedded(encodeRunRequest(stdin, meta)));
        expect([...back.stdin]).toEqual([...stdin]);
        expect(back.argv).toEqual(argv);
        expect(back.env).toEqual(env);
      }),
    );
  });

  it('a result round-trips exit code or none, signal, both streams, dropped counts, stats and start', () => {
    fc.assert(
      fc.property(result, start, (r, at) => {
        const back = decodeRunResult(embedded(encodeRunResult(r, at)));
        expect({ ...back, stdout: [...back.stdout], stderr: [...back.stderr] }).toEqual({
          ...r, stdout: [...r.stdout], stderr: [...r.stderr], stats: { ...r.stats, start: at },
        });
      }),
    );
  });

  it('every record cut short is a RangeError', () => {
    fc.assert(
      fc.property(result, start, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (r, at, cut) => {
        const bytes = encodeRunResult(r, at);
        expect(() => decodeRunResult(bytes.subarray(0, Math.floor(cut * bytes.length)))).toThrow(RangeError);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 50 }), strings, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (stdin, argv, cut) => {
        const bytes = encodeRunRequest(stdin, { argv: ['x', ...argv] });
        const metaEnd = 4 + new DataView(bytes.buffer).getUint32(0, true);
        const n = Math.floor(cut * metaEnd); // short of the metadata's end
        expect(() => decodeRunRequest(bytes.subarray(0, n))).toThrow(RangeError);
      }),
    );
  });
});
