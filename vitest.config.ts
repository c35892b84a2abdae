import { defineConfig } from 'vitest/config';

/**
 * Every test process runs with `--unhandled-rejections=strict` (worker threads a test starts
 * inherit it): a rejection nobody handles becomes an uncaught exception, which vitest reports
 * as an error of the run, so the run fails even if every test passed.
 */
const STRICT = ['--unhandled-rejections=strict'];

export default defineConfig({
  test: {
    // Errors outside a test (unhandled rejections, uncaught exceptions) fail the run.
    dangerouslyIgnoreUnhandledErrors: false,
    reporters: ['default', './test/support/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          execArgv: STRICT,
        },
      },
      {
        test: {
          name: 'kvm',
          include: ['test/kvm/**/*.test.ts'],
          // Real guests on a 2-core machine: one file at a time keeps timings sane.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          execArgv: [...STRICT, '--expose-gc'],
        },
      },
    ],
  },
});
