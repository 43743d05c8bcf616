import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { runDemo } from '../support/demo.js';

describe('npm run demo on the D-Bus store', () => {
  let bus: DbusDaemon;
  before(async () => {
    bus = await DbusDaemon.start();
  });
  after(() => bus.stop());

  it('runs one instance per cron tick and serialises payments with LOCK_STORE=dbus:<address>', async () => {
    const { code, output } = await runDemo({ LOCK_STORE: `dbus:${bus.address}` });
    assert.equal(code, 0, output);
    assert.match(output, /dbus store/);
    assert.match(output, /^OK: 1 runner per tick, same-id payments serialized, different ids in parallel$/m);
  });

  it('uses the session bus with LOCK_STORE=dbus:', async () => {
    const { code, output } = await runDemo({ LOCK_STORE: 'dbus:', DBUS_SESSION_BUS_ADDRESS: bus.address });
    assert.equal(code, 0, output);
    assert.match(output, /^OK: /m);
  });
});
