// maxLogBytes counts what a console line takes in the reply: the UTF-8 bytes of its JSON record,
// escapes included. A line within it can never push the reply past maxOutput (docs/js.md: lines
// past maxLogBytes are dropped and counted).
import { afterAll, expect, it } from 'vitest';
import { JsSandboxPool } from '@kvmpool/js';

const js = new JsSandboxPool({ threads: 1, timeoutMs: 5000 });
afterAll(() => js.close());

it('a log of control characters within maxLogBytes does not fail the call through maxOutput', async () => {
  const r = await js.run({ code: `console.log('\\u0001'.repeat(900000)); 1` }); // 900 000 units, 5.4 MB as JSON
  expect(r.value).toBe(1);
});

it('maxLogBytes counts bytes: 1 M of "€" (3 MB of UTF-8) is past the 1 MiB default', async () => {
  const r = await js.run({ code: `console.log('€'.repeat(1000000)); 1` });
  expect(r.logsDropped).toBe(1);
});
