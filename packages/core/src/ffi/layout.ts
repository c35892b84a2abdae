/**
 * Struct layouts: declared once as a typed field list, turned into a koffi struct
 * (so koffi applies the C layout rules), checked against the kernel's size at load,
 * and read/written with a DataView at the offsets koffi computed. The TypeScript
 * type of a decoded struct is inferred from the same declaration.
 */
import koffi, { type TypeObject } from 'koffi';

export type Scalar = 'u8' | 'u16' | 'u32' | 'i32' | 'u64' | 'i64';

export interface ArrayField<E extends Scalar | StructLayout<FieldMap>> {
  readonly kind: 'array';
  readonly of: E;
  readonly length: number;
}

export type Field = Scalar | ArrayField<Scalar | StructLayout<FieldMap>> | StructLayout<FieldMap>;
export interface FieldMap {
  readonly [name: string]: Field;
}

type ScalarValue<S extends Scalar> = S extends 'u64' | 'i64' ? bigint : number;
type ArrayValue<E> = E extends 'u8'
  ? Uint8Array
  : E extends 'u16'
    ? Uint16Array
    : E extends 'u32'
      ? Uint32Array
      : E extends 'i32'
        ? Int32Array
        : E extends 'u64'
          ? BigUint64Array
          : E extends 'i64'
            ? BigInt64Array
            : E extends StructLayout<infer M>
              ? Array<StructValue<M>>
              : never;

export type FieldValue<F> = F extends Scalar
  ? ScalarValue<F>
  : F extends ArrayField<infer E>
    ? ArrayValue<E>
    : F extends StructLayout<infer M>
      ? StructValue<M>
      : never;

export type StructValue<M extends FieldMap> = { -readonly [K in keyof M]: FieldValue<M[K]> };

export interface StructLayout<M extends FieldMap> {
  readonly kind: 'struct';
  /** [key, offset, field] for each member, computed once (codecs walk this, not the object). */
  readonly plan: readonly (readonly [string, number, Field])[];
  readonly name: string;
  readonly fields: M;
  /** koffi's type object, for `koffi.sizeof` / `offsetof` and use in other layouts. */
  readonly type: TypeObject;
  readonly size: number;
  readonly offsets: { readonly [K in keyof M]: number };
}

export type Infer<L> = L extends StructLayout<infer M> ? StructValue<M> : never;

const KOFFI_SCALAR: Record<Scalar, string> = {
  u8: 'uint8_t',
  u16: 'uint16_t',
  u32: 'uint32_t',
  i32: 'int32_t',
  u64: 'uint64_t',
  i64: 'int64_t',
};

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

export function array<E extends Scalar | StructLayout<FieldMap>>(of: E, length: number): ArrayField<E> {
  return { kind: 'array', of, length };
}

function koffiType(field: Field): TypeObject {
  if (typeof field === 'string') return koffi.type(KOFFI_SCALAR[field]);
  if (field.kind === 'struct') return field.type;
  return koffi.array(koffiType(field.of), field.length, 'Array');
}

/**
 * Declares a struct layout. `kernelSize` is `sizeof(struct …)` from the kernel's
 * uapi headers; a mismatch with what koffi computes throws at module load.
 */
export function defineStruct<M extends FieldMap>(name: string, fields: M, kernelSize: number): StructLayout<M> {
  const members: Record<string, TypeObject> = {};
  for (const [key, field] of Object.entries(fields)) members[key] = koffiType(field);
  // Anonymous to koffi: a named type would clash when this module is evaluated twice in one
  // process (koffi's type registry is per process, module graphs are not).
  const type = koffi.struct(members);
  const size = koffi.sizeof(type);
  if (size !== kernelSize) {
    throw new Error(`ABI check failed: sizeof(struct ${name}) is ${size} in koffi, ${kernelSize} in the kernel headers`);
  }
  const offsets: Record<string, number> = {};
  const plan: (readonly [string, number, Field])[] = [];
  for (const [key, field] of Object.entries(fields)) {
    offsets[key] = koffi.offsetof(type, key);
    plan.push([key, offsets[key], field]);
  }
  return { kind: 'struct', name, plan, fields, type, size, offsets: offsets as StructLayout<M>['offsets'] };
}

