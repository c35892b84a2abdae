/** Builds a C fixture with the machine's gcc into test/.build/ and returns the binary's path. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export function buildC(fixture: string, flags: string[] = []): string {
  const src = join(root, 'fixtures', fixture);
  const outDir = join(root, '.build');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, basename(fixture).replace(/\.[cS]$/, ''));
  let fresh = false;
  try {
    fresh = statSync(out).mtimeMs >= statSync(src).mtimeMs;
  } catch {
    fresh = false;
  }
  if (!fresh) execFileSync('gcc', ['-O2', '-Wall', '-Werror', ...flags, '-o', out, src], { stdio: 'inherit' });
  return out;
}
