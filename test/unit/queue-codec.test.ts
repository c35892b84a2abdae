/**
 * @kvmpool/queue's job data: requests round-trip through the stored form, hostile job data (which
 * anyone with access to the Redis can write) is refused field by field, and a failed job's
 * `failedReason` comes back as the typed error it was.
 */
import { GuestCrashError, SandboxTimeoutError } from '@kvmpool/core';
import { QueueJobError } from '@kvmpool/queue';
import { connectionOptions, decodeRequest, decodeReturn, encodeRequest, encodeReturn, failedReason, reasonToError } from '@kvmpool/queue/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const MAX = 1024;

describe('job data', () => {
  it('a call request round-trips through JSON: bytes, text and JSON inputs', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: MAX }), fc.string({ minLength: 1, maxLength: 40 }), fc.nat(10_000), (bytes, fn, t) => {
      const stored = JSON.parse(JSON.stringify(encodeRequest({ kind: 'call', fn, input: bytes }, t, MAX))) as unknown;
      const r = decodeRequest(stored, MAX);
      expect(r).toEqual({ kind: 'call', fn, input: bytes, timeoutMs: t });
    }));
    const text = decodeRequest(encodeRequest({ kind: 'call', fn: 'f', input: 'héllo' }, 0, MAX), MAX);
    expect(text.kind === 'call' && new TextDecoder().decode(text.input)).toBe('héllo');
    const json = decodeRequest(encodeRequest({ kind: 'call', fn: 'f', input: { a: [1, 2] } }, 0, MAX), MAX);
    expect(json.kind === 'call' && new TextDecoder().decode(json.input)).toBe('{"a":[1,2]}');
  });

  it('run, eval and apply requests keep their fields', () => {
    expect(decodeRequest(encodeRequest({ kind: 'run', input: 'x', argv: ['wc', '-c'], env: { A: '1' } }, 5, MAX), MAX))
      .toEqual({ kind: 'run', input: new TextEncoder().encode('x'), argv: ['wc', '-c'], env: { A: '1' }, timeoutMs: 5 });
    expect(decodeRequest(encodeRequest({ kind: 'eval', code: '1+1' }, 0, MAX), MAX)).toEqual({ kind: 'eval', code: '1+1', timeoutMs: 0 });
    expect(decodeRequest(encodeRequest({ kind: 'apply', fn: '(a) => a', args: [{ b: null }] }, 0, MAX), MAX)).toEqual({ kind: 'apply', fn: '(a) => a', args: [{ b: null }], timeoutMs: 0 });
  });

  it('the producer refuses inputs over maxInputBytes and bad requests, naming the field', () => {
    expect(() => encodeRequest({ kind: 'call', fn: 'f', input: new Uint8Array(MAX + 1) }, 0, MAX)).toThrow(RangeError);
    expect(() => encodeRequest({ kind: 'eval', code: 'x'.repeat(MAX + 1) }, 0, MAX)).toThrow(/code: 1025 bytes is over maxInputBytes/);
    expect(() => encodeRequest({ kind: 'call', fn: '', input: '' }, 0, MAX)).toThrow(/fn/);
    expect(() => encodeRequest({ kind: 'nope' } as never, 0, MAX)).toThrow(/kind/);
  });

  it('a worker refuses hostile job data with a TypeError or RangeError, never anything else', () => {
    const bad: unknown[] = [
      null, 1, 'x', [], {}, { v: 2 }, { v: 1, k: 'call', t: 0 }, { v: 1, k: 'call', f: 'f', i: '!!', t: 0 },
      { v: 1, k: 'call', f: 'f', i: 'A'.repeat(4 * MAX), t: 0 }, { v: 1, k: 'call', f: 'x'.repeat(300), i: '', t: 0 },
      { v: 1, k: 'call', f: 'f', i: '', t: -1 }, { v: 1, k: 'call', f: 'f', i: '', t: 1.5 }, { v: 1, k: 'run', i: '', t: 0, av: [1] },
      { v: 1, k: 'run', i: '', t: 0, ev: { A: 1 } }, { v: 1, k: 'run', i: '', t: 0, av: Array(2000).fill('a') }, { v: 1, k: 'eval', t: 0 },
      { v: 1, k: 'apply', f: 'f', t: 0 }, { v: 1, k: 'what', t: 0 },
    ];
    for (const d of bad) expect(() => decodeRequest(d, MAX), JSON.stringify(d)?.slice(0, 80)).toThrow(/^job data: /);
    fc.assert(fc.property(fc.anything(), (d) => {
      try {
        decodeRequest(d, MAX);
      } catch (e) {
        expect(e instanceof TypeError || e instanceof RangeError).toBe(true);
      }
    }));
  });

  it('return values round-trip; one not made by this package is a QueueJobError', () => {
    const out = new Uint8Array([1, 2, 3]);
    expect(decodeReturn('1', JSON.stringify(encodeReturn({ kind: 'call', output: out }, 'w')))).toEqual({ kind: 'call', output: out, worker: 'w' });
    expect(decodeReturn('1', encodeReturn({ kind: 'run', stdout: out, stderr: new Uint8Array(0), exitCode: null, signal: 'SIGSEGV', fault: 'f' }, 'w')))
      .toEqual({ kind: 'run', stdout: out, stderr: new Uint8Array(0), exitCode: null, signal: 'SIGSEGV', fault: 'f', worker: 'w' });
    expect(decodeReturn('1', encodeReturn({ kind: 'js', value: { a: 1 } }, 'w'))).toEqual({ kind: 'js', value: { a: 1 }, worker: 'w' });
    expect(() => decodeReturn('7', '{"x":1}')).toThrow(QueueJobError);
    expect(() => decodeReturn('7', 'not json')).toThrow(QueueJobError);
  });
});

