/**
 * What a job holds in Redis, and what a worker sends back, as JSON (BullMQ stores job data and
 * return values as JSON strings in the job's hash).
 *
 * - Bytes travel as base64 strings (4/3 of their size). A producer refuses inputs over
 *   `maxInputBytes` (raw bytes, before base64); a worker checks every field again, since job data
 *   is whatever anyone with access to the Redis wrote.
 * - A failed job's `failedReason` is `CODE Name: message` (e.g. `ERR_KVMPOOL_GUEST_CRASH
 *   GuestCrashError: guest crashed …`), readable in any BullMQ dashboard and parsed back into a
 *   typed error by the producer.
 */
import { decodeError } from '@kvmpool/core/internal';
import { QueueJobError } from './errors.js';

/** A JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * A job's input: bytes (a `Uint8Array`, any `ArrayBufferView`, an `ArrayBuffer`), a string (its
 * UTF-8 bytes), or any other JSON value (its JSON text, as UTF-8 bytes).
 */
export type QueueInput = Uint8Array | ArrayBufferView | ArrayBuffer | JsonValue;

/** One unit of work: which kind of sandbox it needs and what it runs. */
export type SandboxRequest =
  | {
    /** An exported function of an SDK guest (`SandboxPool.call`). */
    kind: 'call';
    /** The exported function's name. */
    fn: string;
    /** Its input. Default: no bytes. */
    input?: QueueInput;
  }
  | {
    /** A run of a static Linux program (`LinuxPool.run`), the input as its stdin. */
    kind: 'run';
    /** The program's stdin. Default: empty. */
    input?: QueueInput;
    /** argv for this run (a pool with `start: 'entry'` only). */
    argv?: readonly string[];
    /** The environment for this run (a pool with `start: 'entry'` only). */
    env?: Readonly<Record<string, string>>;
  }
  | {
    /** JavaScript code to evaluate (`JsSandboxPool.eval`). */
    kind: 'eval';
    /** The code. */
    code: string;
  }
  | {
    /** A JavaScript function applied to arguments (`JsSandboxPool.apply`). */
    kind: 'apply';
    /** The function's source, e.g. `(a, b) => a * b`. */
    fn: string;
    /** Its arguments, as JSON values. */
    args?: readonly JsonValue[];
  };

/** The kinds of request, by the pool that runs them. */
export const REQUEST_KINDS = {
  /** An SDK guest's function: a `SandboxPool` worker. */
  call: 'sdk',
  /** A static Linux program: a `LinuxPool` worker. */
  run: 'linux',
  /** JavaScript source: a `JsSandboxPool` worker. */
  eval: 'js',
  /** A JavaScript function with arguments: a `JsSandboxPool` worker. */
  apply: 'js',
} as const;

/** What `result()` resolves with for each kind of job. */
export type SandboxResult =
  | {
    /** A `call` job. */
    kind: 'call';
    /** The function's output bytes. */
    output: Uint8Array;
    /** The name of the worker that ran it. */
    worker: string;
  }
  | {
    /** A `run` job. */
    kind: 'run';
    /** What the program wrote to fd 1. */
    stdout: Uint8Array;
    /** What it wrote to fd 2. */
    stderr: Uint8Array;
    /** Its exit status, or null when a signal ended it. */
    exitCode: number | null;
    /** The signal that ended it, if one did. */
    signal?: string;
    /** The CPU exception that ended it, if one did. */
    fault?: string;
    /** The name of the worker that ran it. */
    worker: string;
  }
  | {
    /** An `eval` or `apply` job. */
    kind: 'js';
    /** The script's value. */
    value: unknown;
    /** The name of the worker that ran it. */
    worker: string;
  };

/** Job data as stored (version 1). */
export interface JobData {
  v: 1;
  k: SandboxRequest['kind'];
  /** call: function name; apply: function source. */
  f?: string;
  /** call/run: input bytes, base64. */
  i?: string;
  /** eval: code. */
  c?: string;
  /** apply: arguments. */
  a?: JsonValue[];
  /** run: argv, env. */
  av?: string[];
  ev?: Record<string, string>;
  /** The sandbox time limit of one attempt, ms (0: the worker's pool default). */
  t: number;
}

/** A worker's return value as stored (version 1). */
export type JobReturn =
  | { v: 1; k: 'call'; o: string; w: string }
  | { v: 1; k: 'run'; so: string; se: string; x: number | null; s?: string; fl?: string; w: string }
  | { v: 1; k: 'js'; j: unknown; w: string };

const enc = new TextEncoder();
const MAX_NAME = 256;
const MAX_STRINGS = 1024;

