/*
 * kvmpool's QuickJS prelude, evaluated once by driver.c before the pristine state is captured.
 * Its completion value is a function of the driver's natives; it installs the globals a script
 * sees (console, setTimeout/setInterval/clear…, queueMicrotask, host) and returns the hooks the
 * driver calls: run(request), poll() → the result record (a string) or ms until the next timer,
 * fire() → runs the timers that are due.
 *
 * Everything here uses the built-ins as they were at start-up (captured below), so a script
 * that patches JSON, Array.prototype or Object.prototype cannot change how its result, its
 * error or its logs are framed. Values cross as JSON with these rules (src/values.ts is the
 * host's half, with the same rules):
 *   - JSON.stringify's: Date → its ISO string (toJSON), NaN/±Infinity → null, undefined,
 *     functions and symbols left out of objects and null in arrays, Map/Set → {};
 *   - typed arrays → arrays of numbers (not JSON's {"0":…} objects);
 *   - a top-level undefined stays undefined (a result, an argument);
 *   - a BigInt or a cycle is an error naming where it is (`result.a[2]`).
 */
(function (native) {
  'use strict';
  const G = globalThis;
  const uncurry = Function.prototype.bind.bind(Function.prototype.call);
  const JSONstringify = JSON.stringify;
  const JSONparse = JSON.parse;
  const ObjectKeys = Object.keys;
  const ArrayIsArray = Array.isArray;
  const StringCtor = String;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const PromiseCtor = Promise;
  const promiseThen = uncurry(Promise.prototype.then);
  const strSlice = uncurry(String.prototype.slice);
  const strCharCodeAt = uncurry(String.prototype.charCodeAt);
  const strSplit = uncurry(String.prototype.split);
  const strIncludes = uncurry(String.prototype.includes);
  const arrayPush = uncurry(Array.prototype.push);
  const arrayJoin = uncurry(Array.prototype.join);
  const arrayIncludes = uncurry(Array.prototype.includes);
  const arrayPop = uncurry(Array.prototype.pop);
  const mapSet = uncurry(Map.prototype.set);
  const mapGet = uncurry(Map.prototype.get);
  const mapDelete = uncurry(Map.prototype.delete);
  const mapValues = uncurry(Map.prototype.values);
  const mapSize = uncurry(Object.getOwnPropertyDescriptor(Map.prototype, 'size').get);
  const iterNext = uncurry(Object.getPrototypeOf(new Map().values()).next);
  const typedArrayTag = uncurry(Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag).get);
  const typedArrayLength = uncurry(Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'length').get);
  const objectToString = uncurry(Object.prototype.toString);
  const dateNow = Date.now;
  const apply = Reflect.apply;
  const defineProperty = Object.defineProperty;
  const freeze = Object.freeze;
  const ERRORS = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, InternalError: G.InternalError };
  const { evalScript, hostCall, hosts, maxLogs, limitHit } = native;

  // ---- values ------------------------------------------------------------------------------

  const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
  const isTypedArray = (v) => typedArrayTag(v) !== undefined;
  const replacer = function (key, v) {
    if (typeof v === 'object' && v !== null && isTypedArray(v)) {
      const n = typedArrayLength(v);
      const a = new Array(n);
      for (let i = 0; i < n; i++) a[i] = v[i];
      return a;
    }
    return v;
  };
  const step = (path, key) => (typeof key === 'number' ? `${path}[${key}]` : IDENT.test(key) ? `${path}.${key}` : `${path}[${JSONstringify(key)}]`);

  /** Where a value JSON cannot carry is, or undefined: BigInt and cycles (after toJSON, as JSON.stringify sees it). */
  function findBad(v, path, key, stack) {
    if (typeof v === 'object' && v !== null && typeof v.toJSON === 'function') v = v.toJSON(key);
    if (typeof v === 'bigint') return { path, what: 'a BigInt', hint: 'convert it with String() or Number()' };
    if (typeof v !== 'object' || v === null) return undefined;
    if (arrayIncludes(stack, v)) return { path, what: 'a cycle (an object that contains itself)', hint: 'send a copy without the back reference' };
    arrayPush(stack, v);
    let bad;
    if (isTypedArray(v) || ArrayIsArray(v)) {
      const n = isTypedArray(v) ? typedArrayLength(v) : v.length;
      for (let i = 0; i < n && !bad; i++) bad = findBad(v[i], step(path, i), StringCtor(i), stack);
    } else {
      const keys = ObjectKeys(v);
      for (let i = 0; i < keys.length && !bad; i++) bad = findBad(v[keys[i]], step(path, keys[i]), keys[i], stack);
    }
    arrayPop(stack);
    return bad;
  }

  class ValueError extends TypeErrorCtor {
    constructor(bad) {
      super(`${bad.path} cannot cross as JSON: it is ${bad.what} (${bad.hint})`);
      this.path = bad.path;
    }
  }
  defineProperty(ValueError.prototype, 'name', { value: 'TypeError' });

  /** JSON text of v, or undefined for a value JSON leaves out (undefined, a function, a symbol). */
  function encode(v, path) {
    try {
      return JSONstringify(v, replacer);
    } catch (e) {
      let bad;
      try {
        bad = findBad(v, path, '', []);
      } catch {
        bad = undefined;
      }
      if (bad) throw new ValueError(bad);
      throw e;
    }
  }

  /** Arguments as `{"a":[…],"u":[indices that are undefined]}`. */
  function encodeArgs(args, what) {
    const parts = [];
    const undef = [];
    for (let i = 0; i < args.length; i++) {
      const j = args[i] === undefined ? undefined : encode(args[i], `${what}[${i}]`);
      if (j === undefined) arrayPush(undef, i);
      arrayPush(parts, j === undefined ? 'null' : j);
    }
    return `{"a":[${arrayJoin(parts, ',')}],"u":[${arrayJoin(undef, ',')}]}`;
  }

  function decodeArgs(a, u) {
    for (let i = 0; i < u.length; i++) a[u[i]] = undefined;
    return a;
  }

  // ---- console ------------------------------------------------------------------------------

  const logs = [];
  let logBytes = 0;
  let logsDropped = 0;

  /** The UTF-8 bytes of `s` (a lone surrogate counts 3, as its replacement character). */
  function utf8Bytes(s) {
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = strCharCodeAt(s, i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (strCharCodeAt(s, i + 1) & 0xfc00) === 0xdc00) {
        n += 4;
        i++;
      } else n += 3;
    }
    return n;
  }

  function show(v, depth) {
    if (typeof v === 'string') return depth === 0 ? v : JSONstringify(v);
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'symbol' || typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null) return StringCtor(v);
    if (typeof v === 'function') return `[Function: ${v.name || '(anonymous)'}]`;
    if (v instanceof ErrorCtor) return v.stack ? `${v.name}: ${v.message}\n${v.stack}` : `${v.name}: ${v.message}`;
    try {
      const j = JSONstringify(v, replacer);
      if (j !== undefined) return j;
    } catch {
      // a cycle or a BigInt
    }
    return objectToString(v);
  }

  function logger(level) {
    return function (...args) {
      let line;
      try {
        const parts = [];
        for (let i = 0; i < args.length; i++) arrayPush(parts, show(args[i], 0));
        line = arrayJoin(parts, ' ');
      } catch (e) {
        line = `[console.${level}: ${StringCtor(e)}]`;
      }
      // What the line takes in the reply: its record's JSON (escapes included), in UTF-8 bytes.
      // A record can never be shorter than its string, so the byte count is taken only when
      // the length alone leaves it under the limit.
      const rec = `[${JSONstringify(level)},${JSONstringify(line)}]`;
      const bytes = logBytes + rec.length > maxLogs ? maxLogs + 1 : utf8Bytes(rec);
      if (logBytes + bytes > maxLogs) {
        logsDropped++;
        return;
      }
      logBytes += bytes;
      arrayPush(logs, rec);
    };
  }
  const console = {};
  for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) console[level] = logger(level);

  // ---- timers -------------------------------------------------------------------------------

  const timers = new Map();
  let nextTimer = 1;
  let seq = 0;
  function addTimer(fn, ms, args, repeat) {
    if (typeof fn !== 'function') throw new TypeErrorCtor('the callback must be a function');
    // As in Node: a delay that is not a number from 1 to 2^31-1 ms is 1 ms (Infinity would
    // otherwise make the driver's wait a busy loop).
    let delay = ms > 0 ? +ms : 0;
    if (!(delay <= 2147483647)) delay = 1;
    const id = nextTimer++;
    mapSet(timers, id, { id, fn, args, due: dateNow() + delay, delay, repeat, seq: seq++ });
    return id;
  }
  const setTimeout = (fn, ms, ...args) => addTimer(fn, ms, args, false);
  const setInterval = (fn, ms, ...args) => addTimer(fn, ms, args, true);
  const clearTimer = (id) => {
    mapDelete(timers, id);
  };
  const queueMicrotask = (fn) => {
    if (typeof fn !== 'function') throw new TypeErrorCtor('the callback must be a function');
    promiseThen(PromiseCtor.resolve(), () => fn());
  };

  // ---- host functions ---------------------------------------------------------------------

  const host = {};
  function hostFunction(name) {
    return function (...args) {
      return new PromiseCtor((resolve, reject) => {
        const r = hostCall(name, encodeArgs(args, `host.${name} argument`));
        const kind = r[0];
        const body = strSlice(r, 1);
        if (kind === 'r') return resolve(body === '' ? undefined : JSONparse(body));
        if (kind === 'n') return reject(new TypeErrorCtor(`host.${name} is not a host function of this pool`));
        if (kind === 'x') return reject(new ErrorCtor(`host.${name}: the host call failed (${body})`));
        let info;
        try {
          info = JSONparse(body);
        } catch {
          info = { name: 'Error', message: body };
        }
        const C = ERRORS[info.name] ?? ErrorCtor;
        const e = new C(StringCtor(info.message));
        if (!ERRORS[info.name]) defineProperty(e, 'name', { value: StringCtor(info.name), configurable: true, writable: true });
        reject(e);
      });
    };
  }
  for (let i = 0; i < hosts.length; i++) host[hosts[i]] = hostFunction(hosts[i]);
  freeze(host);

  const globals = { console, setTimeout, setInterval, clearTimeout: clearTimer, clearInterval: clearTimer, queueMicrotask, host };
  for (const k of ObjectKeys(globals)) defineProperty(G, k, { value: globals[k], writable: true, configurable: true, enumerable: false });

  // ---- one call -----------------------------------------------------------------------------

  let record;
  let settled = false;

  function finish(head) {
    settled = true;
    let tail = '';
    if (logs.length > 0) tail += `,"l":[${arrayJoin(logs, ',')}]`;
    if (logsDropped > 0) tail += `,"d":${logsDropped}`;
    record = `{${head}${tail}}`;
  }

  function ok(v) {
    let j;
    try {
      j = v === undefined ? undefined : encode(v, 'result');
    } catch (e) {
      if (!(e instanceof ValueError)) return fail(e);
      return finish(`"x":{"path":${JSONstringify(e.path)},"message":${JSONstringify(e.message)}}`);
    }
    finish(j === undefined ? '"u":1' : `"v":${j}`);
  }

  const text = (x, fallback) => {
    try {
      return typeof x === 'string' ? x : x === undefined ? fallback : StringCtor(x);
    } catch {
      return fallback;
    }
  };

  const MAX_STACK_LINES = 40;
  /** The script's frames of a stack: the prelude's own cut off, at most MAX_STACK_LINES lines. */
  function scriptStack(stack) {
    const lines = strSplit(stack, '\n');
    const out = [];
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i];
      if (strIncludes(l, '<kvmpool prelude>') || strIncludes(l, 'at evalScript (native)')) break;
      if (l === '') continue;
      if (out.length === MAX_STACK_LINES) {
        arrayPush(out, `    … ${lines.length - i} more`);
        break;
      }
      arrayPush(out, l);
    }
    return arrayJoin(out, '\n');
  }

  function fail(e) {
    let name = 'Error';
    let message;
    let stack = '';
    let extra = '';
    if ((e === null || e === undefined) && limitHit()) {
      // QuickJS throws null when it has no memory left even for the error
      name = 'InternalError';
      message = 'out of memory';
    } else if (typeof e === 'object' && e !== null) {
      try {
        name = text(e.name, 'Error');
        message = text(e.message, '');
        stack = scriptStack(text(e.stack, ''));
        if (e instanceof ValueError) extra = `,"path":${JSONstringify(e.path)}`;
      } catch {
        message = message ?? '';
      }
    } else {
      message = text(e, 'undefined');
      try {
        const j = encode(e, 'thrown');
        if (j !== undefined) extra = `,"thrown":${j}`;
      } catch {
        // not JSON-compatible: the message says what it was
      }
      extra += ',"primitive":1';
    }
    finish(`"e":{"name":${JSONstringify(name)},"message":${JSONstringify(message)},"stack":${JSONstringify(stack)}${extra}}`);
  }

  function run(reqText) {
    try {
      const req = JSONparse(reqText);
      let v;
      if (req.k === 'e') {
        v = evalScript(req.c, 'script.js');
      } else {
        const f = evalScript(`(${req.c}\n)`, 'function.js');
        if (typeof f !== 'function') throw new TypeErrorCtor(`call: the source is ${f === null ? 'null' : typeof f}, not a function`);
        v = apply(f, undefined, decodeArgs(req.a, req.u));
      }
      if (v instanceof PromiseCtor) promiseThen(v, ok, fail);
      else ok(v);
    } catch (e) {
      fail(e);
    }
  }

  function poll() {
    if (settled) return record;
    if (mapSize(timers) === 0) {
      fail(new ErrorCtor('the result is a promise that can never settle: no timer or job is left to run'));
      return record;
    }
    let next = Infinity;
    for (let it = mapValues(timers), r = iterNext(it); !r.done; r = iterNext(it)) if (r.value.due < next) next = r.value.due;
    const wait = next - dateNow();
    return wait > 0 ? wait : 0;
  }

  function fire() {
    const now = dateNow();
    const due = [];
    for (let it = mapValues(timers), r = iterNext(it); !r.done; r = iterNext(it)) if (r.value.due <= now) arrayPush(due, r.value);
    for (let i = 1; i < due.length; i++) {
      // insertion sort by (due, seq): few timers, and no built-in a script could have patched
      const t = due[i];
      let j = i - 1;
      for (; j >= 0 && (due[j].due > t.due || (due[j].due === t.due && due[j].seq > t.seq)); j--) due[j + 1] = due[j];
      due[j + 1] = t;
    }
    for (let i = 0; i < due.length && !settled; i++) {
      const t = due[i];
      if (mapGet(timers, t.id) !== t) continue; // cleared by an earlier one
      if (t.repeat) {
        t.due = now + (t.delay > 0 ? t.delay : 1);
        t.seq = seq++;
      } else {
        mapDelete(timers, t.id);
      }
      try {
        apply(t.fn, undefined, t.args);
      } catch (e) {
        fail(e); // an uncaught error in a timer ends the call, as it would end a process
      }
    }
  }

  return { run, poll, fire };
});