/** Throws unless `offsetof(layout, field)` equals the kernel's offset. */
export function checkOffset<M extends FieldMap>(layout: StructLayout<M>, field: keyof M & string, kernelOffset: number): void {
  const actual = layout.offsets[field];
  if (actual !== kernelOffset) {
    throw new Error(`ABI check failed: offsetof(struct ${layout.name}, ${field}) is ${actual} in koffi, ${kernelOffset} in the kernel headers`);
  }
}

function readScalar(view: DataView, at: number, s: Scalar): number | bigint {
  switch (s) {
    case 'u8': return view.getUint8(at);
    case 'u16': return view.getUint16(at, true);
    case 'u32': return view.getUint32(at, true);
    case 'i32': return view.getInt32(at, true);
    case 'u64': return view.getBigUint64(at, true);
    case 'i64': return view.getBigInt64(at, true);
  }
}

function writeScalar(view: DataView, at: number, s: Scalar, value: unknown): void {
  switch (s) {
    case 'u8': view.setUint8(at, Number(value)); return;
    case 'u16': view.setUint16(at, Number(value), true); return;
    case 'u32': view.setUint32(at, Number(value) >>> 0, true); return;
    case 'i32': view.setInt32(at, Number(value), true); return;
    case 'u64': view.setBigUint64(at, BigInt.asUintN(64, BigInt(value as bigint | number)), true); return;
    case 'i64': view.setBigInt64(at, BigInt.asIntN(64, BigInt(value as bigint | number)), true); return;
  }
}

const TYPED: Record<Scalar, { new (n: number): ArrayLike<number | bigint> & { [i: number]: number | bigint } }> = {
  u8: Uint8Array,
  u16: Uint16Array,
  u32: Uint32Array,
  i32: Int32Array,
  u64: BigUint64Array,
  i64: BigInt64Array,
};

function readField(view: DataView, at: number, field: Field): unknown {
  if (typeof field === 'string') return readScalar(view, at, field);
  if (field.kind === 'struct') return readAt(view, at, field);
  const { of, length } = field;
  if (typeof of === 'string') {
    const out = new TYPED[of](length);
    for (let i = 0; i < length; i++) out[i] = readScalar(view, at + i * SCALAR_SIZE[of], of);
    return out;
  }
  return Array.from({ length }, (_, i) => readAt(view, at + i * of.size, of));
}

function writeField(view: DataView, at: number, field: Field, value: unknown): void {
  if (typeof field === 'string') {
    writeScalar(view, at, field, value ?? 0);
    return;
  }
  if (field.kind === 'struct') {
    writeAt(view, at, field, (value ?? {}) as Record<string, unknown>);
    return;
  }
  const items = (value ?? []) as ArrayLike<unknown>;
  const { of, length } = field;
  for (let i = 0; i < length; i++) {
    if (typeof of === 'string') writeScalar(view, at + i * SCALAR_SIZE[of], of, items[i] ?? 0);
    else writeAt(view, at + i * of.size, of, (items[i] ?? {}) as Record<string, unknown>);
  }
}

/** Decodes a struct at `offset` of `view`. */
export function readAt<M extends FieldMap>(view: DataView, offset: number, layout: StructLayout<M>): StructValue<M> {
  const out: Record<string, unknown> = {};
  for (const [key, at, field] of layout.plan) out[key] = readField(view, offset + at, field);
  return out as StructValue<M>;
}

/** Encodes `value` at `offset` of `view`; missing fields are written as zero. */
export function writeAt<M extends FieldMap>(view: DataView, offset: number, layout: StructLayout<M>, value: Partial<StructValue<M>> | Record<string, unknown>): void {
  const v = value as Record<string, unknown>;
  for (const [key, at, field] of layout.plan) writeField(view, offset + at, field, v[key]);
}

/** A zeroed byte buffer of the struct's size, with a DataView over it. */
export function allocate(layout: StructLayout<FieldMap>, extra = 0): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(layout.size + extra);
  return { bytes, view: new DataView(bytes.buffer) };
}

export function encode<M extends FieldMap>(layout: StructLayout<M>, value: Partial<StructValue<M>>): Uint8Array {
  const { bytes, view } = allocate(layout);
  writeAt(view, 0, layout, value);
  return bytes;
}

/** A zeroed buffer for a struct the kernel fills in (KVM_GET_*). */
export function zeroed(layout: StructLayout<FieldMap>): Uint8Array {
  return new Uint8Array(layout.size);
}

export function decode<M extends FieldMap>(layout: StructLayout<M>, bytes: Uint8Array): StructValue<M> {
  return readAt(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, layout);
}
