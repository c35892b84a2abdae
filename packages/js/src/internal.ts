/**
 * @kvmpool/js/internal — the pieces JsSandboxPool is made of, for the benchmarks' --profile and
 * the tests. Not a stable API.
 */
export * from './index.js';
export { engineOptions, encodeRequest, decodeReply } from './js-pool.js';
