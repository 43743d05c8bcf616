import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { InvalidLockOptionError, MAX_KEY_LENGTH } from 'nestjs-distributed-lock';
import { DbusLockStore, lockBusName } from 'nestjs-distributed-lock/dbus';
import { HOSTILE_KEYS as HOSTILE, LONGEST_PREFIX } from '../support/dbus-keys.js';

/** What the D-Bus specification asks of a well-known bus name, checked independently of dbus-next. */
function assertValidBusName(name: string, key: string): void {
  const shown = JSON.stringify(key.slice(0, 40));
  assert.ok(name.length <= 255, `${shown}: ${name.length} characters`);
  const elements = name.split('.');
  assert.ok(elements.length >= 2, `${shown}: ${name} has fewer than two elements`);
  for (const element of elements) assert.match(element, /^[A-Za-z_-][A-Za-z0-9_-]*$/, `${shown}: element "${element}" of ${name}`);
}


describe('lockBusName, the mapping from lock keys to bus names', () => {
  it('gives every hostile key a valid, distinct bus name', () => {
    const names = new Map<string, string>();
    for (const key of HOSTILE) {
      const name = lockBusName(key);
      assertValidBusName(name, key);
      const other = names.get(name);
      assert.equal(other, undefined, `${JSON.stringify(key.slice(0, 20))} and ${JSON.stringify(other?.slice(0, 20))} share ${name}`);
      names.set(name, key);
    }
  });

  it('keeps the end of the key readable and the case of its letters', () => {
    assert.match(lockBusName(':orders:42'), /^nestjs_distributed_lock\._orders_42_[a-z2-7]{26}$/);
    assert.match(lockBusName('Reports:Daily', 'com.example.Locks'), /^com\.example\.Locks\.Reports_Daily_[a-z2-7]{26}$/);
    assert.match(lockBusName('42'), /^nestjs_distributed_lock\._42_[a-z2-7]{26}$/, 'a leading digit is escaped');
    assert.notEqual(lockBusName('orders'), lockBusName('Orders'));
  });

  it('maps a key to the same name in every process and every version', () => {
    // Fixed vectors: a change to the mapping would let two versions of an app hold the same lock at once.
    assert.equal(lockBusName(':orders:42'), 'nestjs_distributed_lock._orders_42_l7ild4mn53dp2xwcujb55qdd3g');
    assert.equal(lockBusName('orders:42', 'com.example.Locks'), 'com.example.Locks.orders_42_ayvimsata3t2wporgysh6ghucn');
  });

  it('stays within 255 characters with the longest prefix and the longest key', () => {
    assert.equal(LONGEST_PREFIX.length, 200);
    for (const key of ['x'.repeat(MAX_KEY_LENGTH), '9'.repeat(MAX_KEY_LENGTH), '']) assertValidBusName(lockBusName(key, LONGEST_PREFIX), key);
  });

  it('gives any string a valid name (property)', () => {
    const anyUnit = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 1_100 }), fc.string({ unit: anyUnit, maxLength: 1_100 })), (key) => {
        assertValidBusName(lockBusName(key), key);
      }),
      { numRuns: 2_000 },
    );
  });

  it('tells 200,000 random keys and their near neighbours apart', () => {
    const keys = new Set<string>();
    const names = new Set<string>();
    for (let i = 0; i < 50_000; i++) {
      const key = randomBytes(1 + (i % 24)).toString('latin1');
      // Keys that differ only in characters the readable part drops, and in case.
      for (const variant of [key, `${key}:`, `${key}*`, key.toUpperCase()]) {
        keys.add(variant);
        names.add(lockBusName(variant));
      }
    }
    assert.equal(names.size, keys.size, 'as many names as distinct keys');
    assert.ok(keys.size > 150_000, `${keys.size} distinct keys`);
  });

  it('refuses a namePrefix the bus would refuse, saying what to use', () => {
    for (const prefix of ['', '1abc', 'a..b', '.a', 'a.', 'a.b!', 'a b', 'org.freedesktop.DBus', 'x'.repeat(201)]) {
      assert.throws(
        () => new DbusLockStore({ address: 'unix:path=/nonexistent', namePrefix: prefix }),
        (error: unknown) => error instanceof InvalidLockOptionError && /namePrefix/.test(error.message),
        `namePrefix ${JSON.stringify(prefix.slice(0, 20))}`,
      );
    }
  });
});
