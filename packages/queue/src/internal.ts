/** The job-data codec, for tests: not a stable API. */
export { encodeRequest, decodeRequest, encodeReturn, decodeReturn, failedReason, reasonToError, type JobData, type JobReturn, type CheckedRequest } from './codec.js';
export { connectionOptions } from './connection.js';
/** A private redis-server on a free loopback port, for the tests, the benchmark and the example. */
export { startRedisServer, type RedisServer } from './redis-server.js';
