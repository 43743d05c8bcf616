// Run as a child process by the Redis store tests: joins the queue of a busy
// lock and waits there until the test kills it, like an instance that dies
// while waiting. Arguments: the Redis URL, the key, the lock's ttl in ms.
import { RedisLockStore } from 'nestjs-distributed-lock/redis';

const [url, key, ttl] = process.argv.slice(2);
if (!url || !key || !ttl) throw new Error('usage: redis-waiter-child <url> <key> <ttl>');
const store = new RedisLockStore({ url });
await store.acquire({ key, owner: `child-${process.pid}`, ttl: Number(ttl), wait: 60_000, onLost: () => {} });
