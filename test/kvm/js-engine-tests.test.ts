/** The QuickJS engine's own tests (from the qjsc package's copy of its source) pass inside the sandbox, through js.eval. */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JsSandboxPool } from '@kvmpool/js';

const require = createRequire(join(process.cwd(), 'packages/js/package.json'));
const tests = join(dirname(require.resolve('qjsc/package.json')), 'deps', 'quickjs_2021_03_27', 'tests');
const js = new JsSandboxPool({ threads: 1, timeoutMs: 30_000, memoryLimit: '128 MiB' });
afterAll(() => js.close());

describe("QuickJS's own tests in the sandbox", () => {
  for (const file of ['test_language.js', 'test_builtin.js', 'test_closure.js', 'test_loop.js']) {
    it(`${file} passes`, async () => {
      const source = readFileSync(join(tests, file), 'utf8');
      // The completion value proves the whole file ran: each test throws on its first failed assertion.
      expect(await js.eval(`${source}\n;'${file} completed'`)).toBe(`${file} completed`);
    });
  }

  it('a broken built-in makes them fail (they do test something)', async () => {
    await expect(js.eval(`Object.isExtensible = () => false;\n${readFileSync(join(tests, 'test_builtin.js'), 'utf8')}`)).rejects.toMatchObject({ jsMessage: expect.stringMatching(/assertion failed/) });
  });
});
