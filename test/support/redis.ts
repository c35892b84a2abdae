/**
 * A real redis-server for a test: on a free loopback port, with a temporary directory, never the
 * machine's own Redis service. The starter is shared with the benchmark and the queue example
 * (@kvmpool/queue/internal); see RedisServer for stop()/start()/close().
 */
import { startRedisServer, type RedisServer } from '@kvmpool/queue/internal';

export type TestRedis = RedisServer;

export function startRedis(options: { appendonly?: boolean } = {}): Promise<TestRedis> {
  return startRedisServer(options);
}