/** The bytes of a job input. */
export function inputBytes(input: QueueInput | undefined): Uint8Array {
  if (input === undefined) return new Uint8Array(0);
  if (input instanceof Uint8Array) return input;
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (typeof input === 'string') return enc.encode(input);
  return enc.encode(JSON.stringify(input));
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
function unb64(s: string): Uint8Array {
  const b = Buffer.from(s, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function tooLarge(what: string, n: number, max: number): RangeError {
  return new RangeError(`${what}: ${n} bytes is over maxInputBytes (${max}); store large inputs elsewhere (a file, an object store) and pass a reference`);
}

/** Producer side: a request as job data; a RangeError/TypeError naming the field when it is wrong or too large. */
export function encodeRequest(r: SandboxRequest, timeoutMs: number, maxInputBytes: number): JobData {
  if (typeof r !== 'object' || r === null) throw new TypeError('request: expected { kind, … }');
  switch (r.kind) {
    case 'call': {
      if (typeof r.fn !== 'string' || r.fn.length === 0 || r.fn.length > MAX_NAME) throw new TypeError(`fn: expected a function name of 1–${MAX_NAME} characters`);
      const bytes = inputBytes(r.input);
      if (bytes.byteLength > maxInputBytes) throw tooLarge('input', bytes.byteLength, maxInputBytes);
      return { v: 1, k: 'call', f: r.fn, i: b64(bytes), t: timeoutMs };
    }
    case 'run': {
      const bytes = inputBytes(r.input);
      if (bytes.byteLength > maxInputBytes) throw tooLarge('input', bytes.byteLength, maxInputBytes);
      const out: JobData = { v: 1, k: 'run', i: b64(bytes), t: timeoutMs };
      if (r.argv !== undefined) out.av = [...r.argv];
      if (r.env !== undefined) out.ev = { ...r.env };
      if (JSON.stringify([out.av, out.ev]).length > maxInputBytes) throw tooLarge('argv and env', JSON.stringify([out.av, out.ev]).length, maxInputBytes);
      return out;
    }
    case 'eval':
      if (typeof r.code !== 'string') throw new TypeError('code: expected a string');
      if (Buffer.byteLength(r.code) > maxInputBytes) throw tooLarge('code', Buffer.byteLength(r.code), maxInputBytes);
      return { v: 1, k: 'eval', c: r.code, t: timeoutMs };
    case 'apply': {
      if (typeof r.fn !== 'string') throw new TypeError('fn: expected the function\'s source as a string');
      const args = r.args === undefined ? [] : [...r.args];
      const n = Buffer.byteLength(r.fn) + Buffer.byteLength(JSON.stringify(args));
      if (n > maxInputBytes) throw tooLarge('fn and args', n, maxInputBytes);
      return { v: 1, k: 'apply', f: r.fn, a: args, t: timeoutMs };
    }
    default:
      throw new TypeError(`kind: expected 'call', 'run', 'eval' or 'apply', got ${JSON.stringify((r as { kind?: unknown }).kind)}`);
  }
}

/** A request as a worker runs it, checked field by field. */
export type CheckedRequest =
  | { kind: 'call'; fn: string; input: Uint8Array; timeoutMs: number }
  | { kind: 'run'; input: Uint8Array; argv?: string[]; env?: Record<string, string>; timeoutMs: number }
  | { kind: 'eval'; code: string; timeoutMs: number }
  | { kind: 'apply'; fn: string; args: unknown[]; timeoutMs: number };

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Worker side: job data from Redis, which may be anything. Throws a TypeError/RangeError saying what is wrong. */
export function decodeRequest(d: unknown, maxInputBytes: number): CheckedRequest {
  if (typeof d !== 'object' || d === null) throw new TypeError('job data: expected an object');
  const o = d as Record<string, unknown>;
  if (o['v'] !== 1) throw new TypeError(`job data: unknown version ${JSON.stringify(o['v'])} (not made by @kvmpool/queue?)`);
  const t = o['t'];
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 2 ** 31 - 1) throw new RangeError('job data: timeoutMs is not a whole number of ms');
  const bytes = (): Uint8Array => {
    const s = o['i'];
    if (typeof s !== 'string' || !B64.test(s)) throw new TypeError('job data: input is not base64');
    if (Math.floor(s.length * 3 / 4) > maxInputBytes + 2) throw new RangeError(`job data: input is over this worker's maxInputBytes (${maxInputBytes})`);
    return unb64(s);
  };
  const strings = (v: unknown, what: string): string[] => {
    if (!Array.isArray(v) || v.length > MAX_STRINGS || !v.every((x) => typeof x === 'string')) throw new TypeError(`job data: ${what} is not an array of at most ${MAX_STRINGS} strings`);
    return v as string[];
  };
  switch (o['k']) {
    case 'call': {
      const fn = o['f'];
      if (typeof fn !== 'string' || fn.length === 0 || fn.length > MAX_NAME) throw new TypeError('job data: fn is not a function name');
      return { kind: 'call', fn, input: bytes(), timeoutMs: t };
    }
    case 'run': {
      const out: CheckedRequest = { kind: 'run', input: bytes(), timeoutMs: t };
      if (o['av'] !== undefined) out.argv = strings(o['av'], 'argv');
      if (o['ev'] !== undefined) {
        const ev = o['ev'];
        if (typeof ev !== 'object' || ev === null || Array.isArray(ev)) throw new TypeError('job data: env is not an object');
        const entries = Object.entries(ev);
        if (entries.length > MAX_STRINGS || !entries.every(([, v]) => typeof v === 'string')) throw new TypeError('job data: env is not an object of strings');
        out.env = Object.fromEntries(entries) as Record<string, string>;
      }
      return out;
    }
    case 'eval': {
      const code = o['c'];
      if (typeof code !== 'string') throw new TypeError('job data: code is not a string');
      if (code.length > maxInputBytes) throw new RangeError(`job data: code is over this worker's maxInputBytes (${maxInputBytes})`);
      return { kind: 'eval', code, timeoutMs: t };
    }
    case 'apply': {
      const fn = o['f'];
      const args = o['a'];
      if (typeof fn !== 'string') throw new TypeError('job data: fn is not a string');
      if (!Array.isArray(args)) throw new TypeError('job data: args is not an array');
      if (fn.length > maxInputBytes) throw new RangeError(`job data: fn is over this worker's maxInputBytes (${maxInputBytes})`);
      return { kind: 'apply', fn, args, timeoutMs: t };
    }
    default:
      throw new TypeError(`job data: unknown kind ${JSON.stringify(o['k'])}`);
  }
}

/** Worker side: an output as a return value. */
export function encodeReturn(r: { kind: 'call'; output: Uint8Array } | { kind: 'run'; stdout: Uint8Array; stderr: Uint8Array; exitCode: number | null; signal?: string; fault?: string } | { kind: 'js'; value: unknown }, worker: string): JobReturn {
  if (r.kind === 'call') return { v: 1, k: 'call', o: b64(r.output), w: worker };
  if (r.kind === 'js') return { v: 1, k: 'js', j: r.value, w: worker };
  const out: JobReturn = { v: 1, k: 'run', so: b64(r.stdout), se: b64(r.stderr), x: r.exitCode, w: worker };
  if (r.signal !== undefined) out.s = r.signal;
  if (r.fault !== undefined) out.fl = r.fault;
  return out;
}

/** Producer side: a stored return value (a JSON string in events, an object from a Job). */
export function decodeReturn(jobId: string, raw: unknown): SandboxResult {
  let r: unknown = raw;
  if (typeof raw === 'string') {
    try {
      r = JSON.parse(raw);
    } catch {
      throw new QueueJobError(jobId, 'its return value is not JSON');
    }
  }
  const o = (typeof r === 'object' && r !== null ? r : {}) as Record<string, unknown>;
  const worker = typeof o['w'] === 'string' ? o['w'] : '';
  if (o['v'] === 1 && o['k'] === 'call' && typeof o['o'] === 'string') return { kind: 'call', output: unb64(o['o']), worker };
  if (o['v'] === 1 && o['k'] === 'js') return { kind: 'js', value: o['j'], worker };
  if (o['v'] === 1 && o['k'] === 'run' && typeof o['so'] === 'string' && typeof o['se'] === 'string') {
    const out: SandboxResult = { kind: 'run', stdout: unb64(o['so']), stderr: unb64(o['se']), exitCode: typeof o['x'] === 'number' ? o['x'] : null, worker };
    if (typeof o['s'] === 'string') out.signal = o['s'];
    if (typeof o['fl'] === 'string') out.fault = o['fl'];
    return out;
  }
  throw new QueueJobError(jobId, 'its return value was not made by @kvmpool/queue');
}

/** Worker side: the `failedReason` text for an error. */
export function failedReason(e: unknown): string {
  if (!(e instanceof Error)) return `ERR_KVMPOOL_QUEUE_JOB Error: ${String(e)}`;
  const code = typeof (e as { code?: unknown }).code === 'string' ? (e as unknown as { code: string }).code : e instanceof TypeError || e instanceof RangeError ? 'ERR_KVMPOOL_INVALID_ARGUMENT' : 'ERR_KVMPOOL_QUEUE_JOB';
  return `${code} ${e.name}: ${e.message}`;
}

const REASON = /^([A-Z][A-Z0-9_]*) ([A-Za-z][A-Za-z0-9]*): ([\s\S]*)$/;

/** Producer side: a failed job's `failedReason` back as a typed error (core's classes by name; others keep name and code). */
export function reasonToError(jobId: string, reason: string): Error {
  const m = REASON.exec(reason);
  if (!m) return new QueueJobError(jobId, reason);
  const [, code, name, message] = m as unknown as [string, string, string, string];
  if (code === 'ERR_KVMPOOL_QUEUE_JOB') return new QueueJobError(jobId, `${name}: ${message}`);
  const e = decodeError({ name, code, message, fields: {} });
  Object.defineProperty(e, 'jobId', { value: jobId, enumerable: true, configurable: true, writable: true });
  return e;
}
