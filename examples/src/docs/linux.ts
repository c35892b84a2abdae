// An unmodified static Linux program (Debian's busybox-static) in pristine micro-VMs: stdin in,
// stdout and the exit status out; a provided read-only file; a program killed by a signal.
import { LinuxPool } from '@kvmpool/core';

const text = (b: Uint8Array): string => new TextDecoder().decode(b).trimEnd();

await using sha = new LinuxPool({ program: '/bin/busybox', argv: ['sha256sum'], threads: 1, timeoutMs: 2000 });
const r = await sha.run('hello\n');
console.log(`sha256sum: ${text(r.stdout)} (exit ${r.exitCode}, ${r.stats.syscalls} syscalls, warm start at ${r.stats.start})`);

// start: 'entry' runs each call from the entry point, so argv may change per call.
await using grep = new LinuxPool({ program: '/bin/busybox', argv: ['grep'], files: { '/etc/words': 'apple\nberry\nkiwi\n' }, start: 'entry', threads: 1 });
for (const word of ['rr', 'zz']) {
  const g = await grep.run('', { argv: ['grep', '-c', word, '/etc/words'] });
  console.log(`grep -c ${word}: ${text(g.stdout)}, exit ${g.exitCode}`);
}

await using crash = new LinuxPool({ program: '/bin/busybox', argv: ['sh', '-c', 'kill -SEGV $$'], threads: 1 });
const killed = await crash.run();
console.log(`killed: exitCode ${killed.exitCode}, signal ${killed.signal}`);
