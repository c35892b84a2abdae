/**
 * Values across the sandbox boundary, the host's half (guest/prelude.js has the guest's, with
 * the same rules): JSON, as JSON.stringify makes it, except that
 *   - typed arrays become arrays of numbers (not JSON's {"0":…} objects);
 *   - a top-level undefined stays undefined (an argument, a result);
 *   - a BigInt or a cycle is a JsValueError naming where it is, not a bare TypeError.
 * So: Date → its ISO string; NaN and ±Infinity → null; undefined, functions and symbols are
 * left out of objects and become null in arrays; Map, Set, RegExp, class instances → their
 * own enumerable properties ({} for Map and Set).
 */
import { JsValueError } from './errors.js';

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const TypedArray = Object.getPrototypeOf(Uint8Array) as abstract new () => object;
const isTypedArray = (v: object): v is ArrayLike<number | bigint> => v instanceof TypedArray;

function replacer(this: unknown, _key: string, v: unknown): unknown {
  return typeof v === 'object' && v !== null && isTypedArray(v) ? Array.from(v as ArrayLike<unknown>) : v;
}

function step(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return IDENT.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

interface Bad {
  path: string;
  what: string;
  hint: string;
}

/** The first BigInt or cycle in v, as JSON.stringify would meet it (after toJSON). */
function findBad(v: unknown, path: string, key: string, stack: object[]): Bad | undefined {
  if (typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function') v = (v as { toJSON(k: string): unknown }).toJSON(key);
  if (typeof v === 'bigint') return { path, what: 'a BigInt', hint: 'convert it with String() or Number()' };
  if (typeof v !== 'object' || v === null) return undefined;
  if (stack.includes(v)) return { path, what: 'a cycle (an object that contains itself)', hint: 'send a copy without the back reference' };
  stack.push(v);
  let bad: Bad | undefined;
  if (Array.isArray(v) || isTypedArray(v)) {
    const a = v as ArrayLike<unknown>;
    for (let i = 0; i < a.length && !bad; i++) bad = findBad(a[i], step(path, i), String(i), stack);
  } else {
    for (const k of Object.keys(v)) {
      bad = findBad((v as Record<string, unknown>)[k], step(path, k), k, stack);
      if (bad) break;
    }
  }
  stack.pop();
  return bad;
}

/** JSON text of `v`, or undefined where JSON has no text for it (undefined, a function, a symbol). */
export function encodeValue(v: unknown, path: string): string | undefined {
  try {
    return JSON.stringify(v, replacer);
  } catch (e) {
    const bad = findBad(v, path, '', []);
    if (bad) throw new JsValueError(bad.path, `${bad.path} cannot cross as JSON: it is ${bad.what} (${bad.hint})`);
    throw e;
  }
}

/** Arguments as the guest reads them: `{"a":[…],"u":[the indices that are undefined]}`. */
export function encodeArgs(args: readonly unknown[], what: string): string {
  const parts: string[] = [];
  const undef: number[] = [];
  args.forEach((a, i) => {
    const j = a === undefined ? undefined : encodeValue(a, `${what}[${i}]`);
    if (j === undefined) undef.push(i);
    parts.push(j ?? 'null');
  });
  return `"a":[${parts.join(',')}],"u":[${undef.join(',')}]`;
}

/** The arguments a guest sent to a host function. */
export function decodeArgs(text: string): unknown[] {
  const { a, u } = JSON.parse(text) as { a: unknown; u: unknown };
  if (!Array.isArray(a) || !Array.isArray(u)) throw new TypeError('host call: the guest sent arguments that are not its {a, u} record');
  // The guest's indices: only those of an argument it sent (never one that grows the array).
  for (const i of u) if (Number.isInteger(i) && i >= 0 && i < a.length) a[i] = undefined;
  return a as unknown[];
}
