/**
 * Redis connections for the queue. BullMQ 6 brings no Redis driver of its own (ioredis is an optional
 * peer), and in an ES module it cannot load one by itself: partscan creates the ioredis client and
 * hands the instance to BullMQ.
 */

import { Redis } from 'ioredis';
import { PartscanError } from '../errors.js';

/**
 * A client for `url` (`redis://[user:pass@]host:port[/db]` or `rediss://` for TLS) set up the way BullMQ
 * needs it: commands wait across a broker restart instead of failing (`maxRetriesPerRequest: null`),
 * and the client reconnects for ever with a capped back-off, so a producer or worker outlives a Redis
 * restart. Throws a typed 'QUEUE' error for a malformed URL.
 */
export function connectRedis(url: string): Redis {
  checkRedisUrl(url);
  const client = new Redis(url, {
    maxRetriesPerRequest: null,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    // Start-up needs a broker: a client that never connected is a configuration error, not a restart.
    lazyConnect: false,
  });
  // Connection errors are retried by the client; without a listener Node would print each one.
  client.on('error', () => undefined);
  return client;
}

/** Throws a typed 'QUEUE' error unless `url` is a redis:// or rediss:// URL with a host (nothing is contacted). */
export function checkRedisUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw badUrl(url);
  }
  if ((u.protocol !== 'redis:' && u.protocol !== 'rediss:') || !u.hostname) throw badUrl(url);
}

/** Waits until `client` is connected, or throws a typed 'QUEUE' error after `timeoutMs`. */
export async function waitForRedis(client: Redis, url: string, timeoutMs = 10_000): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(
        new PartscanError('QUEUE', `Cannot reach Redis at ${redact(url)} within ${timeoutMs / 1000} s.`, {
          remedy: 'start redis-server, or check the --redis / --queue URL (host, port, password)',
        }),
      );
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

function badUrl(url: string): PartscanError {
  return new PartscanError('QUEUE', `"${redact(url)}" is not a Redis URL.`, {
    remedy: 'give redis://host:port (or rediss:// for TLS), e.g. redis://127.0.0.1:6379',
  });
}
