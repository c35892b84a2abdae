/** kvmpool errors as plain data across threads, and back into their classes. */
import { GuestCrashError, GuestError, HostFunctionError, KvmError, SandboxTimeoutError } from '../errors.js';
import { ElfError } from '../loader/elf.js';

export interface EncodedError {
  name: string;
  message: string;
  fields: Record<string, string | number>;
  stack?: string;
}

export function encodeError(e: unknown): EncodedError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e), fields: {} };
  const fields: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(e)) {
    if (typeof v === 'string' || typeof v === 'number') fields[k] = v;
    else if (typeof v === 'bigint') fields[k] = `0x${v.toString(16)}`;
  }
  return { name: e.name, message: e.message, fields, ...(e.stack ? { stack: e.stack } : {}) };
}

/** Rebuilds the error with its class, message and fields. */
export function decodeError(w: EncodedError): Error {
  const f = w.fields;
  let e: Error;
  switch (w.name) {
    case 'SandboxTimeoutError':
      e = new SandboxTimeoutError('', Number(f.timeoutMs ?? 0));
      break;
    case 'GuestCrashError':
      e = new GuestCrashError(Number(f.vcpu ?? 0), String(f.exit ?? ''), BigInt(f.rip ?? 0));
      break;
    case 'GuestError':
      e = new GuestError(w.message, Number(f.code ?? 0));
      break;
    case 'HostFunctionError':
      e = new HostFunctionError(String(f.function ?? ''), '');
      break;
    case 'KvmError':
      e = new KvmError(String(f.ioctl ?? ''), Number(f.errno ?? 0), String(f.code ?? ''), '');
      break;
    case 'ElfError':
      e = new ElfError('', '');
      break;
    default:
      e = new Error(w.message);
      if (w.name !== 'Error') Object.defineProperty(e, 'name', { value: w.name });
  }
  e.message = w.message;
  if (w.stack) e.stack = w.stack;
  return e;
}
