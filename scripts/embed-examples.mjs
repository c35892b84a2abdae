// Puts each example file's code under its `<!-- example: PATH -->` marker in docs/*.md, as a
// ```ts block (replacing the block that follows the marker, if any). Run it after editing an
// example: `node scripts/embed-examples.mjs`. test/kvm/docs-examples.test.ts checks they agree.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const MARKER = /<!-- example: (\S+) -->\n(?:\n?```ts\n[\s\S]*?\n```\n)?/g;
for (const name of readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md'))) {
  const path = join(root, 'docs', name);
  const text = readFileSync(path, 'utf8');
  const next = text.replace(MARKER, (_m, file) => `<!-- example: ${file} -->\n\`\`\`ts\n${readFileSync(join(root, file), 'utf8').trimEnd()}\n\`\`\`\n`);
  if (next !== text) writeFileSync(path, next);
}
