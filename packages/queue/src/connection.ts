/** Where Redis is: a `redis://` URL or ioredis options, turned into the options BullMQ takes. */
import type { ConnectionOptions } from 'bullmq';

/**
 * A Redis to connect to: a URL (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS) or
 * ioredis options (`{ host, port, password, … }`). Each queue object opens its own connections from it.
 */
export type RedisConnection = string | Record<string, unknown>;

/** ioredis options for `connection`; `blocking` ones (workers, event readers) retry commands forever. */
export function connectionOptions(connection: RedisConnection, blocking: boolean): ConnectionOptions {
  let base: Record<string, unknown>;
  if (typeof connection === 'string') {
    let url: URL;
    try {
      url = new URL(connection);
    } catch {
      throw new TypeError(`connection: ${JSON.stringify(connection)} is not a URL (expected redis://host:port)`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new TypeError(`connection: expected a redis:// or rediss:// URL, got ${url.protocol}`);
    const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
    if (!Number.isInteger(db) || db < 0) throw new TypeError(`connection: ${JSON.stringify(url.pathname)} is not a database number`);
    base = {
      host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
      port: url.port ? Number(url.port) : 6379,
      db,
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    };
  } else if (typeof connection === 'object' && connection !== null) {
    base = { ...connection };
  } else {
    throw new TypeError('connection: expected a redis:// URL or ioredis options');
  }
  // BullMQ requires maxRetriesPerRequest: null on the connections that block (workers, QueueEvents):
  // a command there waits out a Redis restart instead of failing after 20 retries.
  return (blocking ? { ...base, maxRetriesPerRequest: null } : base) as ConnectionOptions;
}
