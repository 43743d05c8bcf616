import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LockLostError, LockReentryError, LockShutdownError, LockUnavailableError, type LockLostReason } from 'nestjs-distributed-lock';

/** A key from a request that tries to forge a log line, with every kind of line break a log viewer may honour. */
const HOSTILE = 'order:1\r\n2026-12-04 ERROR forged\u2028line\u0085next';

describe('messages with a key a client chose', () => {
  it('keep the key quoted and on one line in every error the library builds from it', () => {
    const reasons: LockLostReason[] = ['expired', 'not-owner', 'session-lost', 'shutdown', 'released'];
    const messages = [
      new LockUnavailableError(HOSTILE, 500).message,
      new LockShutdownError(HOSTILE).message,
      new LockReentryError(HOSTILE, '@WithLock on Orders.pay').message,
      ...reasons.map((reason) => new LockLostError(HOSTILE, reason).message),
    ];
    for (const message of messages) {
      assert.doesNotMatch(message, /[\r\n\u0085\u2028\u2029]/, message);
      assert.ok(message.includes('"order:1\\r\\n2026-12-04 ERROR forged\\u2028line\\u0085next"'), message);
    }
  });
});
