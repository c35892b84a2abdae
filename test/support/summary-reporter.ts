/**
 * Prints one plain closing line, `kvmpool: N passed, N failed, N skipped`, after vitest's own
 * summary, so that CI logs carry a runner-independent count.
 */
import type { Reporter, SerializedError, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError> = []): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
    }
    const errors = unhandledErrors.length > 0 ? `, ${unhandledErrors.length} unhandled errors (the run fails)` : '';
    process.stdout.write(`\nkvmpool: ${passed} passed, ${failed} failed, ${skipped} skipped${errors}\n`);
  }
}
