#!/usr/bin/env node
// The Debian packages `npm test` and `npm run demo` need, installed when missing: with apt-get
// when running as root, otherwise the exact command to run is printed and the script fails.
//   node scripts/system-deps.mjs test|demo
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

/** What each package provides, checked by a command on PATH or a file. */
const PACKAGES = {
  gcc: { check: () => onPath('gcc'), for: ['test', 'demo'] },
  gdb: { check: () => onPath('gdb'), for: ['test'] },
  'musl-tools': { check: () => onPath('musl-gcc'), for: ['test', 'demo'] },
  'busybox-static': { check: () => isExecutable('/bin/busybox') && isStatic('/bin/busybox'), for: ['test', 'demo'] },
  // The queue tests start their own redis-server on a loopback port (never the system service).
  'redis-server': { check: () => onPath('redis-server'), for: ['test'] },
};

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}
function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
/** busybox (the dynamic one) may be installed instead of busybox-static: LinuxPool needs the static build. */
function isStatic(path) {
  try {
    return !execFileSync('file', ['-b', path], { encoding: 'utf8' }).includes('dynamically linked');
  } catch {
    return true; // no `file`: trust the package
  }
}

const use = process.argv[2] ?? 'test';
const missing = Object.entries(PACKAGES).filter(([, p]) => p.for.includes(use) && !p.check()).map(([name]) => name);
if (missing.length > 0) {
  const install = ['apt-get', 'install', '-y', '--no-install-recommends', ...missing];
  if (process.getuid?.() === 0) {
    console.error(`kvmpool: installing ${missing.join(', ')} (Debian packages that \`npm ${use === 'test' ? 'test' : 'run demo'}\` needs)`);
    execFileSync('apt-get', ['update'], { stdio: 'inherit' });
    execFileSync(install[0], install.slice(1), { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } else {
    console.error(`kvmpool: missing Debian packages: ${missing.join(', ')}\nrun: sudo apt-get update && sudo ${install.join(' ')}`);
    process.exit(1);
  }
}
