/** JSON for snapshot metadata: bigints and typed arrays survive the round trip. */
type Tagged = { $bigint: string } | { $bytes: string; $type: string };

const TYPED = {
  Uint8Array, Uint16Array, Uint32Array, Int32Array, BigUint64Array, BigInt64Array,
} as const;
type TypedName = keyof typeof TYPED;

function replacer(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return { $bigint: value.toString(16) };
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    const name = value.constructor.name;
    if (name in TYPED) return { $type: name, $bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  }
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const t = value as Partial<Record<'$bigint' | '$bytes' | '$type', string>>;
  if (typeof t.$bigint === 'string') return BigInt(`0x${t.$bigint}`);
  if (typeof t.$bytes === 'string' && typeof t.$type === 'string' && t.$type in TYPED) {
    const bytes = Buffer.from(t.$bytes, 'base64');
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    const Ctor = TYPED[t.$type as TypedName];
    return new Ctor(copy.buffer, 0, bytes.length / Ctor.BYTES_PER_ELEMENT);
  }
  return value;
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, replacer);
}

export function fromJson(text: string): unknown {
  return JSON.parse(text, reviver);
}

export type { Tagged };