describe('failed jobs', () => {
  it('failedReason is "CODE Name: message" and comes back as the same class with its code', () => {
    const crash = new GuestCrashError(0, 'shutdown', 0x1234n, 'crash+0x4');
    const reason = failedReason(crash);
    expect(reason).toBe(`ERR_KVMPOOL_GUEST_CRASH GuestCrashError: ${crash.message}`);
    const back = reasonToError('9', reason);
    expect(back).toBeInstanceOf(GuestCrashError);
    expect(back).toMatchObject({ code: 'ERR_KVMPOOL_GUEST_CRASH', message: crash.message, jobId: '9' });
    const timeout = reasonToError('9', failedReason(new SandboxTimeoutError('f', 10)));
    expect(timeout).toBeInstanceOf(SandboxTimeoutError);
    expect(reasonToError('9', failedReason(new TypeError('bad')))).toMatchObject({ name: 'TypeError', code: 'ERR_KVMPOOL_INVALID_ARGUMENT', message: 'bad' });
    const js = reasonToError('9', 'ERR_KVMPOOL_JS JsError: TypeError: nope');
    expect(js).toMatchObject({ name: 'JsError', code: 'ERR_KVMPOOL_JS', message: 'TypeError: nope' });
    // BullMQ's own reasons (a job stalled too often) and a worker's bug are QueueJobErrors.
    expect(reasonToError('9', 'job stalled more than allowable limit')).toMatchObject({ name: 'QueueJobError', code: 'ERR_KVMPOOL_QUEUE_JOB', failedReason: 'job stalled more than allowable limit' });
    expect(reasonToError('9', failedReason(new Error('oops')))).toBeInstanceOf(QueueJobError);
  });
});

describe('connections', () => {
  it('a redis:// URL becomes ioredis options; blocking connections retry for ever', () => {
    expect(connectionOptions('redis://u:p%40ss@10.1.2.3:7000/2', true)).toEqual({ host: '10.1.2.3', port: 7000, db: 2, username: 'u', password: 'p@ss', maxRetriesPerRequest: null });
    expect(connectionOptions('rediss://h', false)).toEqual({ host: 'h', port: 6379, db: 0, tls: {} });
    expect(() => connectionOptions('http://h', false)).toThrow(/redis:\/\//);
    expect(() => connectionOptions('nonsense', false)).toThrow(TypeError);
  });
});
