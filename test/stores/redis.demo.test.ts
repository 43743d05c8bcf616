import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '../support/redis-server.js';
import { runDemo } from '../support/demo.js';

describe('npm run demo on the Redis store', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(() => redis.stop());

  it('runs one instance per cron tick and serialises payments with LOCK_STORE=redis://', async () => {
    const { code, output } = await runDemo({ LOCK_STORE: redis.url });
    assert.equal(code, 0, output);
    assert.match(output, /redis store/);
    assert.match(output, /^OK: 1 runner per tick, same-id payments serialized, different ids in parallel$/m);
  });
});
