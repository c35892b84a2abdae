#!/usr/bin/env node
// The `kvmpool` command: a stable file for npm to link at install time, before dist/ is built.
try {
  await import('../dist/cli.js');
} catch (e) {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('dist/cli.js')) {
    console.error('kvmpool: @kvmpool/core is not built yet; run `npm run build` at the repository root first');
    process.exit(1);
  }
  throw e;
}
