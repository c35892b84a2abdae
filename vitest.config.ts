import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', './test/support/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
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
          execArgv: ['--expose-gc'],
        },
      },
    ],
  },
});
