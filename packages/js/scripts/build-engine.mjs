#!/usr/bin/env node
/**
 * Builds @kvmpool/js's guest: a static musl QuickJS engine with kvmpool's driver (guest/driver.c,
 * guest/prelude.js), from the QuickJS C source the npm package `qjsc` carries
 * (deps/quickjs_2021_03_27/). Needs musl-gcc (Debian: musl-tools).
 *
 * The result is cached by the hash of everything that goes into it (sources, flags, compiler
 * version) under node_modules/.cache/kvmpool-js/, and copied to dist/guest/quickjs-guest, where
 * the package loads it from. A cached build takes milliseconds; a cold one about a minute on
 * two cores (quickjs.c is most of it).
 *
 *   node scripts/build-engine.mjs [--force] [--quiet]
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const require = createRequire(join(pkg, 'package.json'));
const force = process.argv.includes('--force');
const quiet = process.argv.includes('--quiet');
const say = (s) => quiet || process.stderr.write(`@kvmpool/js: ${s}\n`);

const QUICKJS_VERSION = '2021-03-27';
const qjscDir = dirname(require.resolve('qjsc/package.json'));
const engine = join(qjscDir, 'deps', `quickjs_${QUICKJS_VERSION.replace(/-/g, '_')}`);
const sdk = join(dirname(require.resolve('@kvmpool/core/package.json')), 'sdk');
const guest = join(pkg, 'guest');
const ENGINE_SOURCES = ['libregexp.c', 'libunicode.c', 'cutils.c', 'libbf.c'];
const HEADERS = ['quickjs.h', 'quickjs-atom.h', 'quickjs-opcode.h', 'cutils.h', 'libbf.h', 'libregexp.h', 'libregexp-opcode.h', 'libunicode.h', 'libunicode-table.h', 'list.h'];
const CC = process.env.KVMPOOL_MUSL_GCC || 'musl-gcc';
const FLAGS = ['-static', '-O2', '-g0', '-D_GNU_SOURCE', `-DCONFIG_VERSION="${QUICKJS_VERSION}"`, '-DCONFIG_BIGNUM', '-fno-asynchronous-unwind-tables', '-Wno-array-bounds', '-Wno-format-truncation'];
const out = join(pkg, 'dist', 'guest', 'quickjs-guest');

async function compilerVersion() {
  try {
    const { stdout } = await run(CC, ['-dumpfullversion', '-dumpversion']);
    return stdout.trim();
  } catch (e) {
    throw new Error(`${CC} was not found (${e.code ?? e.message}): install musl-tools (Debian: apt-get install musl-tools), or set KVMPOOL_MUSL_GCC`);
  }
}

/** A C header holding prelude.js as a string. */
function preludeHeader(js) {
  const lines = js.split('\n').map((l) => `  ${JSON.stringify(`${l}\n`)}`);
  return `/* generated from guest/prelude.js by scripts/build-engine.mjs */\nstatic const char PRELUDE_JS[] =\n${lines.join('\n')};\n`;
}

async function main() {
  if (!existsSync(join(engine, 'quickjs.c'))) throw new Error(`the QuickJS source is not at ${engine}: is the npm package qjsc@0.3.0 installed?`);
  const version = await compilerVersion();
  const hash = createHash('sha256');
  hash.update(`${CC} ${version}\n${FLAGS.join(' ')}\n`);
  for (const f of ['quickjs.c', ...ENGINE_SOURCES, ...HEADERS]) hash.update(`${f}\n`).update(readFileSync(join(engine, f)));
  for (const f of ['driver.c', 'arena.c', 'arena.h', 'prelude.js']) hash.update(`${f}\n`).update(readFileSync(join(guest, f)));
  hash.update(readFileSync(join(sdk, 'kvmpool-linux.h')));
  const key = hash.digest('hex').slice(0, 16);
  const cacheRoot = join(qjscDir, '..', '.cache', 'kvmpool-js');
  const cached = join(cacheRoot, key, 'quickjs-guest');
  mkdirSync(dirname(out), { recursive: true });
  if (!force && existsSync(cached)) {
    copyFileSync(cached, out);
    say(`QuickJS guest from the cache (${key})`);
    return;
  }
  const t0 = performance.now();
  const work = join(cacheRoot, `${key}.tmp-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, 'prelude.h'), preludeHeader(readFileSync(join(guest, 'prelude.js'), 'utf8')));
  say(`building the QuickJS ${QUICKJS_VERSION} guest with ${CC} ${version} (about a minute, once)…`);
  const include = [`-I${engine}`, `-I${sdk}`, `-I${work}`];
  const units = [...['quickjs.c', ...ENGINE_SOURCES].map((f) => join(engine, f)), join(guest, 'driver.c'), join(guest, 'arena.c')];
  // Each object is cached by its own source (with every header): a change to the driver does
  // not compile quickjs.c again. quickjs.c first: it takes longest. As many compilers as cores.
  const objectKey = (u) => createHash('sha256').update(`${CC} ${version} ${FLAGS.join(' ')}\n`).update(readFileSync(u)).update(u.endsWith('driver.c') ? readFileSync(join(work, 'prelude.h')) : '').update(HEADERS.map((h) => readFileSync(join(engine, h))).join(''))
      .update(u.startsWith(guest) ? readFileSync(join(guest, 'arena.h')) + readFileSync(join(sdk, 'kvmpool-linux.h')) : '')
      .digest('hex').slice(0, 16);
  const objDir = join(cacheRoot, 'objects');
  mkdirSync(objDir, { recursive: true });
  const objects = units.map((u) => join(objDir, `${u.split('/').pop()}-${objectKey(u)}.o`));
  const queue = units.map((u, i) => i).filter((i) => force || !existsSync(objects[i]));
  const jobs = Math.max(1, Math.min(cpus().length, 4));
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const tmp = `${objects[i]}.tmp-${process.pid}`;
        await run(CC, [...FLAGS, ...include, '-c', '-o', tmp, units[i]], { maxBuffer: 16 << 20 }).catch((e) => {
          throw new Error(`${CC} failed on ${units[i]}:\n${e.stderr || e.message}`);
        });
        renameSync(tmp, objects[i]);
      }
    }),
  );
  const exe = join(work, 'quickjs-guest');
  await run(CC, [...FLAGS, '-s', '-o', exe, ...objects, '-lm']);
  mkdirSync(dirname(cached), { recursive: true });
  renameSync(exe, cached);
  rmSync(work, { recursive: true, force: true });
  copyFileSync(cached, out);
  say(`built the QuickJS guest in ${((performance.now() - t0) / 1000).toFixed(1)} s (${key})`);
}

main().catch((e) => {
  process.stderr.write(`@kvmpool/js: cannot build the QuickJS guest: ${e.message}\n`);
  process.exit(1);
});
